"""``dfi data synth | download | index | align | neighbors | features``: prepare and query face datasets."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from data_tools import download as _download

from .common import check_not_inputs, check_writable, positive_int, progress_bar, progress_factory


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from data_tools.synth import make_synthetic_lfw

    check_writable({}, {"DIR": args.dir})
    result = make_synthetic_lfw(args.dir, n_people=args.people, seed=args.seed,
                                layout="plain" if args.plain else "deepfunneled")
    print(f"wrote {len(result.table)} images of {result.table['person'].nunique()} people to "
          f"{result.images_dir}, {result.archive.name} and {result.attributes_file.name}")
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    dataset = _download.get_dataset(args.name)
    check_writable({}, {"--data-dir": args.data_dir})
    path = _download.fetch(dataset.name, data_dir=args.data_dir, source=args.source,
                           verify=not args.no_verify, progress=progress_factory(args.quiet))
    print(path)
    return 0


def _cmd_data_index(args: argparse.Namespace) -> int:
    from data_tools.index import build_index, save_index

    from data_tools.index import meta_path

    check_writable({"-o": args.output, "-o (its record)": meta_path(args.output)})
    check_not_inputs({"-o": args.output}, {"--attributes": args.attributes})
    with progress_bar(None, args.quiet, "scanning images", unit="image") as bar:
        index = build_index(args.images, args.attributes, on_image=bar.update)
    save_index(index, args.output)
    meta = index.meta
    print(f"indexed {meta['rows']} images of {meta['people']} people into {args.output}; "
          f"{meta['rows_without_image']} rows without an image, "
          f"{meta['images_without_row']} images without a row")
    return 0


def _cmd_data_neighbors(args: argparse.Namespace) -> int:
    from data_tools.attributes import parse_person_image
    from data_tools.index import load_index
    from data_tools.neighbors import find_neighbors

    person, number = parse_person_image(args.input)
    index = load_index(args.index)
    row = index.locate(person, number)
    found = find_neighbors(index.table, row, args.attribute, k=args.k, rule=args.rule,
                           exclude_person=args.exclude_person)
    if args.json:
        print(json.dumps({"input": {"person": person, "imagenum": number,
                                    "path": str(index.table["path"].iloc[row])},
                          **found.to_json()}, indent=2))
    else:
        for title, table in (("sources", found.sources), ("targets", found.targets)):
            print(f"{title} ({len(table)}, attribute {'off' if title == 'sources' else 'on'}):")
            print(table.to_string(index=False))
    return 0


def _cmd_data_align(args: argparse.Namespace) -> int:
    from ..face.folder import align_folder, folder_images, write_report

    src, dst = args.src, args.output
    if not src.is_dir():
        raise FileNotFoundError(f"SRC {src}: not a folder")
    check_writable({}, {"-o": dst})
    outcomes = []
    with progress_bar(len(folder_images(src)), args.quiet, "aligning", unit="image") as bar:
        for outcome in align_folder(src, dst, workers=args.workers):
            outcomes.append(outcome)
            bar.update(1)
    report = write_report(dst, src, outcomes)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("aligned", "done", "no_face", "error")}
    if counts["aligned"] + counts["done"] == 0:
        raise RuntimeError(f"no face found in any of the {len(outcomes)} images of {src}; see {report}")
    print(f"aligned {counts['aligned']} images into {dst} ({counts['done']} were already done); "
          f"{counts['no_face']} without a face and {counts['error']} unreadable left out, listed in {report}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="download, index and query face datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    p = data_sub.add_parser("synth", help="generate a synthetic LFW look-alike offline")
    p.add_argument("dir", type=Path, metavar="DIR", help="folder to write the images and files into")
    p.add_argument("--people", type=positive_int, default=100, help="number of people (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--plain", action="store_true",
                   help="write plain (unaligned) LFW instead, DIR/lfw/ and lfw.tgz, to try 'dfi data align'")
    p.set_defaults(func=_cmd_data_synth)

    names = sorted([*_download.DATASETS, *_download.ALIASES])
    p = data_sub.add_parser("download", help="download and verify a dataset file")
    p.add_argument("name", metavar="NAME", choices=names, help=f"one of: {', '.join(names)}")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="target folder (default $DFI_HOME or the user cache folder)")
    p.add_argument("--from", dest="source", metavar="PATH_OR_URL", default=None,
                   help="import a file you already have, or download from this URL")
    p.add_argument("--no-verify", action="store_true",
                   help="accept a file whose checksum differs from the known one (warns)")
    p.set_defaults(func=_cmd_data_download)

    p = data_sub.add_parser("index", help="build the attribute index of an image folder")
    p.add_argument("--images", type=Path, required=True, help="image folder (e.g. lfw-deepfunneled)")
    p.add_argument("--attributes", type=Path, required=True,
                   help="lfw_attributes.txt or list_attr_celeba.txt")
    p.add_argument("-o", "--output", type=Path, required=True, help="index file to write (.csv; an existing one is replaced)")
    p.set_defaults(func=_cmd_data_index)

    p = data_sub.add_parser("align", help="align the faces of an LFW-layout folder to the deep-funneled frame")
    p.add_argument("src", type=Path, metavar="SRC", help="folder of <Name>/<Name>_NNNN.jpg images (e.g. plain LFW)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DST",
                   help="folder to write, same layout and names (resumes: finished images are skipped)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="processes (default: one per core)")
    p.set_defaults(func=_cmd_data_align)

    p = data_sub.add_parser("neighbors", help="source and target faces for an attribute")
    p.add_argument("--index", type=Path, required=True, help="dataset index (dfi data index)")
    p.add_argument("--input", required=True, help='an indexed face, "Person Name/N"')
    p.add_argument("--attribute", required=True, help='e.g. smiling, "~mouth_closed,smiling"')
    p.add_argument("-k", "--k", type=positive_int, default=100, help="faces per side (default 100)")
    p.add_argument("--rule", choices=("chainer", "paper"), default="chainer",
                   help="chainer: thresholds ±0.5 + Euclidean; paper: binarised + Hamming")
    p.add_argument("--exclude-person", action="store_true",
                   help="leave out the input person's other images too")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=_cmd_data_neighbors)

    from .batch import add_data_features
    add_data_features(data_sub)

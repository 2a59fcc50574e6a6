"""Command line: ``dfi data …``, ``edit``, ``sweep``, ``style``, ``invert``, ``weights …``, ``demo``.

Every command validates paths and flag combinations before it loads weights or data.
``main`` returns 0 on success, 1 on a failure and 2 on bad usage, with one line on
stderr (``--debug`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

from data_tools import download as _download

logger = logging.getLogger("dfi")


class UsageError(ValueError):
    """A flag value or combination the command cannot accept (exit code 2)."""


def _whole_number(minimum: int):
    """An argparse type: a whole number ≥ ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value
    return parse


_positive_int = _whole_number(1)


def _progress_factory(quiet: bool) -> Optional[Callable]:
    if quiet:
        return None
    from tqdm import tqdm

    def make(total, initial, label):
        return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=label,
                    file=sys.stderr, leave=False)
    return make


# ---------------------------------------------------------------- dfi data …
def _cmd_data_synth(args: argparse.Namespace) -> int:
    from data_tools.synth import make_synthetic_lfw

    result = make_synthetic_lfw(args.dir, n_people=args.people, seed=args.seed)
    print(f"wrote {len(result.table)} images of {result.table['person'].nunique()} people to "
          f"{result.images_dir}, {result.archive.name} and {result.attributes_file.name}")
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    dataset = _download.get_dataset(args.name)
    path = _download.fetch(dataset.name, data_dir=args.data_dir, source=args.source,
                           verify=not args.no_verify, progress=_progress_factory(args.quiet))
    print(path)
    return 0


def _cmd_data_index(args: argparse.Namespace) -> int:
    from data_tools.index import build_index, save_index

    index = build_index(args.images, args.attributes)
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


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="download, index and query face datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    p = data_sub.add_parser("synth", help="generate a synthetic LFW look-alike offline")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--people", type=_positive_int, default=100, help="number of people (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
    p.add_argument("-o", "--output", type=Path, required=True, help="index file to write (.csv)")
    p.set_defaults(func=_cmd_data_index)

    p = data_sub.add_parser("neighbors", help="source and target faces for an attribute")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--input", required=True, help='an indexed face, "Person Name/N"')
    p.add_argument("--attribute", required=True, help='e.g. smiling, "~mouth_closed,smiling"')
    p.add_argument("-k", "--k", type=_positive_int, default=100, help="faces per side (default 100)")
    p.add_argument("--rule", choices=("chainer", "paper"), default="chainer",
                   help="chainer: thresholds ±0.5 + Euclidean; paper: binarised + Hamming")
    p.add_argument("--exclude-person", action="store_true",
                   help="leave out the input person's other images too")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=_cmd_data_neighbors)


# ---------------------------------------------------------------- shared DFI options
def _alpha_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _add_run_options(p: argparse.ArgumentParser, *, iterations: int = 150,
                     tv_weight: float = 1e-3) -> None:
    """Options shared by every command that runs the network (edit, sweep, style)."""
    p.add_argument("--weights", default="auto",
                   help="auto (fetched caffe weights, else untrained), untrained, caffe, "
                        "normalised, torchvision, or a weights file (.npz/.caffemodel/.pth)")
    p.add_argument("--device", default="auto", help="auto, cpu, gpu or gpu:N (default auto)")
    p.add_argument("--iterations", type=_positive_int, default=iterations,
                   help=f"optimiser iteration cap (default {iterations})")
    p.add_argument("--tv-weight", type=float, default=tv_weight,
                   help=f"total-variation weight λ, pixel units (default {tv_weight:g})")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument("--seed", type=int, default=0, help="seed for untrained weights and noise")
    p.add_argument("--micro-batch", type=_whole_number(0), default=None,
                   help="images per forward/backward pass (default: 1 on CPU, all on GPU)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where fetched weights live (default $DFI_HOME or the user cache)")


def _add_dfi_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help='an image file, or an indexed face "Person Name/N"')
    p.add_argument("--attribute", action="append", default=None,
                   help='attribute to add, e.g. smiling or "~mouth_closed,smiling"; repeat to '
                        "combine several")
    p.add_argument("--index", type=Path, default=None, help="dataset index (dfi data index)")
    p.add_argument("--k", type=_positive_int, default=100, help="neighbours per side (default 100)")
    p.add_argument("--rule", choices=("chainer", "paper"), default="chainer",
                   help="neighbour rule (see dfi data neighbors)")
    p.add_argument("--scaling", choices=("none", "beta", "norm"), default="none",
                   help="attribute vector scaling (default none)")
    p.add_argument("--layers", default="conv3_1,conv4_1,conv5_1",
                   help="feature layers (default conv3_1,conv4_1,conv5_1)")
    p.add_argument("--size", type=_positive_int, default=200, help="working size in pixels (default 200)")
    p.add_argument("--crop", default=None,
                   help="l,t,r,b box of the input image to edit, used as is (no face detection); "
                        "'none' for the whole image")
    p.add_argument("--no-align", action="store_true",
                   help="take the input as an LFW-framed face (the LFW crop 40,20,210,190) "
                        "instead of detecting and aligning its face")
    p.add_argument("--face", type=_positive_int, default=None,
                   help="which detected face to edit, 1 = the largest (default 1)")
    p.add_argument("--show-landmarks", type=Path, default=None, metavar="FILE",
                   help="save the photo with the detected faces, their numbers and landmarks")
    p.add_argument("--vector", type=Path, default=None, help="reuse a saved attribute vector")
    p.add_argument("--save-vector", type=Path, default=None, help="save the attribute vector (.npz)")
    p.add_argument("--mask", type=Path, default=None, help="greyscale mask: where the edit applies")
    p.add_argument("--feature-cache", type=Path, default=None,
                   help="folder caching the neighbours' features between runs (about 2 MB per face at 200 px)")
    p.add_argument("--no-color-match", action="store_true",
                   help="do not match the edit's colour statistics to the input's")
    _add_run_options(p)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _check_output(path) -> Path:
    """An image path to write: known extension; its folder is created."""
    out = Path(path)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"-o {out}: use an image extension ({', '.join(IMAGE_SUFFIXES)})")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _dfi_request(args: argparse.Namespace, alphas: list[float]):
    """Validate everything that can be checked before loading weights."""
    from data_tools.attributes import parse_person_image
    from .edit import EditConfig, check_alphas
    from .image import parse_crop
    from .reconstruct import ReconstructConfig

    check_alphas(alphas)
    if args.vector is None and not args.attribute:
        raise UsageError("give --attribute (with --index) or --vector FILE")
    if args.vector is not None and args.attribute:
        raise UsageError("--vector and --attribute exclude each other")
    if args.vector is not None and not args.vector.is_file():
        raise FileNotFoundError(f"--vector {args.vector}: no such file")
    if args.attribute and args.index is None:
        raise UsageError("--attribute needs --index (build one with 'dfi data index')")
    if args.index is not None and not args.index.is_file():
        raise FileNotFoundError(f"--index {args.index}: no such file (build one with 'dfi data index')")
    if args.mask is not None and not args.mask.is_file():
        raise FileNotFoundError(f"--mask {args.mask}: no such file")
    _check_output(args.output)
    if args.show_landmarks is not None:
        _check_output(args.show_landmarks)
    crop = None
    if args.crop is not None:
        crop = "none" if args.crop.strip().lower() == "none" else parse_crop(args.crop)
    layers = tuple(name.strip() for name in args.layers.split(",") if name.strip())
    from .vgg import vgg19_layer_names
    unknown = [name for name in layers if name not in vgg19_layer_names()]
    if unknown or not layers:
        raise UsageError(f"--layers {args.layers!r}: unknown layer {unknown[0] if unknown else ''!r}; "
                         f"valid: {', '.join(vgg19_layer_names())}")
    rec = ReconstructConfig(iterations=args.iterations, tv_weight=args.tv_weight,
                            optimizer=args.optimizer)
    config = EditConfig(layers=layers, k=args.k, size=args.size, scaling=args.scaling,
                        rule=args.rule, color_match=not args.no_color_match, reconstruct=rec)
    index = row = None
    path = Path(args.input)
    if args.index is not None:
        from data_tools.index import load_index
        index = load_index(args.index)
    if not path.is_file():
        try:
            person, number = parse_person_image(args.input)
        except ValueError:
            raise FileNotFoundError(f"input {args.input!r}: no such image file") from None
        if index is None:
            raise UsageError(f"input {args.input!r} is an indexed face; give --index")
        row = index.locate(person, number)
        path = index.image_path(row)
    elif index is not None:
        rel = path.resolve().relative_to(index.images_root) if path.resolve().is_relative_to(
            index.images_root) else None
        if rel is not None:
            hits = (index.table["path"] == rel.as_posix()).to_numpy().nonzero()[0]
            row = int(hits[0]) if len(hits) else None
    # a photo that is not a dataset face is aligned to the LFW frame unless told otherwise
    align = row is None and crop is None and not args.no_align
    if not align and (args.face is not None or args.show_landmarks is not None):
        why = "indexed faces are in the LFW frame already" if row is not None else \
            "--crop/--no-align skip face detection"
        raise UsageError(f"--face and --show-landmarks need face alignment ({why})")
    from .edit import load_face
    face = load_face(path, config, row=row, crop="align" if align else crop, face=args.face or 1)
    if args.show_landmarks is not None:
        from .align import draw_landmarks
        from .image import write_image
        write_image(args.show_landmarks, draw_landmarks(face.full, face.alignment))
    return config, index, face


def _load_net(args: argparse.Namespace):
    import numpy as np

    from .backend import parse_device
    from .weights import converted_path, load_vgg19

    device = parse_device(args.device)
    spec = args.weights
    if spec == "auto":
        spec = "caffe" if converted_path("caffe", args.data_dir).is_file() else "untrained"
    net = load_vgg19(spec, data_dir=args.data_dir, seed=args.seed,
                     pooling=getattr(args, "pooling", "max")).to_device(device)
    micro = args.micro_batch
    if micro is None:
        micro = 1 if device.xp is np else 0
    return net, micro


def _progress_bar(total: int, quiet: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=quiet, file=sys.stderr, leave=False,
                unit="it", dynamic_ncols=True)


def _run_dfi(args: argparse.Namespace, alphas: list[float]) -> dict:
    """Shared body of edit and sweep: returns results on the CPU plus a record."""
    import time
    from dataclasses import replace

    from .attributes import combine, load_vector, save_vector
    from .backend import to_cpu, synchronize
    from .edit import choose_neighbors, compose, compute_vector, read_mask, sweep

    config, index, face = _dfi_request(args, alphas)
    mask = read_mask(args.mask, face.full.shape[1:]) if args.mask is not None else None
    t_start = time.perf_counter()
    net, micro = _load_net(args)
    # one image per pass on a CPU (im2col on a large batch is slower per image), all on a GPU
    config = replace(config, batch_size=micro or config.batch_size,
                     reconstruct=replace(config.reconstruct, micro_batch=micro))
    record = {"input": args.input, "weights": net.name, "device": str(net.device),
              "settings": {"alphas": alphas, "layers": list(config.layers), "k": config.k,
                           "size": config.size, "crop": face.crop, "scaling": config.scaling,
                           "rule": config.rule, "iterations": config.reconstruct.iterations,
                           "tv_weight": config.reconstruct.tv_weight,
                           "optimizer": config.reconstruct.optimizer, "seed": args.seed}}
    vectors, neighbors = [], {}
    cache = None
    if args.feature_cache is not None:
        from .features import FeatureCache
        cache = FeatureCache(args.feature_cache, net_name=net.name, layers=config.layers,
                             size=config.size, crop=config.crop)
    if args.vector is not None:
        vector, meta = load_vector(args.vector)
        missing = [name for name in config.layers if name not in vector]
        if missing:
            raise ValueError(f"--vector {args.vector} lacks layers {', '.join(missing)}")
        vectors.append({name: vector[name] for name in config.layers})
        record["vector"] = {"file": str(args.vector), **meta}
    else:
        for attribute in args.attribute:
            sources, targets = choose_neighbors(index, face, attribute, config)
            neighbors[attribute] = {"sources": sources, "targets": targets}
            vectors.append(compute_vector(net, index, sources, targets, config, cache=cache))
        record["neighbors"] = neighbors
    if args.save_vector is not None:
        save_vector(args.save_vector, combine(vectors),
                    {"attributes": args.attribute, "weights": net.name, "layers": list(config.layers),
                     "size": config.size, "crop": config.crop})
    synchronize(net.device)
    t_vector = time.perf_counter()
    bar = _progress_bar(config.reconstruct.iterations, args.quiet, "reconstructing")
    last = None
    try:
        for last in sweep(net, face, vectors, alphas, config):
            bar.update(1)
            bar.set_postfix(loss=f"{float(last.loss.mean()):.4g}", active=int(last.active.sum()))
    finally:
        bar.close()
    synchronize(net.device)
    t_done = time.perf_counter()
    images = to_cpu(last.images)
    results = [compose(face, images[i + 1], images[0], color_match=config.color_match, mask=mask)
               for i in range(len(alphas))]
    record["losses"] = [{"alpha": a, "total": float(last.loss[i + 1]),
                         "feature": float(last.terms["feature"][i + 1]),
                         "tv": float(last.terms["tv"][i + 1])} for i, a in enumerate(alphas)]
    if face.alignment is not None:
        record["alignment"] = face.alignment.record()
    record["iterations_run"] = int(last.iteration)
    record["evaluations"] = int(last.evaluations)
    record["timings_s"] = {"vector": round(t_vector - t_start, 3),
                           "reconstruction": round(t_done - t_vector, 3),
                           "total": round(t_done - t_start, 3)}
    return {"face": face, "results": results, "record": record, "working": images}


def _cmd_edit(args: argparse.Namespace) -> int:
    from .image import write_image

    out = _run_dfi(args, [args.alpha])
    write_image(args.output, out["results"][0])
    print(args.output)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from data_tools.fsutil import write_text_atomic

    from .image import grid, write_gif, write_image

    out = _run_dfi(args, args.alphas)
    path = Path(args.output)
    files = []
    for alpha, image in zip(args.alphas, out["results"]):
        single = path.with_name(f"{path.stem}_alpha{alpha:g}{path.suffix}")
        write_image(single, image)
        files.append(str(single))
    frames = [out["face"].full, *out["results"]]
    write_image(path, grid(frames))
    gif = path.with_suffix(".gif")
    write_gif(gif, frames)
    record = dict(out["record"], outputs={"grid": str(path), "images": files, "gif": str(gif)})
    write_text_atomic(path.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    print(path)
    return 0


def _add_dfi_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="edit a face by Deep Feature Interpolation")
    _add_dfi_options(p)
    p.add_argument("--alpha", type=float, default=0.4, help="edit strength α (default 0.4)")
    p.add_argument("-o", "--output", required=True, help="edited image to write (full size)")
    p.set_defaults(func=_cmd_edit)

    p = sub.add_parser("sweep", help="edit a face for several strengths α at once")
    _add_dfi_options(p)
    p.add_argument("--alphas", type=_alpha_list, default=[0.1, 0.2, 0.3, 0.4, 0.5],
                   help="comma-separated strengths (default 0.1,0.2,0.3,0.4,0.5)")
    p.add_argument("-o", "--output", required=True,
                   help="grid image; per-α images, a .gif and a .json are written beside it")
    p.set_defaults(func=_cmd_sweep)


# ---------------------------------------------------------------- dfi style, dfi invert
def _style_request(args: argparse.Namespace, *, invert: bool = False):
    """Validate flags and read the images before loading weights."""
    from .image import read_image
    from .reconstruct import ReconstructConfig
    from .style import StyleConfig, parse_layer_weights

    _check_output(args.output)
    scales = tuple(args.scales) if args.scales else (args.size,)
    if args.scales and args.size_given and args.scales[-1] != args.size:
        raise UsageError(f"--size {args.size} and --scales {','.join(map(str, args.scales))} disagree; "
                         "the last scale is the output size")
    rec = ReconstructConfig(iterations=args.iterations, tv_weight=args.tv_weight,
                            optimizer=args.optimizer, ftol=args.ftol)
    if invert:
        config = StyleConfig(content_layers=parse_layer_weights(args.layer, "--layer"),
                             style_weight=0.0, scales=scales, init="noise", seed=args.seed,
                             reconstruct=rec)
        return config, read_image(args.image), []
    images = [read_image(path) for path in args.images]
    if args.texture:
        content, styles = None, images
    elif len(images) < 2:
        raise UsageError("give a CONTENT and at least one STYLE image (or --texture STYLE …)")
    else:
        content, styles = images[0], images[1:]
    if args.style_blend and len(args.style_blend) != len(styles):
        raise UsageError(f"--style-blend has {len(args.style_blend)} weights for {len(styles)} "
                         "style image(s)")
    init = args.init or ("noise" if args.texture else "content")
    config = StyleConfig(
        content_layers=parse_layer_weights(args.content_layers, "--content-layers"),
        style_layers=parse_layer_weights(args.style_layers, "--style-layers"),
        content_weight=0.0 if args.texture else args.content_weight, style_weight=args.style_weight,
        style_blend=tuple(args.style_blend) if args.style_blend else None,
        style_scale=args.style_scale, scales=scales, init=init, preserve_color=args.preserve_color,
        seed=args.seed, reconstruct=rec)
    if args.texture and config.preserve_color != "none":
        raise UsageError(f"--preserve-color {config.preserve_color} needs a content image; "
                         "--texture has none")
    if init == "content" and content is None:
        raise UsageError("--init content needs a content image; use noise or style with --texture")
    return config, content, styles


def _run_style(args: argparse.Namespace, config, content, styles) -> int:
    import time
    from dataclasses import replace

    from .backend import to_cpu
    from .image import write_image
    from .style import check_memory, finish, stylize

    net, micro = _load_net(args)
    config = replace(config, reconstruct=replace(config.reconstruct, micro_batch=micro))
    check_memory(net, content, styles, config, micro_batch=1)
    out = Path(args.output)
    bar = _progress_bar(config.reconstruct.iterations * len(config.scales), args.quiet, "stylising")
    start, last, stage = time.perf_counter(), None, 0
    try:
        for last in stylize(net, content, styles, config):
            if last.stage != stage:  # a stage that stopped early: skip its remaining ticks
                bar.n, stage = last.stage * config.reconstruct.iterations, last.stage
            bar.update(1)
            bar.set_postfix({name: f"{float(v[0]):.3g}" for name, v in last.progress.terms.items()},
                            refresh=False)
            if args.save_every and last.progress.iteration % args.save_every == 0:
                snapshot = finish(to_cpu(last.progress.images[0]), content, config)
                write_image(out.with_name(f"{out.stem}_{last.shape[1]}px_{last.progress.iteration:04d}"
                                          f"{out.suffix}"), snapshot)
    finally:
        bar.close()
    write_image(out, finish(to_cpu(last.progress.images[0]), content, config))
    terms = ", ".join(f"{name} {float(v[0]):.4g}" for name, v in last.progress.terms.items())
    if not args.quiet:
        print(f"dfi: {len(config.scales)} stage(s) in {time.perf_counter() - start:.1f} s; {terms}",
              file=sys.stderr)
    print(out)
    return 0


def _cmd_style(args: argparse.Namespace) -> int:
    config, content, styles = _style_request(args)
    return _run_style(args, config, content, styles)


def _cmd_invert(args: argparse.Namespace) -> int:
    config, content, styles = _style_request(args, invert=True)
    return _run_style(args, config, content, styles)


class _SizeAction(argparse.Action):
    """Records that --size was given (it must then agree with --scales)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.size_given = True


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of sizes in pixels")
    return values


def _add_reconstruction_options(p: argparse.ArgumentParser) -> None:
    """Options of style and invert: output, size, stages, snapshots, stopping."""
    from .style import StyleConfig

    defaults = StyleConfig().reconstruct
    p.add_argument("-o", "--output", required=True, help="image to write")
    p.add_argument("--size", type=_positive_int, default=256, action=_SizeAction,
                   help="long side of the output in pixels (default 256)")
    p.add_argument("--scales", type=_int_list, default=None,
                   help="coarse-to-fine long sides, e.g. 256,512,1024 (the last is the output size)")
    p.add_argument("--save-every", type=_positive_int, default=None, metavar="N",
                   help="also write the image every N iterations (OUT_<size>px_<iteration>.png)")
    p.add_argument("--ftol", type=float, default=defaults.ftol,
                   help="L-BFGS stops when an iteration improves the loss by less than this "
                        f"fraction (default {defaults.ftol:g}; 0 runs all iterations)")
    p.add_argument("--pooling", choices=("max", "average"), default="max",
                   help="VGG pooling (Gatys et al. use average for synthesis; default max)")
    p.set_defaults(size_given=False)
    _add_run_options(p, iterations=defaults.iterations, tv_weight=defaults.tv_weight)


def _add_style_commands(sub: argparse._SubParsersAction) -> None:
    from .color import PRESERVE_COLOR
    from .style import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, INITS, StyleConfig

    defaults = StyleConfig()
    p = sub.add_parser("style", help="style transfer (Gatys et al.) or texture synthesis")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="CONTENT STYLE [STYLE …]; with --texture only STYLE images")
    p.add_argument("--texture", action="store_true", help="texture synthesis: no content image")
    p.add_argument("--content-weight", type=float, default=defaults.content_weight,
                   help=f"content weight (default {defaults.content_weight:g})")
    p.add_argument("--style-weight", type=float, default=defaults.style_weight,
                   help="style weight; the same value gives the same balance at any size "
                        f"(default {defaults.style_weight:g})")
    p.add_argument("--content-layers", default=DEFAULT_CONTENT_LAYERS,
                   help=f"layer[:weight],… (default {DEFAULT_CONTENT_LAYERS})")
    p.add_argument("--style-layers", default=DEFAULT_STYLE_LAYERS,
                   help=f"layer[:weight],… (default {DEFAULT_STYLE_LAYERS})")
    p.add_argument("--style-blend", type=_alpha_list, default=None,
                   help="one weight per style image, e.g. 0.7,0.3 (default equal)")
    p.add_argument("--style-scale", type=float, default=1.0,
                   help="style image size relative to the output (default 1)")
    p.add_argument("--init", choices=INITS, default=None,
                   help="start from the content (default), noise (default with --texture) or style")
    p.add_argument("--preserve-color", choices=PRESERVE_COLOR, default="none",
                   help="keep the content's colours: luminance-only transfer, histogram "
                        "matching of the style, or yuv swap after (default none)")
    _add_reconstruction_options(p)
    p.set_defaults(func=_cmd_style)

    p = sub.add_parser("invert", help="feature inversion: rebuild an image from one layer")
    p.add_argument("image", type=Path, metavar="IMAGE")
    p.add_argument("--layer", default="conv4_2", help="layer[:weight],… to invert (default conv4_2)")
    _add_reconstruction_options(p)
    p.set_defaults(func=_cmd_invert)


# ---------------------------------------------------------------- dfi weights …
def _cmd_weights_fetch(args: argparse.Namespace) -> int:
    from .weights import fetch_weights

    path = fetch_weights(args.name, data_dir=args.data_dir, verify=not args.no_verify,
                         progress=_progress_factory(args.quiet))
    print(path)
    return 0


def _cmd_weights_convert(args: argparse.Namespace) -> int:
    from .weights import convert, save_npz

    params, convention, kind = convert(args.file)
    if Path(args.output).suffix != ".npz":
        raise UsageError(f"-o {args.output}: the converted file must end in .npz")
    save_npz(args.output, params, convention, source=str(args.file))
    print(f"converted {kind} {args.file} ({convention.order}, mean {convention.mean}) to {args.output}")
    return 0


def _add_weights_commands(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser("weights", help="fetch and convert VGG-19 weights")
    wsub = weights.add_subparsers(dest="weights_command", metavar="COMMAND", required=True)
    p = wsub.add_parser("fetch", help="download weights with checksum and convert them")
    p.add_argument("name", choices=("caffe", "normalised", "torchvision"))
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--no-verify", action="store_true", help="accept a different file (warns)")
    p.set_defaults(func=_cmd_weights_fetch)
    p = wsub.add_parser("convert", help="convert .caffemodel / .pth / Chainer npz to dfi's npz")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("-o", "--output", type=Path, required=True, help="npz to write")
    p.set_defaults(func=_cmd_weights_convert)


# ---------------------------------------------------------------- dfi demo
def _cmd_demo(args: argparse.Namespace) -> int:
    from data_tools.download import default_data_dir

    from .demo import plan_demo
    from .weights import converted_path

    data_dir = args.data_dir or default_data_dir()
    plan = plan_demo(args.out, data_dir, have_real_weights=converted_path("caffe", data_dir).is_file())
    print(f"demo: {plan.description}", file=sys.stderr)
    extra = ["--device", args.device, "--data-dir", str(data_dir)]
    if args.iterations is not None:
        extra += ["--iterations", str(args.iterations)]
    sweep_args = build_parser().parse_args(
        (["--quiet"] if args.quiet else []) + ["sweep", *plan.argv, *extra])
    _cmd_sweep(sweep_args)
    print(f"demo: the grid (original first, then each alpha) is {Path(sweep_args.output).resolve()}",
          file=sys.stderr)
    return 0


def _add_demo_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job: a smile sweep on real or synthetic LFW")
    p.add_argument("--out", type=Path, default=Path("dfi_demo"),
                   help="output folder (default ./dfi_demo)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where real LFW / weights are looked for (default $DFI_HOME or user cache)")
    p.add_argument("--device", default="auto", help="auto, cpu, gpu or gpu:N")
    p.add_argument("--iterations", type=_positive_int, default=None,
                   help="override the demo's iteration count")
    p.set_defaults(func=_cmd_demo)


# ---------------------------------------------------------------- parser, main
class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``dfi: error: …``; ``-h`` still shows usage)."""

    def error(self, message: str):
        self.exit(2, f"dfi: error: {self.prog}: {message} (see '{self.prog} -h')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dfi", description="Deep Feature Interpolation face editing and style-loss "
                                "reconstruction with VGG-19 (Chainer).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_data_commands(sub)
    _add_dfi_commands(sub)
    _add_style_commands(sub)
    _add_weights_commands(sub)
    _add_demo_command(sub)
    return parser


def _message(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"dfi: warning: {message}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line message
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING, format="dfi: %(message)s")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except KeyboardInterrupt:
        print("dfi: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; --debug for the traceback
        if args.debug:
            raise
        code = 2 if isinstance(exc, UsageError) else 1
        print(f"dfi: error: {_message(exc)}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

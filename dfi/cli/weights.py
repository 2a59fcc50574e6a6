"""``dfi weights fetch | convert``: VGG-19 weights."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import UsageError, check_not_inputs, check_writable, progress_factory


#: published stylizers ``dfi weights fetch`` knows beside the VGG-19 weights
STYLIZERS = ("magenta-monet", "magenta-varied", "fast-neural-style", "adain")


def _cmd_weights_fetch(args: argparse.Namespace) -> int:
    check_writable({}, {"--data-dir": args.data_dir})
    if args.name == "adain":
        from ..style.pretrained import fetch_adain

        if args.from_path is not None:
            raise UsageError("--from is for one file; convert AdaIN's files you have with "
                             "dfi weights convert vgg_normalised.pth -o ENC.npz (and decoder.pth -o DEC.npz)")
        for path in fetch_adain(data_dir=args.data_dir, progress=progress_factory(args.quiet)):
            print(path)
        return 0
    if args.name in STYLIZERS:
        from ..style.pretrained import fetch_stylizer

        for path in fetch_stylizer(args.name, data_dir=args.data_dir, from_path=args.from_path,
                                   progress=progress_factory(args.quiet)):
            print(path)
        return 0
    from ..nets.weights import fetch_weights

    if args.from_path is not None:
        raise UsageError(f"--from is for the stylizers ({', '.join(STYLIZERS)}); convert VGG-19 weights you "
                         "have with dfi weights convert FILE -o OUT.npz")
    path = fetch_weights(args.name, data_dir=args.data_dir, verify=not args.no_verify,
                         progress=progress_factory(args.quiet))
    print(path)
    return 0


def _cmd_weights_convert(args: argparse.Namespace) -> int:
    from ..nets.pretrained import sniff
    from ..nets.weights import convert, save_npz

    if Path(args.output).suffix != ".npz":
        raise UsageError(f"-o {args.output}: the converted file must end in .npz")
    check_writable({"-o": args.output})
    check_not_inputs({"-o": args.output}, {"FILE": args.file})
    if not Path(args.file).is_file():
        raise FileNotFoundError(f"FILE {args.file}: no such file")
    found = sniff(args.file)
    if found is not None and found[0].startswith("adain"):
        from ..style.pretrained import convert_adain

        kind = convert_adain(args.file, args.output)
        use = "--weights" if kind == "adain-encoder" else "--decoder"
        print(f"converted pytorch-AdaIN's {kind[6:]} {args.file} to {args.output} "
              f"(use: dfi style --method adain {use} {args.output})")
        return 0
    if found is not None:  # a published stylizer: a dfi stylizer model
        from ..style.pretrained import convert_stylizer

        kind, repaired = convert_stylizer(args.file, args.output)
        for note in repaired:
            print(f"dfi: repaired {note}", file=sys.stderr)
        print(f"converted {kind} stylizer {args.file} to {args.output} (use: dfi stylize --model {args.output})")
        return 0
    params, convention, kind = convert(args.file)
    save_npz(args.output, params, convention, source=str(args.file))
    print(f"converted {kind} {args.file} ({convention.order}, mean {convention.mean}) to {args.output}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser("weights", help="fetch and convert VGG-19 weights and published stylizers")
    wsub = weights.add_subparsers(dest="weights_command", metavar="COMMAND", required=True)
    p = wsub.add_parser("fetch", help="download weights (checked) and convert them")
    p.add_argument("name", choices=("caffe", "normalised", "torchvision", *STYLIZERS),
                   help="VGG-19: caffe (original), normalised (Gatys et al.'s, used by the official DFI "
                        "code) or torchvision; stylizers for dfi stylize --model: magenta-monet (10 styles), "
                        "magenta-varied (32; Apache-2.0), fast-neural-style (pytorch/examples' candy, mosaic, "
                        "rain_princess, udnie; BSD-3); adain (pytorch-AdaIN's encoder and decoder, MIT, for dfi style "
                        "--method adain)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where weights are kept (default $DFI_HOME or the user cache folder)")
    p.add_argument("--no-verify", action="store_true", help="accept a different file (warns)")
    p.add_argument("--from", dest="from_path", type=Path, default=None, metavar="PATH",
                   help="a stylizer's file you already have (checked and converted, not downloaded)")
    p.set_defaults(func=_cmd_weights_fetch)
    p = wsub.add_parser("convert", help="convert .caffemodel / .pth / Chainer npz VGG-19 weights to dfi's npz, "
                                        "or a Magenta .ckpt / fast-neural-style .pth to a dfi stylizer model")
    p.add_argument("file", type=Path, metavar="FILE", help="weights file to read")
    p.add_argument("-o", "--output", type=Path, required=True, help="npz to write (an existing one is replaced)")
    p.set_defaults(func=_cmd_weights_convert)

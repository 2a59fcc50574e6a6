"""``dfi weights fetch | convert``: VGG-19 weights."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import UsageError, check_not_inputs, check_writable, progress_factory


def _cmd_weights_fetch(args: argparse.Namespace) -> int:
    from ..nets.weights import fetch_weights

    check_writable({}, {"--data-dir": args.data_dir})
    path = fetch_weights(args.name, data_dir=args.data_dir, verify=not args.no_verify,
                         progress=progress_factory(args.quiet))
    print(path)
    return 0


def _cmd_weights_convert(args: argparse.Namespace) -> int:
    from ..nets.weights import convert, save_npz

    if Path(args.output).suffix != ".npz":
        raise UsageError(f"-o {args.output}: the converted file must end in .npz")
    check_writable({"-o": args.output})
    check_not_inputs({"-o": args.output}, {"FILE": args.file})
    params, convention, kind = convert(args.file)
    save_npz(args.output, params, convention, source=str(args.file))
    print(f"converted {kind} {args.file} ({convention.order}, mean {convention.mean}) to {args.output}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser("weights", help="fetch and convert VGG-19 weights")
    wsub = weights.add_subparsers(dest="weights_command", metavar="COMMAND", required=True)
    p = wsub.add_parser("fetch", help="download weights with checksum and convert them")
    p.add_argument("name", choices=("caffe", "normalised", "torchvision"),
                   help="caffe (original VGG-19), normalised (Gatys et al.'s, used by the official DFI "
                        "code) or torchvision")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where weights are kept (default $DFI_HOME or the user cache folder)")
    p.add_argument("--no-verify", action="store_true", help="accept a different file (warns)")
    p.set_defaults(func=_cmd_weights_fetch)
    p = wsub.add_parser("convert", help="convert .caffemodel / .pth / Chainer npz to dfi's npz")
    p.add_argument("file", type=Path, metavar="FILE", help="weights file to read")
    p.add_argument("-o", "--output", type=Path, required=True, help="npz to write (an existing one is replaced)")
    p.set_defaults(func=_cmd_weights_convert)

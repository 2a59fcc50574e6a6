"""``dfi demo``: the main job, a smile sweep on real or synthetic LFW."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import positive_int


def _cmd_demo(args: argparse.Namespace) -> int:
    from data_tools.download import default_data_dir

    from ..edit.demo import plan_demo
    from ..nets.weights import converted_path
    from .edit import run_sweep
    from .main import build_parser

    from ..core.backend import parse_device
    from .common import check_writable

    parse_device(args.device)  # every option checked before the synthetic dataset is written
    check_writable({}, {"-o": args.out})
    data_dir = args.data_dir or default_data_dir()
    plan = plan_demo(args.out, data_dir, have_real_weights=converted_path("caffe", data_dir).is_file())
    print(f"demo: {plan.description}", file=sys.stderr)
    extra = ["--device", args.device, "--data-dir", str(data_dir)]
    if args.iterations is not None:
        extra += ["--iterations", str(args.iterations)]
    sweep_args = build_parser().parse_args(
        (["--quiet"] if args.quiet else []) + ["sweep", *plan.argv, *extra])
    run_sweep(sweep_args)
    print(f"demo: the grid (original first, then each alpha) is {Path(sweep_args.output).resolve()}",
          file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job: a smile sweep on real or synthetic LFW")
    p.add_argument("-o", "--out", type=Path, default=Path("dfi_demo"),
                   help="output folder (default ./dfi_demo)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where real LFW / weights are looked for (default $DFI_HOME or user cache)")
    p.add_argument("--device", default="auto", help="auto, cpu, gpu or gpu:N")
    p.add_argument("--iterations", type=positive_int, default=None,
                   help="override the demo's iteration count")
    p.set_defaults(func=_cmd_demo)

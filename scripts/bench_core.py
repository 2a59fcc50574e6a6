"""Benchmarks of dfi's fast core against PyTorch and Chainer (results go to BENCHMARKS.md).

    python scripts/bench_core.py passes [--sizes 100,200,300,400] [--batches 1,6] [--repeats 5]
    python scripts/bench_core.py layers [--size 200] [--batch 1]
    python scripts/bench_core.py memory [--sizes 100,200,300,400]
    python scripts/bench_core.py budget [--size 200] [--batch 6]
    python scripts/bench_core.py lbfgs [--size 200] [--batch 6] [--history 20]

``passes``: one forward to conv5_1 + input-gradient backward (loss on conv3_1, conv4_1,
conv5_1, untrained full VGG-19), timed for dfi's kernels, Chainer's functions and PyTorch,
alternating A B C in every repetition; medians. ``layers``: each convolution's forward and
backward alone, dfi against PyTorch. ``memory``: the peak resident size of a fresh process
doing one pass, for each kernel. ``budget``: a batch's pass with the transformed filters a
batch's budget keeps against one image's budget (issue 13, 2026-11-24). ``lbfgs``: the
optimiser's own time per iteration, the objective's taken out. The default 5-α
sweep against the chainer-dfi schedule is
``python scripts/bench_dfi.py sweep --size 200 --k 100 [--compare-old]``.

PyTorch is only a yardstick and never a dependency: ``pip install torch==2.13.0`` into the
environment first (the CPU wheel on this machine). Each command prints JSON lines.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import dfi._compat  # noqa: F401
import chainer
import chainer.functions as F

from dfi.nets.vgg import VGG19, untrained_vgg19

LAYERS = ["conv3_1", "conv4_1", "conv5_1"]


def _dfi_pass(net: VGG19, x0: np.ndarray):
    def run():
        x = chainer.Variable(x0.copy())
        with chainer.using_config("train", False):
            feats = net.pick(x, LAYERS)
            F.sum(sum(F.sum(v * v) for v in feats.values())).backward()
        return x.grad
    return run


def _torch_pass(net: VGG19, x0: np.ndarray):
    import torch

    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    weights = {n: (torch.from_numpy(w), torch.from_numpy(b)) for n, (w, b) in net.params.items()}
    last = net.layer_names.index(LAYERS[-1])

    def run():
        x = torch.from_numpy(x0.copy()).requires_grad_()
        h, feats = x, []
        for name in net.layer_names[:last + 1]:
            if name.startswith("conv"):
                h = torch.relu(torch.nn.functional.conv2d(h, *weights[name], padding=1))
            else:
                h = torch.nn.functional.max_pool2d(h, 2, 2, ceil_mode=True)
            if name in LAYERS:
                feats.append(h)
        sum((f * f).sum() for f in feats).backward()
        return x.grad
    return run


def _alternate(runs: dict, repeats: int) -> dict:
    """Median seconds of each callable, timed A B C A B C … (warm-up first)."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _machine() -> dict:
    return {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "numpy": np.__version__, "date": time.strftime("%Y-%m-%d")}


def bench_passes(args) -> None:
    fast = untrained_vgg19()
    reference = VGG19(fast.params, kernel="chainer")
    for size in args.sizes:
        for batch in args.batches:
            x0 = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32) * 255 - 120
            runs = {"dfi": _dfi_pass(fast, x0), "chainer": _dfi_pass(reference, x0)}
            if not args.no_torch:
                runs["torch"] = _torch_pass(fast, x0)
            median = _alternate(runs, args.repeats)
            row = {"bench": "passes", "size": size, "batch": batch,
                   **{f"{k}_s_per_image": round(v / batch, 4) for k, v in median.items()}}
            if "torch" in median:
                row["dfi_over_torch"] = round(median["dfi"] / median["torch"], 3)
            row["dfi_over_chainer"] = round(median["dfi"] / median["chainer"], 3)
            print(json.dumps({**row, **_machine()}), flush=True)


def bench_layers(args) -> None:
    import torch

    from dfi.nets.conv import conv3x3
    from dfi.nets.winograd import Conv3x3, Workspace

    net = untrained_vgg19()
    rng = np.random.default_rng(0)
    size, batch = args.size, args.batch
    workspace = Workspace()
    for name, (weight, bias) in net.params.items():
        side = -(-size // 2 ** (int(name[4]) - 1))  # ceil pooling before block b
        channels = weight.shape[1]
        x = rng.random((batch, side, side, channels), dtype=np.float32)  # dfi's maps: channels last
        layer = Conv3x3(weight, bias)
        tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        tw, tb = torch.from_numpy(weight), torch.from_numpy(bias)
        gy = rng.random((batch, side, side, weight.shape[0]), dtype=np.float32)
        tgy = torch.from_numpy(np.ascontiguousarray(gy.transpose(0, 3, 1, 2)))
        median = _alternate({
            "dfi_forward": lambda: conv3x3(x, layer, workspace),
            "torch_forward": lambda: torch.relu(torch.nn.functional.conv2d(tx, tw, tb, padding=1)),
            "dfi_backward": lambda: conv3x3(gy, layer, workspace, backward=True, mask=gy),
            "torch_backward": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tgy, padding=1),
        }, args.repeats)
        print(json.dumps({"bench": "layers", "layer": name, "side": side, "batch": batch,
                          **{k: round(v * 1e3, 2) for k, v in median.items()}, "unit": "ms",
                          **_machine()}), flush=True)


def bench_budget(args) -> None:
    """One pass of a batch with the transformed filters kept as a batch's budget allows (half
    of Chainer's column buffer for the batch) against the budget of one image (as before
    2026-11-24), alternating in one process; seconds per image, medians."""
    from dfi.nets.winograd import Workspace

    batch, size = args.batch, args.size
    base = untrained_vgg19()
    runs, kept = {}, {}
    for label, images in (("budget_one_image", 1), ("budget_batch", batch)):
        sizing = Workspace()
        sizing.note_input(64, images * size * size)  # conv1_2's input: the largest column buffer
        net = VGG19(base.params)
        net.workspace.note_input = lambda channels, pixels: None  # hold the budget fixed
        net.workspace.filter_budget = sizing.filter_budget
        x0 = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32) * 255 - 120
        runs[label] = _dfi_pass(net, x0)
        runs[label]()
        kept[label] = net.workspace
    median = _alternate(runs, args.repeats)
    print(json.dumps({"bench": "budget", "size": size, "batch": batch,
                      **{f"{k}_s_per_image": round(v / batch, 4) for k, v in median.items()},
                      **{f"{k}_kept_mb": round(w.filter_bytes() / 1e6, 1) for k, w in kept.items()},
                      **_machine()}), flush=True)


def bench_lbfgs(args) -> None:
    """The L-BFGS step's own cost (two-loop recursion, line search, bookkeeping) on a batch
    of images: a quadratic objective whose evaluation is timed apart and subtracted."""
    from dfi.core.optimize import lbfgs

    rng = np.random.default_rng(0)
    dim = 3 * args.size * args.size
    curvature = rng.uniform(0.1, 10, dim).astype(np.float32)
    spent = [0.0]

    def objective(x, rows):
        start = time.perf_counter()
        g = curvature * x
        f = 0.5 * np.einsum("ij,ij->i", g, x)
        spent[0] += time.perf_counter() - start
        return f, g

    x0 = rng.normal(size=(args.batch, dim)).astype(np.float32)
    start = time.perf_counter()
    steps = sum(1 for _ in lbfgs(objective, x0, max_iter=args.iterations, history=args.history, ftol=0,
                                 lower=-100.0, upper=100.0))
    step_ms = (time.perf_counter() - start - spent[0]) / steps * 1e3
    print(json.dumps({"bench": "lbfgs", "size": args.size, "batch": args.batch, "history": args.history,
                      "iterations": steps, "ms_per_iteration": round(step_ms, 1), **_machine()}), flush=True)


def bench_memory(args) -> None:
    for size in args.sizes:
        row = {"bench": "memory", "size": size}
        for kernel in ("winograd", "chainer"):
            out = subprocess.run([sys.executable, __file__, "_one_pass", "--size", str(size), "--kernel", kernel],
                                 capture_output=True, text=True, check=True)
            measured = json.loads(out.stdout)
            row[f"{kernel}_peak_mb"] = measured["peak_mb"]
            row[f"{kernel}_estimate_mb"] = measured["estimate_mb"]
        print(json.dumps({**row, **_machine()}), flush=True)


def _one_pass(args) -> None:
    from dfi.core.memory import resident_bytes

    net = untrained_vgg19()
    net = VGG19(net.params, kernel=args.kernel)
    x0 = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32) * 255 - 120
    before = resident_bytes()
    estimate = before + net.pass_bytes((args.size, args.size), LAYERS)
    _dfi_pass(net, x0)()
    print(json.dumps({"peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "estimate_mb": round(estimate / 2**20, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ints = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    p = sub.add_parser("passes")
    p.add_argument("--sizes", type=ints, default=[100, 200, 300, 400])
    p.add_argument("--batches", type=ints, default=[1, 6])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-torch", action="store_true")
    p.set_defaults(func=bench_passes)
    p = sub.add_parser("layers")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.set_defaults(func=bench_layers)
    p = sub.add_parser("budget")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--repeats", type=int, default=15)
    p.set_defaults(func=bench_budget)
    p = sub.add_parser("lbfgs")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--history", type=int, default=20)
    p.add_argument("--iterations", type=int, default=60)
    p.set_defaults(func=bench_lbfgs)
    p = sub.add_parser("memory")
    p.add_argument("--sizes", type=ints, default=[100, 200, 300, 400])
    p.set_defaults(func=bench_memory)
    p = sub.add_parser("_one_pass")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--kernel", default="winograd")
    p.set_defaults(func=_one_pass)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()

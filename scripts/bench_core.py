"""Benchmarks of dfi's fast core against PyTorch and Chainer (results go to BENCHMARKS.md).

    python scripts/bench_core.py passes [--sizes 100,200,300,400] [--batches 1,6] [--repeats 5]
    python scripts/bench_core.py layers [--size 200] [--batch 1] [--in-pass]
    python scripts/bench_core.py inference [--nets stylizer,dfi-decoder,adain-decoder] [--sizes 256]
    python scripts/bench_core.py memory [--sizes 100,200,300,400]
    python scripts/bench_core.py budget [--size 200] [--batch 6]
    python scripts/bench_core.py lbfgs [--size 200] [--batch 6] [--history 20]

``passes``: one forward to conv5_1 + input-gradient backward (loss on conv3_1, conv4_1,
conv5_1, untrained full VGG-19), timed for dfi's kernels, PyTorch (and with ``--chainer``
Chainer's functions), each contender in its own process, alternating A B A B; medians
(``scripts/benchproc.py``). ``layers``: each convolution's and pooling's forward and backward
alone, measured the same way, dfi's convolutions split into their product GEMMs, transform
GEMMs and tile moves (with ``--in-pass``: each layer's share of whole passes instead,
where the layers run warm). ``inference``: the stylizer's and the decoders' forward passes
against the same networks written in PyTorch's layers, measured the same way (their
outputs checked to agree first). ``memory``: the peak resident size of a fresh process
doing one pass, for each kernel. ``budget``: a batch's pass with the transformed filters a
batch's budget keeps against one image's budget (issue 13, 2026-11-24). ``lbfgs``: the
optimiser's own time per iteration, the objective's taken out. The default 5-α
sweep against the chainer-dfi schedule is
``python scripts/bench_dfi.py sweep --size 200 --k 100 [--compare-old]``.

PyTorch is only a yardstick and never a dependency: give ``--torch-python`` a Python that has
it (``python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0
threadpoolctl``, the CPU wheel on this machine). Each command prints JSON lines, the first
naming the machine: CPU model, instruction set, BLAS and versions of every worker.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import dfi._compat  # noqa: F401
import chainer
import chainer.functions as F

from dfi.nets.vgg import VGG19, untrained_vgg19, vgg19_shapes

import benchproc

LAYERS = ["conv3_1", "conv4_1", "conv5_1"]
CHANNELS = {name: shape[0] for name, shape in vgg19_shapes().items()}


def _dfi_pass(net: VGG19, x0: np.ndarray):
    def run():
        x = chainer.Variable(x0.copy())
        with chainer.using_config("train", False):
            feats = net.pick(x, LAYERS)
            F.sum(sum(F.sum(v * v) for v in feats.values())).backward()
        return x.grad
    return run


def _alternate(runs: dict, repeats: int) -> dict:
    """Median seconds of each callable of one process, timed A B A B … (warm-up first):
    only for variants of dfi itself, which share one thread pool."""
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
    return {**benchproc.cpu(), "python": platform.python_version(), "numpy": np.__version__,
            "date": time.strftime("%Y-%m-%d")}


def _weights_file(folder: str) -> str:
    """The untrained VGG-19 (seed 0) as an .npz every worker reads: ``name/W``, ``name/b``."""
    net = untrained_vgg19()
    path = f"{folder}/vgg19.npz"
    arrays = {f"{n}/{k}": a for n, (w, b) in net.params.items() for k, a in (("W", w), ("b", b))}
    np.savez(path, names=np.array(list(net.params)), **arrays)
    return path


@contextlib.contextmanager
def _contenders(args, names=("dfi", "torch")):
    """(a temporary folder, a worker per contender in ``names``, plus "dfi-baseline" with
    ``--baseline``); the machine row printed first, the workers closed after."""
    names = [*names, *(["dfi-baseline"] if args.baseline else [])]
    pythons, roots = {"torch": args.torch_python}, {"dfi-baseline": args.baseline}
    with tempfile.TemporaryDirectory() as folder:
        workers = [benchproc.Worker(c, python=pythons.get(c, sys.executable), threads=args.threads, isa=args.isa,
                                    root=roots.get(c)) for c in names]
        try:
            benchproc.print_row({"bench": "machine", **benchproc.describe(workers, isa=args.isa)})
            yield folder, workers
        finally:
            for worker in workers:
                worker.close()


def _ratios(result: dict) -> dict:
    """dfi's median over every other contender's: ``{"dfi_over_torch": …}``."""
    return {f"dfi_over_{k}": round(result["dfi"]["median"] / v["median"], 3) for k, v in result.items() if k != "dfi"}


def bench_passes(args) -> None:
    """Each contender in its own process, alternating (scripts/benchproc.py)."""
    contenders = ["dfi"] + ([] if args.no_torch else ["torch"]) + (["chainer"] if args.chainer else [])
    with _contenders(args, contenders) as (folder, workers):
        weights = _weights_file(folder)
        for size in args.sizes:
            for batch in args.batches:
                result = benchproc.alternate(workers, {"case": "pass", "weights": weights, "size": size,
                                                       "batch": batch}, args.repeats, warm=args.warm)
                benchproc.print_row({"bench": "passes", "size": size, "batch": batch, "isa": args.isa or "native",
                                     "start": f"warm ({args.warm} passes before)" if args.warm else "cold",
                                     **{f"{k}_s_per_image": round(v["median"] / batch, 4) for k, v in result.items()},
                                     **_ratios(result), **result.conditions})


def _layer_cases(size: int, names) -> list[dict]:
    """Every convolution (forward, backward) and pooling (forward, backward) of a pass to
    conv5_1 at ``size``², with its map side (ceil pooling) and channels."""
    cases, side, channels = [], size, 3
    for name in names:
        if name.startswith("conv"):
            cases += [{"case": "conv", "layer": name, "side": side, "direction": d} for d in ("forward", "backward")]
            channels = CHANNELS[name]
        else:
            cases += [{"case": "pool", "layer": name, "side": side, "channels": channels, "direction": d}
                      for d in ("forward", "backward")]
            side = -(-side // 2)
    return cases


def bench_layers(args) -> None:
    """Each layer's forward and backward alone, dfi against PyTorch, each in its own process;
    dfi's convolutions split into product GEMMs, transform GEMMs and tile moves."""
    if args.in_pass:
        return _layers_in_pass(args)
    from bench_worker import vgg_order

    names = vgg_order(CHANNELS)
    names = names[:names.index(LAYERS[-1]) + 1]
    with _contenders(args) as (folder, workers):
        weights = _weights_file(folder)
        totals = {}
        for case in _layer_cases(args.size, names):
            case.update(weights=weights, batch=args.batch, size=args.size)
            result = benchproc.alternate(workers, case, args.repeats)
            row = {"bench": "layers", "layer": case["layer"], "direction": case["direction"], "side": case["side"],
                   "batch": args.batch, **{f"{k}_ms": round(v["median"] * 1e3, 2) for k, v in result.items()},
                   **{f"dfi_{k}_ms": round(v * 1e3, 2) for k, v in result["dfi"]["parts"].items()}}
            row["dfi_over_torch"] = round(result["dfi"]["median"] / result["torch"]["median"], 3)
            row.update(result.conditions)
            for k in result:
                totals[k] = totals.get(k, 0.0) + result[k]["median"]
            benchproc.print_row(row)
        benchproc.print_row({"bench": "layers_total", "size": args.size, "batch": args.batch,
                             **{f"{k}_ms": round(v * 1e3, 1) for k, v in totals.items()},
                             **{f"dfi_over_{k}": round(totals["dfi"] / v, 3) for k, v in totals.items() if k != "dfi"}})


def _net_file(folder: str, kind: str) -> str:
    """An inference network's weights and architecture as an .npz both workers read: the
    stylizer (dfi's TransformNet, one style, seed 0), DFI's decoder (conv5_1 + conv4_1 +
    conv3_1 of VGG-19) or AdaIN's (conv4_1), seed 0."""
    from dfi.nets.decoder import Decoder, adain_spec, conv_channels, dfi_spec
    from dfi.nets.stylizer import TransformNet

    arrays = {}
    if kind.startswith("stylizer"):
        variant = kind.partition(":")[2] or "dfi"
        net = TransformNet(1, variant=variant, seed=0)
        layers = [[name, k, stride, up, norm, relu] for name, k, stride, _, up, norm, relu in net.layers]
        for name, *_ in layers:
            link = getattr(net, name)
            arrays[f"{name}/W"] = link.W.array
            if link.b is not None:
                arrays[f"{name}/b"] = link.b.array
            if name in net.channels:
                arrays[f"{name}/gamma"] = getattr(net.styles[0], f"{name}_gamma").array.reshape(-1)
                arrays[f"{name}/beta"] = getattr(net.styles[0], f"{name}_beta").array.reshape(-1)
        spec = {"kind": "stylizer", "variant": variant, "layers": layers, "input_scale": net.variant.input_scale,
                "output": net.variant.output}
    else:
        decoder = Decoder(dfi_spec(CHANNELS) if kind == "dfi-decoder" else adain_spec(), seed=0)
        for index, *_ in conv_channels(decoder.spec):
            link = getattr(decoder, f"conv{index}")
            arrays[f"conv{index}/W"], arrays[f"conv{index}/b"] = link.W.array, link.b.array
        spec = {"kind": "decoder", "record": decoder.spec.record()}
    path = f"{folder}/{kind.replace(':', '-')}.npz"
    np.savez(path, spec=json.dumps(spec), **arrays)
    return path


def bench_inference(args) -> None:
    """The stylizer's and the decoders' inference passes, dfi's kernels against the same
    networks in PyTorch, each in its own process, alternating; the two outputs are checked
    to agree first."""
    with _contenders(args) as (folder, workers):
        for kind in args.nets:
            weights = _net_file(folder, kind)
            for size in args.sizes:
                for batch in args.batches:
                    case = {"case": "net", "weights": weights, "size": size, "batch": batch}
                    outputs = [np.array(w.ask({"op": "output", **case})["sample"]) for w in workers[:2]]
                    difference = float(np.abs(outputs[0] - outputs[1]).max())
                    if difference > 1.0:
                        raise RuntimeError(f"{kind}: dfi and PyTorch differ by {difference:.2f} grey levels")
                    result = benchproc.alternate(workers, case, args.repeats)
                    benchproc.print_row({"bench": "inference", "net": kind, "size": size, "batch": batch,
                                         "isa": args.isa or "native", "max_difference": round(difference, 4),
                                         **{f"{k}_s_per_image": round(v["median"] / batch, 4)
                                            for k, v in result.items()}, **_ratios(result), **result.conditions})


def _layers_in_pass(args) -> None:
    """Each layer group's forward and backward seconds inside whole passes (timers around
    dfi's kernels; PyTorch's profiler, which also costs it some time), alternating as
    ``passes`` does: the layers as they run warm, one after another."""
    with _contenders(args) as (folder, workers):
        weights = _weights_file(folder)
        result = benchproc.alternate(workers, {"case": "pass", "weights": weights, "size": args.size,
                                               "batch": args.batch, "layers": True}, args.repeats)
        for key in result["dfi"]["parts"]:
            layer, direction = key.split()
            row = {"bench": "layers_in_pass", "layer": layer, "direction": direction, "size": args.size,
                   "batch": args.batch, **{f"{k}_ms": round(v["parts"].get(key, 0.0) * 1e3, 2)
                                          for k, v in result.items()}}
            if row.get("torch_ms"):
                row["dfi_over_torch"] = round(row["dfi_ms"] / row["torch_ms"], 3)
            benchproc.print_row(row)
        benchproc.print_row({"bench": "layers_in_pass_total", "size": args.size, "batch": args.batch,
                             **{f"{k}_pass_ms": round(v["median"] * 1e3, 1) for k, v in result.items()},
                             **{f"{k}_layers_ms": round(sum(v["parts"].values()) * 1e3, 1)
                                for k, v in result.items()}, **result.conditions})


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
    from dfi.core.memory import keep_freed_memory, resident_bytes

    keep_freed_memory()  # as the command line does
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
    p.add_argument("--chainer", action="store_true", help="Chainer's own functions as a third contender")
    p.add_argument("--warm", type=int, default=0, help="untimed passes back to back before each timed one, "
                   "in the same turn (an optimiser's steady state; default 0: each pass after a pause)")
    p.set_defaults(func=bench_passes)
    p = sub.add_parser("layers")
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--in-pass", action="store_true", help="each layer's time inside whole passes, "
                   "not each layer called alone")
    p.set_defaults(func=bench_layers)
    p = sub.add_parser("inference")
    p.add_argument("--nets", type=lambda t: t.split(","), default=["stylizer", "dfi-decoder", "adain-decoder"],
                   help="stylizer[:variant], dfi-decoder, adain-decoder (comma-separated)")
    p.add_argument("--sizes", type=ints, default=[256])
    p.add_argument("--batches", type=ints, default=[1, 4])
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(func=bench_inference)
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
    for p in (sub.choices["passes"], sub.choices["layers"], sub.choices["inference"]):
        p.add_argument("--threads", type=int, default=2, help="every contender's thread count (default 2)")
        p.add_argument("--torch-python", default=sys.executable,
                       help="a Python with torch and NumPy for the PyTorch worker (it never imports dfi)")
        p.add_argument("--baseline", metavar="DIR", help="another checkout of dfi as a contender, "
                       "'dfi-baseline' (a before/after table)")
        p.add_argument("--isa", choices=sorted(benchproc.ISA_ENV), help="emulate this instruction set "
                       "(BLAS and oneDNN limited to it); figures are labelled as emulated")
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()

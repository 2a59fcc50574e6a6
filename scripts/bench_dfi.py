"""Benchmarks for issue 3 (results go to BENCHMARKS.md with machine, command and date).

    python scripts/bench_dfi.py peak              # float32 GEMM throughput: the machine's practical peak
    python scripts/bench_dfi.py passes            # fwd+bwd GFLOP/s at 200², batch 1 and 5; chainer-dfi pass
    python scripts/bench_dfi.py sweep [--size S]  # default 5-α sweep: wall time and peak memory
    python scripts/bench_dfi.py sizes             # time and memory of one fwd+bwd, 100² → 400²
    python scripts/bench_dfi.py quality --size S  # final feature loss, default settings vs 1,000 iterations
    python scripts/bench_dfi.py convert           # convert a full-size (575 MB) V1 caffemodel to npz

Each prints one JSON line. Memory is the peak RSS of a fresh subprocess per measurement.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import dfi._compat  # noqa: F401
import chainer
import chainer.functions as F
import chainer.links as L

from dfi.core.backend import parse_device, synchronize
from dfi.nets.vgg import VGG19, VGG19_BLOCKS, untrained_vgg19

#: DFI's L-BFGS settings before 2026-11-24 (iterations, curvature pairs): the sweep's reference
PREVIOUS_SETTINGS = (150, 10)
GFLOP_FWD_200 = 28.8  # VGG-19 forward to conv5_1 at 200² (../shared/anchors.md)
LAYERS = ["conv3_1", "conv4_1", "conv5_1"]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def bench_peak(args) -> dict:
    a = np.random.default_rng(0).random((4096, 4096), dtype=np.float32)
    seconds = _time(lambda: a @ a, 3)
    return {"bench": "peak", "sgemm_gflops": round(2 * 4096 ** 3 / seconds / 1e9, 1)}


def _dfi_pass(net, batch: int, size: int, micro: int, device):
    x = device.send(np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32) * 100)

    def run():
        for start in range(0, batch, micro):
            v = chainer.Variable(x[start:start + micro])
            feats = net.pick(v, LAYERS)
            F.sum(sum(F.sum(f * f) for f in feats.values())).backward()
        synchronize(device)
    return run


class _ChainerDfiVGG(chainer.Chain):
    """chainer-dfi's network: Convolution2D links (weights are parameters) to conv5_4."""

    def __init__(self):
        super().__init__()
        with self.init_scope():
            in_ch = 3
            for block, convs, channels in VGG19_BLOCKS:
                for i in range(1, convs + 1):
                    setattr(self, f"conv{block}_{i}", L.Convolution2D(in_ch, channels, 3, pad=1))
                    in_ch = channels

    def __call__(self, x):
        h, outs = x, []
        for block, convs, _ in VGG19_BLOCKS:
            for i in range(1, convs + 1):
                h = F.relu(getattr(self, f"conv{block}_{i}")(h))
                if i == 1 and block >= 3:
                    outs.append(h)
            if block < 5:
                h = F.max_pooling_2d(h, 2, stride=2)
        return outs


def _chainer_dfi_pass_seconds(size: int, device, repeats: int) -> float:
    """One chainer-dfi iteration: batch 1, forward+backward to conv5_4 with parameter grads."""
    old = _ChainerDfiVGG()
    old.to_device(device)
    x = chainer.Variable(device.send(np.random.default_rng(0).random((1, 3, size, size),
                                                                     dtype=np.float32) * 100))

    def chainer_dfi_pass():
        old.cleargrads()
        x.cleargrad()
        F.sum(sum(F.sum(f * f) for f in old(x))).backward()
        synchronize(device)
    return _time(chainer_dfi_pass, repeats)


def bench_passes(args) -> dict:
    device = parse_device(args.device)
    net = untrained_vgg19().to_device(device)
    gflop = 2 * GFLOP_FWD_200 * (args.size / 200) ** 2  # forward + input-gradient backward
    out = {"bench": "passes", "size": args.size, "device": str(device)}
    for batch, micro in ((1, 1), (5, 1), (5, 5)):
        seconds = _time(_dfi_pass(net, batch, args.size, micro, device), args.repeats)
        out[f"batch{batch}_micro{micro}_s"] = round(seconds, 3)
        out[f"batch{batch}_micro{micro}_gflops"] = round(gflop * batch / seconds, 1)
    out["chainer_dfi_pass_s"] = round(_chainer_dfi_pass_seconds(args.size, device, args.repeats), 3)
    return out


def _synthetic_index(root: Path, people: int) -> Path:
    from data_tools.index import build_index, save_index
    from data_tools.synth import make_synthetic_lfw

    result = make_synthetic_lfw(root, n_people=people, seed=0)
    save_index(build_index(result.images_dir, result.attributes_file), root / "index.csv")
    return root / "index.csv"


def _run_sweep(index_file: Path, size: int, iterations: int, history: int, ftol: float, device_spec: str,
               k: int, micro: int, kernel: str = "winograd") -> dict:
    from data_tools.index import load_index
    from dfi.edit.pipeline import EditConfig, choose_neighbors, compute_vector, load_face, sweep
    from dfi.core.reconstruct import ReconstructConfig, final

    device = parse_device(device_spec)
    net = VGG19(untrained_vgg19().params, kernel=kernel).to_device(device)
    index = load_index(index_file)
    table = index.table
    row = int(np.flatnonzero((table["Smiling"] < -0.5).to_numpy())[0])
    config = EditConfig(k=k, size=size, batch_size=micro or 8, reconstruct=ReconstructConfig(
        iterations=iterations, history=history, ftol=ftol, micro_batch=micro))
    face = load_face(index.image_path(row), config, row=row)
    start = time.perf_counter()
    vector = compute_vector(net, index, *choose_neighbors(index, face, "smiling", config), config)
    synchronize(device)
    t_vector = time.perf_counter()
    last = final(sweep(net, face, [vector], [0.1, 0.2, 0.3, 0.4, 0.5], config))
    synchronize(device)
    t_done = time.perf_counter()
    images = chainer.backend.CpuDevice().send(last.images)
    edits_file = index_file.parent / f"edits-{kernel}-{iterations}-{history}.npy"
    np.save(edits_file, images[1:] - images[0])  # what reaches the output: z_α − z_0, pixels
    return {"vector_s": round(t_vector - start, 2), "reconstruction_s": round(t_done - t_vector, 2),
            "edits_file": str(edits_file),
            "total_s": round(t_done - start, 2), "iterations": int(last.iteration),
            "evaluations": int(last.evaluations),
            "feature_loss": [float(v) for v in chainer.backend.CpuDevice().send(last.terms["feature"])],
            "loss": [float(v) for v in chainer.backend.CpuDevice().send(last.loss)],
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _subprocess(args_list: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args_list], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_sweep(args) -> dict:
    """The default sweep (dfi's kernels, the whole α batch per pass, DFI's L-BFGS settings)
    and, with ``--reference``, the settings before issue 13's last change (150 iterations,
    10 curvature pairs) on the same kernels, with ``--compare-old`` the same on Chainer's
    functions one image per pass (the path before issue 13), on the same data, all against
    the chainer-dfi schedule measured in the same run."""
    from dfi.edit.settings import HISTORY, ITERATIONS

    iterations = args.iterations or ITERATIONS
    history = args.history or HISTORY
    micro = args.micro if args.micro is not None else 0
    runs = {"new": ("winograd", micro, iterations, history)}
    if args.reference:
        runs["reference"] = ("winograd", micro, *PREVIOUS_SETTINGS)
    if args.compare_old:
        runs["old"] = ("chainer", 1, *PREVIOUS_SETTINGS)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        index_file = _synthetic_index(Path(tmp), args.people)
        for name, (kernel, micro, its, hist) in runs.items():
            results[name] = _subprocess(["_sweep", str(index_file), str(args.size), str(its), str(hist),
                                         str(args.ftol), args.device, str(args.k), str(micro), kernel])
        edits = {name: np.load(result.pop("edits_file")) for name, result in results.items()}
    # the chainer-dfi schedule, measured in the same run: 5,600 batch-1 passes with
    # parameter gradients (600 for the residual + 1,000 per alpha), extrapolated from a few
    pass_s = _chainer_dfi_pass_seconds(args.size, parse_device(args.device), args.repeats)
    schedule_s = 5600 * pass_s
    out = {"bench": "sweep", "size": args.size, "k": args.k, "device": args.device, "weights": "untrained",
           "chainer_dfi_pass_s": round(pass_s, 3), "chainer_dfi_schedule_s": round(schedule_s, 1)}
    for name, result in results.items():
        out[name] = dict(result, ratio_to_chainer_dfi=round(result["total_s"] / schedule_s, 4))
    for name in ("reference", "old"):  # the edits and the edited rows' losses (row 0 is α = 0)
        if name in results:
            change = np.abs(edits["new"] - edits[name])  # in pixels (0-255)
            out[f"new_edit_minus_{name}_px"] = {"mean": round(float(change.mean()), 3),
                                               "p99": round(float(np.percentile(change, 99)), 3),
                                               "max": round(float(change.max()), 3)}
            for term in ("loss", "feature_loss"):
                out[f"new_{term}_over_{name}"] = [round(n / o, 4) for n, o in zip(
                    results["new"][term][1:], results[name][term][1:])]
    return out


def bench_sizes(args) -> dict:
    out = {"bench": "sizes", "device": args.device}
    for size in (100, 200, 300, 400):
        out[str(size)] = _subprocess(["_one_pass", str(size), args.device])
    return out


def bench_quality(args) -> dict:
    from dfi.edit.settings import HISTORY, ITERATIONS

    with tempfile.TemporaryDirectory() as tmp:
        index_file = _synthetic_index(Path(tmp), args.people)
        default = _subprocess(["_sweep", str(index_file), str(args.size), str(args.iterations or ITERATIONS),
                               str(args.history or HISTORY), str(args.ftol), args.device, str(args.k), "0",
                               "winograd"])
        long = _subprocess(["_sweep", str(index_file), str(args.size), "1000", str(args.history or HISTORY), "0",
                            args.device, str(args.k), "0", "winograd"])
    ratio = [d / l for d, l in zip(default["feature_loss"][1:], long["feature_loss"][1:])]
    return {"bench": "quality", "size": args.size, "default": default, "long_1000": long,
            "loss_ratio_per_alpha": [round(r, 4) for r in ratio]}


def _write_full_caffemodel(path: Path) -> None:
    """A caffemodel with the real VGG-19 layer names, shapes and V1 format (random values)."""
    from dfi.nets.vgg import vgg19_shapes

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte, value = value & 0x7F, value >> 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    def field(number: int, payload: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    def blob(shape: tuple[int, ...], rng) -> bytes:
        dims = (1,) * (4 - len(shape)) + shape
        head = b"".join(varint((i + 1) << 3) + varint(d) for i, d in enumerate(dims))
        return head + field(5, rng.random(int(np.prod(shape)), dtype=np.float32).tobytes())

    rng = np.random.default_rng(0)
    shapes = {**vgg19_shapes(), "fc6": (4096, 25088), "fc7": (4096, 4096), "fc8": (1000, 4096)}
    with open(path, "wb") as handle:
        handle.write(field(1, b"VGG_ILSVRC_19_layers"))
        for name, shape in shapes.items():
            kind = 4 if name.startswith("conv") else 14
            body = field(4, name.encode()) + varint(5 << 3) + varint(kind)
            body += field(6, blob(shape, rng)) + field(6, blob((shape[0],), rng))
            handle.write(field(2, body))


def bench_convert(args) -> dict:
    from dfi.nets.weights import convert, save_npz

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "VGG_ILSVRC_19_layers.caffemodel"
        _write_full_caffemodel(path)
        start = time.perf_counter()
        params, convention, _ = convert(path)
        save_npz(Path(tmp) / "vgg19-caffe.npz", params, convention)
        seconds = time.perf_counter() - start
        size = path.stat().st_size
    return {"bench": "convert", "caffemodel_bytes": size, "convert_and_save_s": round(seconds, 2)}


def main() -> None:
    if sys.argv[1:2] == ["_sweep"]:  # internal: one sweep in a fresh process
        index_file, size, iterations, history, ftol, device, k, micro, kernel = sys.argv[2:11]
        print(json.dumps(_run_sweep(Path(index_file), int(size), int(iterations), int(history), float(ftol),
                                    device, int(k), int(micro), kernel)))
        return
    if sys.argv[1:2] == ["_one_pass"]:
        size, device_spec = int(sys.argv[2]), sys.argv[3]
        device = parse_device(device_spec)
        net = untrained_vgg19().to_device(device)
        seconds = _time(_dfi_pass(net, 1, size, 1, device), 2)
        print(json.dumps({"fwd_bwd_s": round(seconds, 3), "peak_rss_mb": round(_peak_rss_mb(), 1)}))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=("peak", "passes", "sweep", "sizes", "quality", "convert"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=None,
                        help="sweep: iteration cap (default DFI's); quality: the default run's")
    parser.add_argument("--history", type=int, default=None, help="sweep: L-BFGS pairs (default DFI's)")
    parser.add_argument("--ftol", type=float, default=1e-4)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--people", type=int, default=120)
    parser.add_argument("--micro", type=int, default=None)
    parser.add_argument("--compare-old", action="store_true",
                        help="sweep: also run the path before issue 13 (Chainer's functions, micro-batch 1, "
                             "150 iterations, 10 pairs)")
    parser.add_argument("--reference", action="store_true",
                        help="sweep: also run the settings before (150 iterations, 10 pairs) on dfi's kernels")
    args = parser.parse_args()
    result = globals()[f"bench_{args.bench}"](args)
    result.update(machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
                  python=platform.python_version(), date=time.strftime("%Y-%m-%d"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Benchmarks for ``dfi style`` (results go to BENCHMARKS.md with machine, command and date).

    python scripts/bench_style.py optimizers [--size 256] [--iterations 300] [--device cpu]
        # L-BFGS vs Adam: time, peak memory and loss curve of one style transfer each
    python scripts/bench_style.py memory [--sizes 128,256,384,512] [--device cpu]
        # the memory estimate dfi style refuses with, against the measured peak

Full-width untrained VGG-19 (the real weights cannot be fetched here: same FLOPs and
memory), a synthetic face as content and a synthetic painting as style. Each measurement
runs in a fresh subprocess and prints one JSON line.
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
import chainer  # noqa: F401  (after the shim, before dfi)

from data_tools.synth import make_style_image, make_synthetic_lfw
from dfi.core.backend import parse_device, synchronize, to_cpu
from dfi.core.image import read_image
from dfi.core.memory import estimate_bytes, resident_bytes
from dfi.core.reconstruct import ReconstructConfig
from dfi.style.gatys import StyleConfig, check_memory, fit_long_side, stylize
from dfi.nets.vgg import untrained_vgg19


def _pictures(root: Path, size: int):
    result = make_synthetic_lfw(root, n_people=1, seed=3)
    content = fit_long_side(read_image(result.images_dir / result.table["path"].iloc[0]), size)
    style = np.asarray(make_style_image((size, size), kind="strokes"), np.float32).transpose(2, 0, 1)
    return content, np.ascontiguousarray(style)


def _gpu_peak(device) -> float:
    if device.xp is np:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    import cupy
    return cupy.get_default_memory_pool().total_bytes() / 2**20


def _one_run(size: int, optimizer: str, iterations: int, device_spec: str) -> dict:
    device = parse_device(device_spec)
    net = untrained_vgg19().to_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        content, style = _pictures(Path(tmp), size)
    config = StyleConfig(scales=(size,), reconstruct=ReconstructConfig(
        iterations=iterations, optimizer=optimizer, ftol=0.0, tv_weight=StyleConfig().reconstruct.tv_weight))
    estimate = check_memory(net, content, [style], config)
    curve, start = [], time.perf_counter()
    last = None
    for last in stylize(net, content, [style], config):
        curve.append(round(float(last.progress.loss[0]), 5))
    synchronize(device)
    seconds = time.perf_counter() - start
    terms = {k: float(to_cpu(v)[0]) for k, v in last.progress.terms.items()}
    return {"optimizer": optimizer, "seconds": round(seconds, 1),
            "iterations": int(last.progress.iteration), "evaluations": int(last.progress.evaluations),
            "final_loss": curve[-1], "terms": terms, "curve_every_10": curve[9::10],
            "peak_mb": round(_gpu_peak(device), 1), "estimate_mb": round(estimate / 2**20, 1)}


def _memory_run(size: int, device_spec: str) -> dict:
    device = parse_device(device_spec)
    net = untrained_vgg19().to_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        content, style = _pictures(Path(tmp), size)
    config = StyleConfig(scales=(size,), reconstruct=ReconstructConfig(iterations=3, ftol=0.0))
    on_gpu = device.xp is not np
    estimate = estimate_bytes(net, content.shape[1:], config.layers,
                              baseline=0 if on_gpu else resident_bytes())
    for _ in stylize(net, content, [style], config):
        pass
    peak = _gpu_peak(device)
    return {"size": size, "estimate_mb": round(estimate / 2**20, 1), "peak_mb": round(peak, 1),
            "estimate_over_peak": round(estimate / 2**20 / peak, 3)}


def _subprocess(argv: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["_run"]:
        size, optimizer, iterations, device = sys.argv[2:6]
        print(json.dumps(_one_run(int(size), optimizer, int(iterations), device)))
        return
    if sys.argv[1:2] == ["_memory"]:
        print(json.dumps(_memory_run(int(sys.argv[2]), sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=("optimizers", "memory"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--sizes", default="128,256,384,512")
    args = parser.parse_args()
    if args.bench == "optimizers":
        result = {"bench": "style-optimizers", "size": args.size, "device": args.device,
                  "runs": [_subprocess(["_run", str(args.size), opt, str(args.iterations), args.device])
                           for opt in ("lbfgs", "adam")]}
    else:
        result = {"bench": "style-memory", "device": args.device,
                  "sizes": [_subprocess(["_memory", s, args.device]) for s in args.sizes.split(",")]}
    result.update(machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
                  python=platform.python_version(), date=time.strftime("%Y-%m-%d"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

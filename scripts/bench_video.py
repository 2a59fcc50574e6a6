"""Benchmarks of the video loop (results go to BENCHMARKS.md with machine, command and date).

    python scripts/bench_video.py warm [--sizes 128,256]      # cold vs warm start, to (near) the same loss
    python scripts/bench_video.py flow [--sizes 256,512]      # DIS flow + masks per frame
    python scripts/bench_video.py memory [--frames 4,16]      # peak RSS against video length
    python scripts/bench_video.py consistency [--size 96]     # warping error, consistent vs independent
    python scripts/bench_video.py onepass [--size 96]         # per-frame AdaIN's flicker, --temporal-blend, Gatys

The video is synthetic: a textured scene panning by 2 px per frame (its motion is known),
stylised with a synthetic painting on the untrained full VGG-19. Each prints JSON lines.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np

import dfi._compat  # noqa: F401
from dfi.core.image import resize
from dfi.core.reconstruct import ReconstructConfig, reconstruct
from dfi.nets.vgg import untrained_vgg19
from dfi.style.gatys import StyleConfig, blend_weights, make_loss, targets
from dfi.video.flow import consistency, dis_flow, flows_ahead
from dfi.video.stylize import VideoConfig, stylize_video, temporal_term, warped_start

SHIFT = 2


def _scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = resize(rng.uniform(0, 255, (3, max(2, height // 8), max(2, width // 8))).astype(np.float32),
                  (height, width))
    detail = resize(rng.uniform(-60, 60, (3, height // 3, width // 3)).astype(np.float32), (height, width))
    return np.clip(base + detail, 0, 255).astype(np.float32)


def _pan(count: int, size: int) -> list:
    scene = _scene(size + 16, size + SHIFT * count + 16)
    return [scene[:, 8:8 + size, 8 + SHIFT * i:8 + SHIFT * i + size].copy() for i in range(count)]


def _style() -> np.ndarray:
    from data_tools.synth import make_style_image

    picture = make_style_image((256, 256), kind="strokes")
    return np.asarray(picture, dtype=np.float32).transpose(2, 0, 1).copy()


def _machine() -> dict:
    return {"machine": platform.machine(), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def bench_warm(args) -> None:
    """Frame 2 of a pan, each run to convergence with the default stopping rule: from the
    content (cold) and from the warped frame-1 result (warm). Reports both runs and the time
    each needed to come within a tolerance of the cold run's final loss (0 = the same loss)."""
    net, style = untrained_vgg19(), _style()
    video = VideoConfig()
    for size in args.sizes:
        frames = _pan(2, size)
        config = StyleConfig(scales=(size,), reconstruct=ReconstructConfig(iterations=args.iterations, ftol=1e-5))
        first = next(stylize_video(net, iter(frames[:1]), [style], config, video, (size, size))).image
        flows = list(flows_ahead(iter(frames), (1,)))[1]
        _, grams = targets(net, None, [style], blend_weights(config, 1), config, size)
        content_t, _ = targets(net, frames[1], [], [], config, size)
        loss = make_loss(content_t, grams, config)
        term = temporal_term(net, flows, {1: first}, video.temporal_weight)
        traces = {}
        for name, start in (("cold", frames[1]), ("warm", warped_start(first, flows.backward[1]))):
            begin, trace = time.perf_counter(), []
            for last in reconstruct(net, start[None].copy(), loss, config.layers, config.reconstruct,
                                    image_loss=term):
                trace.append((time.perf_counter() - begin, float(last.loss[0])))
            traces[name] = trace
        goal = traces["cold"][-1][1]
        row = {name: {"seconds": round(trace[-1][0], 2), "iterations": len(trace),
                      "start_loss": round(trace[0][1], 5), "final_loss": round(trace[-1][1], 5)}
               for name, trace in traces.items()}
        for tolerance in args.tolerances:
            reached = {name: next((t for t, value in trace if value <= goal * (1 + tolerance)), None)
                       for name, trace in traces.items()}
            row[f"within_{tolerance:g}"] = {
                **{name: None if t is None else round(t, 2) for name, t in reached.items()},
                "warm_over_cold": None if reached["warm"] is None else round(reached["warm"] / reached["cold"], 3)}
        print(json.dumps({"bench": "warm", "size": size, **row,
                          "converged_warm_over_cold": round(traces["warm"][-1][0] / traces["cold"][-1][0], 3),
                          **_machine()}), flush=True)


def bench_flow(args) -> None:
    for size in args.sizes:
        frames = _pan(2, size)
        start = time.perf_counter()
        for _ in range(args.repeats):
            backward, forward = dis_flow(frames[1], frames[0]), dis_flow(frames[0], frames[1])
            consistency(backward, forward)
        print(json.dumps({"bench": "flow", "size": size, "preset": "medium",
                          "seconds_per_frame": round((time.perf_counter() - start) / args.repeats, 4),
                          **_machine()}), flush=True)


def _one_video(count: int, size: int, iterations: int) -> dict:
    net, style = untrained_vgg19(), _style()
    config = StyleConfig(scales=(size,), reconstruct=ReconstructConfig(iterations=iterations))
    frames = iter(_pan(count, size))
    start = time.perf_counter()
    done = sum(1 for _ in stylize_video(net, frames, [style], config, VideoConfig(), (size, size)))
    return {"frames": done, "seconds": round(time.perf_counter() - start, 1),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def bench_memory(args) -> None:
    for count in args.frames:
        out = subprocess.run([sys.executable, __file__, "_video", str(count), str(args.size), str(args.iterations)],
                             capture_output=True, text=True, check=True)
        print(json.dumps({"bench": "memory", "size": args.size, **json.loads(out.stdout), **_machine()}), flush=True)


def bench_consistency(args) -> None:
    net, style = untrained_vgg19(), _style()
    frames = _pan(args.frames, args.size)
    config = StyleConfig(scales=(args.size,), reconstruct=ReconstructConfig(iterations=args.iterations, ftol=0))

    def error(video: VideoConfig, init: str) -> float:
        outs = [r.image for r in stylize_video(net, iter(frames), [style], replace(config, init=init), video,
                                               (args.size, args.size))]
        return float(np.mean([np.abs(b[:, 4:-4, 4:-4 - SHIFT] - a[:, 4:-4, 4 + SHIFT:-4]).mean()
                              for a, b in zip(outs, outs[1:])]))
    row = {"bench": "consistency", "size": args.size, "frames": args.frames, "iterations": args.iterations,
           "independent_from_noise": error(VideoConfig(temporal_weight=0, init="noise"), "noise"),
           "independent_from_content": error(VideoConfig(temporal_weight=0, init="content"), "content")}
    for weight in args.weights:
        row[f"consistent_w{weight:g}"] = error(VideoConfig(temporal_weight=weight), "content")
    print(json.dumps({**{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, **_machine()}),
          flush=True)


def bench_onepass(args) -> None:
    """Flicker of per-frame AdaIN against the temporal Gatys path, and the cheap remedy
    (--temporal-blend), by the same warping error as ``consistency``: the mean |change|
    between consecutive outputs once the pan is undone (interior pixels)."""
    from dfi.nets.decoder import Decoder, FastDecoder, adain_spec
    from dfi.nets.encoder import Encoder
    from dfi.nets.vgg import he_init, vgg19_shapes
    from dfi.style.adain import adain_transfer, encode_styles
    from dfi.video.stylize import one_pass_video

    frames, style = _pan(args.frames, args.size), _style()
    shapes = {n: v for n, v in vgg19_shapes().items() if int(n[4]) < 4 or n == "conv4_1"}
    encoder, decoder = Encoder(he_init(shapes)), FastDecoder(Decoder(adain_spec()))
    features = encode_styles(encoder, [resize(style, (args.size, args.size))])

    def error(outs):
        return float(np.mean([np.abs(b[:, 4:-4, 4:-4 - SHIFT] - a[:, 4:-4, 4 + SHIFT:-4]).mean()
                              for a, b in zip(outs, outs[1:])]))
    row = {"bench": "onepass", "size": args.size, "frames": args.frames}
    for blend in args.blends:
        start = time.perf_counter()
        outs = [out for _, out in one_pass_video(lambda f: adain_transfer(encoder, decoder, f, [], style_features=features),
                                                 iter(frames), (args.size, args.size), blend=blend)]
        row[f"adain_blend{blend:g}"] = error(outs)
        row[f"adain_blend{blend:g}_s_per_frame"] = (time.perf_counter() - start) / len(frames)
    net = untrained_vgg19()
    config = StyleConfig(scales=(args.size,), reconstruct=ReconstructConfig(iterations=args.iterations, ftol=0))
    for name, video in (("gatys_independent", VideoConfig(temporal_weight=0, init="content")),
                        ("gatys_temporal", VideoConfig())):
        start = time.perf_counter()
        outs = [r.image for r in stylize_video(net, iter(frames), [style], config, video, (args.size, args.size))]
        row[name] = error(outs)
        row[f"{name}_s_per_frame"] = (time.perf_counter() - start) / len(frames)
    print(json.dumps({**{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, **_machine()}),
          flush=True)


def main() -> None:
    if sys.argv[1:2] == ["_video"]:
        print(json.dumps(_one_video(*map(int, sys.argv[2:5]))))
        return
    ints = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("warm")
    p.add_argument("--sizes", type=ints, default=[128, 256])
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--tolerances", type=lambda t: [float(v) for v in t.split(",")], default=[0, 0.001, 0.005, 0.01])
    p.set_defaults(func=bench_warm)
    p = sub.add_parser("flow")
    p.add_argument("--sizes", type=ints, default=[256, 512])
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(func=bench_flow)
    p = sub.add_parser("memory")
    p.add_argument("--frames", type=ints, default=[4, 16])
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--iterations", type=int, default=10)
    p.set_defaults(func=bench_memory)
    p = sub.add_parser("consistency")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--weights", type=lambda t: [float(v) for v in t.split(",")], default=[1e-3, 1e-2, 5e-2])
    p.set_defaults(func=bench_consistency)
    p = sub.add_parser("onepass")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--blends", type=lambda t: [float(v) for v in t.split(",")], default=[0, 0.5, 0.8])
    p.set_defaults(func=bench_onepass)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()

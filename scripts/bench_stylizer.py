"""Benchmarks of feed-forward stylisation (results go to BENCHMARKS.md with machine, command and date).

    python scripts/bench_stylizer.py speed [--sizes 256,512] [--batches 1,4] [--repeats 9]
    python scripts/bench_stylizer.py memory [--sizes 256,512]
    python scripts/bench_stylizer.py train [--sizes 64,256] [--batch 4] [--steps 4]
    python scripts/bench_stylizer.py quality [--size 64] [--steps 1500] [--iterations 50,100,300]

``speed``: images per second of the published network (width 1) on dfi's kernels
(:class:`dfi.nets.stylizer_kernels.FastTransform`, prepared once) and as a Chainer graph without backprop, alternating in
every repetition; medians. ``memory``: the peak resident size of a fresh process that loads
a model and stylises one image. ``train``: training steps per second (Adam, VGG-19 losses).
``quality``: trains a network on synthetic photos, then scores its output on held-out
photos with the training loss (content + style + TV, one image at a time) against Gatys
et al.'s optimisation of the same loss from the content image after 50 / 100 / 300 L-BFGS
iterations. The VGG-19 is the seeded untrained one (no real weights here): the figures
compare methods on one loss, not picture quality. Each command prints JSON lines.
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

from dfi.nets.stylizer import TransformNet
from dfi.nets.stylizer_kernels import FastTransform


def _machine() -> dict:
    return {"machine": platform.machine(), "cores": len(__import__("os").sched_getaffinity(0)),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def bench_speed(args) -> None:
    net = TransformNet(2)
    for size in _ints(args.sizes):
        for batch in _ints(args.batches):
            x = np.random.default_rng(0).uniform(0, 255, (batch, 3, size, size)).astype(np.float32)
            transform = FastTransform(net)  # prepared once, as a Stylizer does

            def fast():
                return transform(x, {0: 1.0})

            def graph():
                with chainer.no_backprop_mode(), chainer.using_config("train", False):
                    return net(x, {0: 1.0}).array
            runs = {"dfi": fast, "chainer": graph}
            times = {name: [] for name in runs}
            for name, f in runs.items():
                f()  # warm: workspace, transformed filters
            for _ in range(args.repeats):
                for name, f in runs.items():
                    start = time.perf_counter()
                    f()
                    times[name].append(time.perf_counter() - start)
            medians = {name: statistics.median(t) for name, t in times.items()}
            print(json.dumps({"bench": "speed", "size": size, "batch": batch,
                              **{f"{n}_images_per_s": round(batch / t, 2) for n, t in medians.items()},
                              "dfi_over_chainer_time": round(medians["dfi"] / medians["chainer"], 3),
                              **_machine()}), flush=True)


def bench_memory(args) -> None:
    for size in _ints(args.sizes):
        out = subprocess.run([sys.executable, __file__, "_one", str(size)], capture_output=True, text=True, check=True)
        print(out.stdout.strip(), flush=True)


def _one(size: int) -> None:
    import tempfile

    from dfi.style.feedforward import Stylizer, save_model

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as folder:
        save_model(f"{folder}/m.npz", TransformNet(2), styles=["a", "b"], settings={})
        model = Stylizer.load(f"{folder}/m.npz")
        image = np.random.default_rng(0).uniform(0, 255, (3, size, size)).astype(np.float32)
        start = time.perf_counter()
        model.stylize(image, style=0)
        seconds = time.perf_counter() - start
    print(json.dumps({"bench": "memory", "size": size, "seconds_first_image": round(seconds, 3),
                      "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "before_mb": round(before, 1), **_machine()}))


def _photos(count: int, size: int, seed: int) -> list:
    """Synthetic photos: smooth colour fields with edges and detail (stand-ins for COCO)."""
    from dfi.core.image import resize

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        base = resize(rng.uniform(0, 255, (3, 4, 4)).astype(np.float32), (size, size))
        detail = resize(rng.uniform(-70, 70, (3, size // 4, size // 4)).astype(np.float32), (size, size))
        out.append(np.clip(base + detail, 0, 255).astype(np.float32))
    return out


def _content_folder(folder, count: int, size: int, seed: int):
    from dfi.core.image import write_image

    for i, photo in enumerate(_photos(count, size, seed)):
        write_image(f"{folder}/p{i:04d}.png", photo)
    return folder


def _style_image():
    from data_tools.synth import make_style_image

    return np.asarray(make_style_image((256, 256), kind="strokes"), np.float32).transpose(2, 0, 1).copy()


def bench_train(args) -> None:
    import tempfile

    from dfi.nets.vgg import untrained_vgg19
    from dfi.style.feedforward import TrainConfig, Trainer, content_images

    vgg = untrained_vgg19(seed=0)
    for size in _ints(args.sizes):
        with tempfile.TemporaryDirectory() as folder:
            files = content_images(_content_folder(folder, 16, size, 1))
            config = TrainConfig(size=size, batch_size=args.batch, iterations=args.steps + 1)
            trainer = Trainer(vgg, TransformNet(1), [_style_image()], files, config)
            next(trainer.run(1))  # warm
            start = time.perf_counter()
            for _ in trainer.run(args.steps + 1):
                pass
            seconds = (time.perf_counter() - start) / args.steps
        print(json.dumps({"bench": "train", "size": size, "batch": args.batch, "seconds_per_step": round(seconds, 2),
                          "steps_per_s": round(1 / seconds, 3), **_machine()}), flush=True)


def bench_quality(args) -> None:
    import tempfile

    from dfi.core.reconstruct import ReconstructConfig
    from dfi.nets.vgg import untrained_vgg19
    from dfi.style.feedforward import Stylizer, TrainConfig, Trainer, content_images
    from dfi.style.gatys import StyleConfig, stylize
    from dfi.style.settings import parse_layer_weights

    vgg = untrained_vgg19(seed=0)
    style = _style_image()
    config = TrainConfig(size=args.size, batch_size=4, iterations=args.steps, lr=args.lr)
    with tempfile.TemporaryDirectory() as folder:
        files = content_images(_content_folder(folder, 400, args.size, 1))
        trainer = Trainer(vgg, TransformNet(1, seed=0), [style], files, config)
        start, curve = time.perf_counter(), []
        for step in trainer.run(args.steps):
            if step.step % max(1, args.steps // 10) == 0:
                curve.append((step.step, round(step.loss, 4)))
        train_seconds = time.perf_counter() - start
    held_out = _photos(args.held_out, args.size, 999)  # a seed the training photos never used
    model = Stylizer(trainer.transform)

    def score(image, content) -> float:
        with chainer.no_backprop_mode():
            terms = trainer.loss_terms(0, content[None], image[None].astype(np.float32))
        return float(sum(t.array[0] for t in terms.values()))

    start = time.perf_counter()
    outputs = [model.stylize(c, style=0) for c in held_out]
    ff_seconds = (time.perf_counter() - start) / len(held_out)
    result = {"feedforward": statistics.mean(score(o, c) for o, c in zip(outputs, held_out)),
              "content_image": statistics.mean(score(c, c) for c in held_out)}
    gatys = StyleConfig(content_layers={config.content_layer: 1.0},
                        style_layers=parse_layer_weights(config.style_layers, "--style-layers"),
                        content_weight=config.content_weight, style_weight=config.style_weight,
                        scales=(args.size,), style_scale=1.0)
    seconds = {}
    for iterations in _ints(args.iterations):
        cfg = StyleConfig(**{**gatys.__dict__, "reconstruct": ReconstructConfig(
            iterations=iterations, tv_weight=config.tv_weight, ftol=0.0)})
        scores, start = [], time.perf_counter()
        for content in held_out:
            last = None
            for last in stylize(vgg, content, [style], cfg):
                pass
            scores.append(score(last.progress.images[0], content))
        seconds[iterations] = round((time.perf_counter() - start) / len(held_out), 2)
        result[f"gatys_{iterations}"] = statistics.mean(scores)
    print(json.dumps({"bench": "quality", "size": args.size, "steps": args.steps, "batch": 4, "lr": args.lr,
                      "train_seconds": round(train_seconds), "curve": curve, "held_out": args.held_out,
                      "loss": {k: round(v, 4) for k, v in result.items()},
                      "seconds_per_image": {"feedforward": round(ff_seconds, 4), **seconds}, **_machine()}),
          flush=True)


def main() -> None:
    if sys.argv[1:2] == ["_one"]:
        _one(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--batches", default="1,4")
    p.add_argument("--repeats", type=int, default=9)
    p.set_defaults(func=bench_speed)
    p = sub.add_parser("memory")
    p.add_argument("--sizes", default="256,512")
    p.set_defaults(func=bench_memory)
    p = sub.add_parser("train")
    p.add_argument("--sizes", default="64,256")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=4)
    p.set_defaults(func=bench_train)
    p = sub.add_parser("quality")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--held-out", type=int, default=4)
    p.add_argument("--iterations", default="50,100,300")
    p.set_defaults(func=bench_quality)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()

"""Kernel launches a GPU would make, counted on a CPU (:mod:`dfi.core.launches`), not timed.

    python scripts/count_launches.py [--json OUT.json]

Counts, each for the code as it is:
- ``vgg``: one forward + backward pass of the full-width VGG-19 to conv5_1 (the default
  edit's layers conv3_1, conv4_1, conv5_1) at 200², batch 1 and batch 6;
- ``lbfgs``: one L-BFGS iteration's own launches (the objective's left out), history 20
  (DFI's default) and 10, six images of 200² (a sweep's batch);
- ``stylizer``: one stylisation by the full-width feed-forward network on dfi's kernels at
  512², batch 1 and 4 (training runs through Chainer's graph and optimiser, which this
  stand-in device does not fool: not counted);
- ``decoder``: one pass of the DFI feature decoder (width 0.5, conv5_1 → conv4_1 → conv3_1,
  the default's layers and the other padding / upsampling / normalisation at once) at 208²
  (200² rounded up to conv5_1's stride, as edits pad), batch 6 (a sweep's rows).
Also the host → device copies (uploads) of each, after a first warm-up call.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import dfi._compat  # noqa: F401
import chainer
import chainer.functions as F

from dfi.core.launches import counting


def _twice(device, run) -> dict:
    """Run once to warm caches (transformed filters, transform matrices), then count one."""
    run()
    device.counter.reset()
    run()
    return {"launches": device.counter.total, "uploads": device.counter.uploads,
            "by_kind": dict(sorted(device.counter.launches.items(), key=lambda kv: -kv[1])[:8])}


def count_vgg(size: int, batch: int) -> dict:
    from dfi.nets.vgg import untrained_vgg19

    with counting() as device:
        net = untrained_vgg19(seed=0).to_device(device)
        x = device.send(np.random.default_rng(0).uniform(-100, 100, (batch, 3, size, size)).astype(np.float32))

        def run():
            xv = chainer.Variable(x)
            feats = net.pick(xv, ["conv3_1", "conv4_1", "conv5_1"])
            sum(F.sum(f * f) for f in feats.values()).backward()
        return _twice(device, run)


def count_lbfgs(history: int, images: int = 6, size: int = 200) -> dict:
    from dfi.core.optimize import lbfgs

    with counting() as device:
        xp = device.xp
        dim = 3 * size * size
        rng = np.random.default_rng(0)
        curvature = device.send(rng.uniform(0.5, 2.0, (images, dim)).astype(np.float32))
        objective_launches = [0]

        def objective(x, rows):
            before = device.counter.total
            g = curvature[rows] * x
            f = 0.5 * (g * x).sum(axis=1)
            objective_launches[0] += device.counter.total - before
            return f, g

        steps = lbfgs(objective, xp.asarray(rng.normal(size=(images, dim)).astype(np.float32)),
                      max_iter=history + 3, history=history, ftol=0.0)
        for _ in range(history + 1):  # fill the history
            next(steps)
        device.counter.reset()
        objective_launches[0] = 0
        next(steps)
        return {"launches": device.counter.total - objective_launches[0], "uploads": device.counter.uploads}


def count_stylizer(size: int, batch: int) -> dict:
    from dfi.nets.stylizer import TransformNet
    from dfi.nets.stylizer_kernels import FastTransform

    with counting() as device:
        net = TransformNet(1)
        net.to_device(device)
        transform = FastTransform(net)
        x = device.send(np.random.default_rng(0).uniform(0, 255, (batch, 3, size, size)).astype(np.float32))
        return _twice(device, lambda: transform(x, {0: 1.0}))


def count_decoder(size: int, batch: int, **kinds) -> dict:
    from dfi.nets.decoder import Decoder, FastDecoder, dfi_spec
    from dfi.nets.vgg import untrained_vgg19

    spec = dfi_spec({name: w.shape[0] for name, (w, _) in untrained_vgg19(seed=0).params.items()}, width=0.5,
                    **kinds)
    rng = np.random.default_rng(0)
    with counting() as device:
        net = Decoder(spec)
        net.to_device(device)
        decode = FastDecoder(net)
        sides = {name: -(-size // 2 ** (int(name[4]) - 1)) for name, _ in spec.inputs}  # VGG's pooling rounds up
        feats = {name: device.send(rng.uniform(0, 1, (batch, c, sides[name], sides[name])).astype(np.float32))
                 for name, c in spec.inputs}
        return _twice(device, lambda: decode(feats, (size, size)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the counts here")
    args = parser.parse_args(argv)
    counts = {
        "vgg 200² batch 1": count_vgg(200, 1), "vgg 200² batch 6": count_vgg(200, 6),
        "lbfgs iteration, history 20": count_lbfgs(20), "lbfgs iteration, history 10": count_lbfgs(10),
        "stylizer 512² batch 1": count_stylizer(512, 1), "stylizer 512² batch 4": count_stylizer(512, 4),
        "decoder 208² batch 6": count_decoder(208, 6),
        "decoder 208² batch 6, zero/bilinear/instance": count_decoder(208, 6, padding="zero", upsample="bilinear",
                                                                       norm="instance"),
    }
    for name, record in counts.items():
        kinds = ", ".join(f"{k} {v}" for k, v in record.get("by_kind", {}).items())
        print(f"{name:30s} {record['launches']:7d} launches {record['uploads']:4d} uploads  {kinds}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(counts, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One contender's worker process for ``scripts/benchproc.py`` (not run by hand).

    python scripts/bench_worker.py dfi|dfi-baseline|chainer|torch THREADS

Reads JSON requests from stdin, one per line, and answers each with one JSON line:
``setup`` (versions, BLAS), ``prepare`` (build the case: networks, inputs; one untimed run),
``run`` (one timed run: ``seconds``, and for dfi's convolutions ``parts``: the product
GEMMs, the transform GEMMs and the element-wise tile moves apart). The torch contender
imports neither dfi nor Chainer: it reads the weights from the ``.npz`` the parent wrote.

Cases: ``pass`` (VGG-19 forward to conv5_1 + input-gradient backward of Σ‖φ_l‖² over
conv3_1, conv4_1, conv5_1), ``conv`` (one VGG convolution + ReLU forward, or its input
gradient), ``pool`` (2×2 max pooling forward or backward), ``net`` (inference of a network
described layer by layer in the ``.npz``: the stylizer, the decoders).
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

LOSS_LAYERS = ("conv3_1", "conv4_1", "conv5_1")


def vgg_order(names):
    """VGG-19's layer names among ``names`` up to conv5_1 in order, pools included."""
    order, names = [], set(str(n) for n in names)
    for block, convs in enumerate((2, 2, 4, 4, 1), start=1):
        order += [f"conv{block}_{i}" for i in range(1, convs + 1) if f"conv{block}_{i}" in names]
        if block < 5:
            order.append(f"pool{block}")
    return order


class GemmClock:
    """Adds up the wall seconds of dfi's GEMMs: batched (3-D, the Winograd products) and
    plain (2-D: the tile transforms; for the image's layer, the direct convolution). It
    wraps ``dfi.nets.threads.matmul``, which splits each GEMM over the threads (an older
    checkout without it: ``numpy.matmul``)."""

    def __init__(self):
        try:
            from dfi.nets import threads
            self.module, self.name = threads, "matmul"
        except ImportError:
            self.module, self.name = np, "matmul"
        self.original = getattr(self.module, self.name)
        self.parts = {"gemm_products": 0.0, "gemm_transforms": 0.0}

    def __enter__(self):
        def timed(a, b, *args, **kwargs):
            start = time.perf_counter()
            result = self.original(a, b, *args, **kwargs)
            key = "gemm_products" if np.ndim(a) == 3 else "gemm_transforms"
            self.parts[key] += time.perf_counter() - start
            return result
        setattr(self.module, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.original)


class DfiContender:
    def __init__(self, kernel: str):
        import dfi._compat  # noqa: F401
        import chainer

        self.chainer, self.kernel = chainer, kernel

    def setup(self) -> dict:
        import threadpoolctl

        blas = threadpoolctl.threadpool_info()
        blas = [f"{b['internal_api']} {b['version']} {b.get('architecture', '')}".strip() for b in blas]
        return {"numpy": np.__version__, "blas": blas, "chainer": self.chainer.__version__}

    def prepare(self, case: dict):
        import chainer.functions as F

        from dfi.nets.conv import conv3x3
        from dfi.nets.pool import pool2x2
        from dfi.nets.vgg import VGG19
        from dfi.nets.winograd import Conv3x3, Workspace

        rng = np.random.default_rng(0)
        if case["case"] == "pass":
            weights = np.load(case["weights"])
            params = {str(n): (weights[f"{n}/W"], weights[f"{n}/b"]) for n in weights["names"]}
            net = VGG19(params, kernel=self.kernel)
            x0 = rng.random((case["batch"], 3, case["size"], case["size"]), dtype=np.float32) * 255 - 120

            def run():
                x = self.chainer.Variable(x0.copy())
                with self.chainer.using_config("train", False):
                    feats = net.pick(x, LOSS_LAYERS)
                    F.sum(sum(F.sum(v * v) for v in feats.values())).backward()
            return run, False
        if case["case"] == "conv":
            weights = np.load(case["weights"])
            layer = Conv3x3(weights[case["layer"] + "/W"], weights[case["layer"] + "/b"])
            out_c, in_c = layer.channels
            side, batch = case["side"], case["batch"]
            workspace = Workspace()
            workspace.note_input(64, batch * case["size"] ** 2)  # as in a whole pass: conv1_2's budget
            if case["direction"] == "forward":
                x = rng.random((batch, side, side, in_c), dtype=np.float32)
                return lambda: conv3x3(x, layer, workspace), True
            gy = rng.random((batch, side, side, out_c), dtype=np.float32) - 0.5
            return lambda: conv3x3(gy, layer, workspace, backward=True, mask=gy), True
        if case["case"] == "pool":
            x = rng.random((case["batch"], case["side"], case["side"], case["channels"]), dtype=np.float32)
            if case["direction"] == "forward":
                return lambda: pool2x2(x).array, False
            v = self.chainer.Variable(x)

            def run():
                y = pool2x2(v)
                y.grad = np.ones(y.shape, np.float32)
                y.backward()
            return run, False
        raise ValueError(f"case {case['case']!r} is not pass, conv or pool")


class TorchContender:
    def __init__(self, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch

    def setup(self) -> dict:
        torch = self.torch
        row = {"torch": torch.__version__, "numpy": np.__version__,
               "cpu_capability": torch.backends.cpu.get_cpu_capability(), "onednn": torch.backends.mkldnn.is_available()}
        try:
            import threadpoolctl
            row["blas"] = [f"{b['internal_api']} {b['version']}" for b in threadpoolctl.threadpool_info()]
        except ImportError:
            pass
        return row

    def prepare(self, case: dict):
        torch = self.torch
        fn = torch.nn.functional
        rng = np.random.default_rng(0)
        weights = np.load(case["weights"])
        tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        if case["case"] == "pass":
            order = vgg_order(weights["names"])
            params = {n: (tensor(weights[n + "/W"]), tensor(weights[n + "/b"])) for n in order if n.startswith("conv")}
            x0 = rng.random((case["batch"], 3, case["size"], case["size"]), dtype=np.float32) * 255 - 120

            def run():
                x = torch.from_numpy(x0.copy()).requires_grad_()
                h, feats = x, []
                for name in order:
                    if name.startswith("conv"):
                        h = torch.relu(fn.conv2d(h, *params[name], padding=1))
                    else:
                        h = fn.max_pool2d(h, 2, 2, ceil_mode=True)
                    if name in LOSS_LAYERS:
                        feats.append(h)
                sum((f * f).sum() for f in feats).backward()
            return run, False
        if case["case"] == "conv":
            w, b = tensor(weights[case["layer"] + "/W"]), tensor(weights[case["layer"] + "/b"])
            side, batch = case["side"], case["batch"]
            if case["direction"] == "forward":
                x = tensor(rng.random((batch, w.shape[1], side, side), dtype=np.float32))
                return lambda: torch.relu(fn.conv2d(x, w, b, padding=1)), False
            gy = tensor(rng.random((batch, w.shape[0], side, side), dtype=np.float32) - 0.5)
            shape = (batch, w.shape[1], side, side)
            return lambda: torch.nn.grad.conv2d_input(shape, w, gy * (gy > 0), padding=1), False
        if case["case"] == "pool":
            x = tensor(rng.random((case["batch"], case["channels"], case["side"], case["side"]), dtype=np.float32))
            if case["direction"] == "forward":
                return lambda: fn.max_pool2d(x, 2, 2, ceil_mode=True), False
            v = x.clone().requires_grad_()

            def run():
                y = fn.max_pool2d(v, 2, 2, ceil_mode=True)
                y.backward(torch.ones_like(y))
            return run, False
        raise ValueError(f"case {case['case']!r} is not pass, conv or pool")


def main() -> None:
    name, threads = sys.argv[1], int(sys.argv[2])
    # dfi, dfi-baseline (another checkout, on PYTHONPATH), chainer (dfi's VGG on Chainer's functions)
    contender = TorchContender(threads) if name == "torch" else DfiContender("chainer" if name == "chainer" else "winograd")
    run, split = None, False
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "setup":
                answer = {"threads": threads, **contender.setup()}
            elif request["op"] == "prepare":
                run, split = contender.prepare(request)
                run()
                answer = {"ready": True}
            else:
                clock = GemmClock() if split else None
                start = time.perf_counter()
                if clock:
                    with clock:
                        run()
                else:
                    run()
                seconds = time.perf_counter() - start
                answer = {"seconds": seconds}
                if clock:
                    gemms = sum(clock.parts.values())
                    answer["parts"] = {**clock.parts, "tile_moves": seconds - gemms}
        except Exception as error:  # reported to the parent, which stops
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()

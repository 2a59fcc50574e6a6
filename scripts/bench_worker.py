"""One contender's worker process for ``scripts/benchproc.py`` (not run by hand).

    python scripts/bench_worker.py dfi|dfi-baseline|chainer|torch THREADS

Reads JSON requests from stdin, one per line, and answers each with one JSON line:
``setup`` (versions, BLAS), ``prepare`` (build the case: networks, inputs; one untimed run),
``run`` (``warm`` untimed runs back to back, then one timed run: ``seconds``, and for dfi's convolutions ``parts``: the product
GEMMs, the transform GEMMs and the element-wise tile moves apart). The torch contender
imports neither dfi nor Chainer: it reads the weights from the ``.npz`` the parent wrote.

Cases: ``pass`` (VGG-19 forward to conv5_1 + input-gradient backward of Σ‖φ_l‖² over
conv3_1, conv4_1, conv5_1; with ``layers``, each layer group's seconds inside the pass as
``parts``: timers around dfi's kernels, PyTorch's profiler), ``conv`` (one VGG convolution + ReLU forward, or its input
gradient), ``pool`` (2×2 max pooling forward or backward), ``net`` (inference of a network
described layer by layer in the ``.npz``: the stylizer, the decoders; ``output`` returns a
sample of its output, so the parent checks that both contenders run the same network).
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


def layer_group(name: str) -> str:
    """conv3_2…conv3_4 and conv4_2…conv4_4 share their shapes: one group each (PyTorch's
    profiler tells layers apart only by their shapes)."""
    return name[:6] + "2-4" if name[:5] in ("conv3", "conv4") and name[-1] in "234" else name


def vgg_shapes(names, size: int) -> dict:
    """{(channels in, channels out, side): group} of the convolutions, {(channels, side): pool}."""
    convs, pools, side, channels = {}, {}, size, 3
    for name in vgg_order(names):
        if name.startswith("conv"):
            out = CHANNELS_OUT[name[4]]
            convs[channels, out, side] = layer_group(name)
            channels = out
        else:
            pools[channels, side] = name
            side = -(-side // 2)
    return {"conv": convs, "pool": pools}


CHANNELS_OUT = {"1": 64, "2": 128, "3": 256, "4": 512, "5": 512}


class LayerClock:
    """Seconds of each VGG layer group, forward and backward, inside dfi's pass: timers
    around the convolution and pooling kernels, the layer told by its input's shape."""

    def __init__(self, size: int, names):
        import dfi.nets.conv as conv
        import dfi.nets.pool as pool

        self.shapes, self.parts = vgg_shapes(names, size), {}
        self.conv, self.pool = conv, pool
        self.originals = (conv.conv3x3, pool.Pool2x2.forward, pool.Pool2x2Grad.forward)

    def _add(self, key, seconds):
        self.parts[key] = self.parts.get(key, 0.0) + seconds

    def __enter__(self):
        conv3x3, pool_forward, pool_backward = self.originals
        clock = self

        def timed_conv(x, layer, workspace, *, backward=False, mask=None):
            start = time.perf_counter()
            out = conv3x3(x, layer, workspace, backward=backward, mask=mask)
            out_channels, channels = layer.channels
            group = clock.shapes["conv"].get((channels, out_channels, x.shape[1]), "other")
            clock._add(f"{group} {'backward' if backward else 'forward'}", time.perf_counter() - start)
            return out

        def timed(method, direction):
            def run(node, inputs):
                start = time.perf_counter()
                out = method(node, inputs)
                x = inputs[0] if direction == "forward" else inputs[-1]
                side = x.shape[1] if direction == "forward" else node.shape[1]
                name = clock.shapes["pool"].get((x.shape[3], side), "pool?")
                clock._add(f"{name} {direction}", time.perf_counter() - start)
                return out
            return run
        self.conv.conv3x3 = timed_conv
        self.pool.Pool2x2.forward = timed(pool_forward, "forward")
        self.pool.Pool2x2Grad.forward = timed(pool_backward, "backward")
        return self

    def __exit__(self, *exc):
        self.conv.conv3x3, self.pool.Pool2x2.forward, self.pool.Pool2x2Grad.forward = self.originals


class GemmClock:
    """Adds up the wall seconds of dfi's GEMMs — batched (3-D, the Winograd products) and
    plain (2-D: the NumPy steps' tile transforms; for the image's layer, the direct
    convolution) — and of its compiled tile transforms (``dfi.nets.compiled``, where the
    checkout has it and Numba is installed). It wraps ``dfi.nets.threads.matmul``, which
    splits each GEMM over the threads (an older checkout without it: ``numpy.matmul``)."""

    COMPILED = ("input_transform", "output_transform", "output_adjoint", "input_adjoint")

    def __init__(self):
        try:
            from dfi.nets import threads
            self.module, self.name = threads, "matmul"
        except ImportError:
            self.module, self.name = np, "matmul"
        try:
            from dfi.nets import compiled
        except ImportError:
            compiled = None
        self.compiled = compiled
        self.original = getattr(self.module, self.name)
        self.originals = {name: getattr(compiled, name) for name in self.COMPILED} if compiled else {}
        self.parts = {"gemm_products": 0.0, "gemm_transforms": 0.0, "compiled_transforms": 0.0}

    def __enter__(self):
        def timed(a, b, *args, **kwargs):
            start = time.perf_counter()
            result = self.original(a, b, *args, **kwargs)
            key = "gemm_products" if np.ndim(a) == 3 else "gemm_transforms"
            self.parts[key] += time.perf_counter() - start
            return result

        def timed_loop(fn):
            def run(*args, **kwargs):
                start = time.perf_counter()
                fn(*args, **kwargs)
                self.parts["compiled_transforms"] += time.perf_counter() - start
            return run
        setattr(self.module, self.name, timed)
        for name, fn in self.originals.items():
            setattr(self.compiled, name, timed_loop(fn))
        return self

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.original)
        for name, fn in self.originals.items():
            setattr(self.compiled, name, fn)


class DfiContender:
    def __init__(self, kernel: str):
        import dfi._compat  # noqa: F401
        import chainer

        self.chainer, self.kernel = chainer, kernel
        try:  # as dfi's command line does (a checkout from before it has none)
            from dfi.core.memory import keep_freed_memory
        except ImportError:
            self.keeps_freed = False
        else:
            self.keeps_freed = keep_freed_memory()

    def setup(self) -> dict:
        import threadpoolctl

        blas = threadpoolctl.threadpool_info()
        blas = [f"{b['internal_api']} {b['version']} {b.get('architecture', '')}".strip() for b in blas]
        return {"numpy": np.__version__, "blas": blas, "chainer": self.chainer.__version__,
                "keeps_freed_memory": self.keeps_freed}

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
            if case.get("layers"):
                return run, lambda: LayerClock(case["size"], weights["names"])
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
        if case["case"] == "net":
            net, inputs = _dfi_net(case)
            return (lambda: net(*inputs)), False
        raise ValueError(f"case {case['case']!r} is not pass, conv, pool or net")

    def output(self, case: dict):
        net, inputs = _dfi_net(case)
        return np.asarray(net(*inputs))


def _dfi_net(case: dict):
    """dfi's inference network of ``case`` (built as ``bench_core.py`` wrote its weights:
    the same seed) on its kernels, and its inputs."""
    from dfi.nets.decoder import Decoder, DecoderSpec, FastDecoder
    from dfi.nets.stylizer import TransformNet
    from dfi.nets.stylizer_kernels import FastTransform

    spec = json.loads(str(np.load(case["weights"])["spec"]))
    inputs = net_inputs(spec, case["batch"], case["size"])
    if spec["kind"] == "stylizer":
        return FastTransform(TransformNet(1, variant=spec["variant"], seed=0)), (inputs["image"], {0: 1.0})
    decoder = FastDecoder(Decoder(DecoderSpec.from_record(spec["record"]), seed=0))
    return (lambda feats: decoder(feats, (case["size"], case["size"]))), (inputs,)


def net_inputs(spec: dict, batch: int, size: int) -> dict:
    """The inputs of an inference case: an image (stylizer) or VGG features (decoders; the
    sides VGG's ceil pooling gives), NCHW, seeded."""
    rng = np.random.default_rng(1)
    if spec["kind"] == "stylizer":
        return {"image": rng.uniform(0, 255, (batch, 3, size, size)).astype(np.float32)}
    feats = {}
    for layer, channels in spec["record"]["inputs"]:
        side = size
        for _ in range(int(layer[4]) - 1):
            side = -(-side // 2)
        feats[layer] = rng.uniform(0, 2, (batch, channels, side, side)).astype(np.float32)
    return feats


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
            if case.get("layers"):
                return run, lambda: TorchLayerClock(torch, vgg_shapes(weights["names"], case["size"]))
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
        if case["case"] == "net":
            run = self._net(weights, case)
            return (lambda: run()), False
        raise ValueError(f"case {case['case']!r} is not pass, conv, pool or net")

    def output(self, case: dict):
        return self._net(np.load(case["weights"]), case)().numpy()

    def _net(self, weights, case: dict):
        """The same network as dfi's, from the ``.npz`` (weights and architecture), in
        PyTorch's own layers: reflection padding, conv2d, instance_norm, nearest upsampling."""
        torch = self.torch
        fn = torch.nn.functional
        spec = json.loads(str(weights["spec"]))
        tensors = {k: torch.from_numpy(np.ascontiguousarray(weights[k])) for k in weights.files if k != "spec"}
        inputs = {k: torch.from_numpy(v) for k, v in net_inputs(spec, case["batch"], case["size"]).items()}

        def conv(h, name, kernel, stride=1):
            pad = kernel // 2
            return fn.conv2d(fn.pad(h, (pad,) * 4, mode="reflect"), tensors[name + "/W"], tensors.get(name + "/b"),
                             stride=stride)

        def stylizer():
            h, skip = inputs["image"] * spec["input_scale"], None
            for name, kernel, stride, upsample, normalise, relu in spec["layers"]:
                if name.startswith("r") and name.endswith("1"):
                    skip = h
                if upsample:
                    h = fn.interpolate(h, scale_factor=2, mode="nearest")
                h = conv(h, name, kernel, stride)
                if normalise:
                    h = fn.instance_norm(h, weight=tensors[name + "/gamma"], bias=tensors[name + "/beta"], eps=1e-5)
                if relu:
                    h = torch.relu(h)
                if name.startswith("r") and name.endswith("2"):
                    h = h + skip
            return 255 * torch.sigmoid(h) if spec["output"] == "sigmoid" else h.clamp(0, 255)

        def decoder():
            record, index = spec["record"], 0
            scales = dict(zip([n for n, _ in record["inputs"]], record["scales"] or [1.0] * len(record["inputs"])))
            first = record["inputs"][0][0]
            h = inputs[first] / scales[first]
            for op in record["ops"]:
                if op[0] == "up":
                    h = fn.interpolate(h, scale_factor=2, mode="nearest")
                elif op[0] == "join":
                    joined = inputs[op[1]] / scales[op[1]]
                    h = torch.cat([h[:, :, :joined.shape[2], :joined.shape[3]], joined], dim=1)
                else:
                    h = conv(h, f"conv{index}", 3)
                    h = torch.relu(h) if op[2] else h
                    index += 1
            h = h[:, :, :case["size"], :case["size"]]
            return 255 * (torch.sigmoid(h) if record["output"] == "sigmoid" else h.clamp(0, 1))

        body = stylizer if spec["kind"] == "stylizer" else decoder

        def run():
            with torch.inference_mode():
                return body()
        return run


class TorchLayerClock:
    """Seconds of each VGG layer group in PyTorch's pass, from its profiler (oneDNN's
    convolution, its backward, max pooling and its backward), told by the input shapes."""

    EVENTS = {"aten::mkldnn_convolution": "forward", "aten::convolution_backward": "backward",
              "aten::max_pool2d_with_indices": "forward", "aten::max_pool2d_with_indices_backward": "backward"}

    def __init__(self, torch, shapes):
        self.torch, self.shapes, self.parts = torch, shapes, {}

    def __enter__(self):
        profiler = self.torch.profiler
        self.profile = profiler.profile(activities=[profiler.ProfilerActivity.CPU], record_shapes=True)
        self.profile.__enter__()
        return self

    def __exit__(self, *exc):
        self.profile.__exit__(*exc)
        for event in self.profile.events():
            direction = self.EVENTS.get(event.name)
            if direction is None or not event.input_shapes:
                continue
            shapes = event.input_shapes
            if "pool" in event.name:
                x = shapes[0] if direction == "forward" else shapes[1]
                key = f"{self.shapes['pool'].get((x[1], x[2]), 'pool?')} {direction}"
            else:
                weight = shapes[1] if direction == "forward" else shapes[2]
                x = shapes[0] if direction == "forward" else shapes[1]
                key = f"{self.shapes['conv'].get((weight[1], weight[0], x[2]), 'other')} {direction}"
            self.parts[key] = self.parts.get(key, 0.0) + event.cpu_time_total / 1e6
        return False


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
            elif request["op"] == "output":  # a summary of the network's output, to check both run the same one
                out = contender.output(request)
                answer = {"shape": list(out.shape), "sample": out.reshape(-1)[::997][:64].astype(float).tolist()}
            elif request["op"] == "prepare":
                run, split = contender.prepare(request)
                run()
                answer = {"ready": True}
            else:
                for _ in range(request.get("warm", 0)):  # back-to-back first, as an optimiser's passes run
                    run()
                clock = (split() if callable(split) else GemmClock()) if split else None
                start = time.perf_counter()
                if clock:
                    with clock:
                        run()
                else:
                    run()
                seconds = time.perf_counter() - start
                answer = {"seconds": seconds}
                if isinstance(clock, GemmClock):
                    gemms = sum(clock.parts.values())
                    answer["parts"] = {**clock.parts, "tile_moves": seconds - gemms}
                elif clock:
                    answer["parts"] = clock.parts
        except Exception as error:  # reported to the parent, which stops
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()

"""Kernel-launch budgets of the GPU paths, counted on a CPU (:mod:`dfi.core.launches`).

On a GPU each CuPy operation is a launch of a few microseconds, so a loop of small copies
costs more than the arithmetic. The stand-in device's arrays count what CuPy would launch
and its array module is not NumPy, so dfi's code takes its GPU paths; each budget fails on
the code before the launch-count work (figures in BENCHMARKS.md, ``count_launches.py``).
"""
import numpy as np
import pytest

import dfi._compat  # noqa: F401
import chainer
import chainer.functions as F

from dfi.core.launches import counting


def test_the_counter_counts_what_cupy_launches():
    with counting() as device:
        xp, counter = device.xp, device.counter
        a = device.send(np.ones((4, 6, 5), np.float32))
        assert counter.uploads == 1 and counter.total == 0
        view = a[1:, ::2].transpose(0, 2, 1).reshape(3, -1)  # views: nothing
        assert counter.total == 0 and isinstance(view, device.array_type)
        b = a + 1  # one elementwise kernel
        b[0] = 0  # one copy kernel
        a.sum(axis=1)  # one reduction
        xp.zeros((3, 3), xp.float32)
        assert counter.total == 4
        counter.reset()
        xp.einsum("ijk,ijk->ij", a, b)  # CuPy: two transposed copies and a batched GEMM
        assert counter.launches == {"einsum": 3}
        counter.reset()
        xp.matmul(a, a.transpose(0, 2, 1))  # a batched transposed operand is copied first
        assert counter.launches == {"matmul": 1, "matmul copy": 1}
        counter.reset()
        xp.asarray(np.zeros(3))
        assert counter.uploads == 1


def _vgg_pass(net, x):
    xv = chainer.Variable(x)
    feats = net.pick(xv, ["conv3_1", "conv4_1", "conv5_1"])
    sum(F.sum(f * f) for f in feats.values()).backward()
    return {n: np.asarray(f.array) for n, f in feats.items()}, np.asarray(xv.grad)


def test_a_vgg_pass_launches_a_few_hundred_kernels_and_computes_what_numpy_does(tiny_net):
    """Forward + backward to conv5_1 at 64², batch 2: 1,817 launches and 8 uploads per pass
    with the tile gathers and scatters of one copy per tile element (α² per layer) and the
    Winograd taps sent at each call; now a handful per layer."""
    from dfi.nets.vgg import VGG19

    rng = np.random.default_rng(0)
    x = rng.uniform(-100, 100, (2, 3, 64, 64)).astype(np.float32)
    cpu_feats, cpu_grad = _vgg_pass(VGG19(tiny_net.params, pooling=tiny_net.pooling), x)
    with counting() as device:
        net = VGG19(tiny_net.params, pooling=tiny_net.pooling).to_device(device)
        x_d = device.send(x)
        _vgg_pass(net, x_d)  # transformed filters and transform matrices made once
        device.counter.reset()
        feats, grad = _vgg_pass(net, x_d)
        launches, uploads = device.counter.total, device.counter.uploads
    assert launches <= 500, device.counter.launches
    assert uploads == 0
    for name, value in cpu_feats.items():  # the GPU path (Uᵀ kept as well) gives the same numbers
        np.testing.assert_allclose(feats[name], value, rtol=1e-4, atol=1e-4 * np.abs(value).max())
    np.testing.assert_allclose(grad, cpu_grad, rtol=1e-4, atol=1e-4 * np.abs(cpu_grad).max())


def test_a_stylisation_launches_a_few_hundred_kernels_and_computes_what_numpy_does(monkeypatch):
    """The feed-forward network at width 0.25 on two 96² images: 4,054 launches with a band
    loop per image, k² copies per band and reflection one row at a time; now under 500,
    whatever the size and the batch (whole images at once where the buffer allows)."""
    import dfi.nets.stylizer_kernels as kernels
    from dfi.nets.stylizer import TransformNet

    net = TransformNet(2, width=0.25, seed=1)
    for table in net.styles:  # styles that differ, so the mix matters
        for param in table.params():
            param.array[...] += np.random.default_rng(2).normal(0, 0.2, param.shape).astype(np.float32)
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 96, 96)).astype(np.float32)
    expected = kernels.FastTransform(net)(x, {0: 0.3, 1: 0.7})
    with counting() as device:
        net.to_device(device)
        transform = kernels.FastTransform(net)
        x_d = device.send(x)
        transform(x_d, {0: 0.3, 1: 0.7})
        device.counter.reset()
        got = np.asarray(transform(x_d, {0: 0.3, 1: 0.7}))
        launches = device.counter.total
        assert launches <= 500, device.counter.launches
        assert "einsum" not in device.counter.launches
        # a device band that holds one image but not two: chunks of one image each, same result
        monkeypatch.setattr(kernels, "DEVICE_BAND_FLOATS", 2_500_000)
        one_by_one = np.asarray(transform(x_d, {0: 0.3, 1: 0.7}))
    # (within 0.005 grey levels: on a device the normalisation centres the whole maps at once,
    # on NumPy it sums in pieces; float32 both)
    np.testing.assert_allclose(got, expected, atol=5e-3)
    np.testing.assert_allclose(one_by_one, expected, atol=5e-3)


@pytest.mark.parametrize("kinds", [dict(), dict(padding="zero", upsample="bilinear", norm="instance")])
def test_a_decoding_launches_a_few_hundred_kernels_and_computes_what_numpy_does(tiny_net, kinds):
    """The feature decoder's pass (fast edits, the page's slider, WCT) on the stand-in device,
    the default layers and every other kind at once, at a size whose maps are rounded up:
    the GPU paths of the joins, the padding, the upsampling and the normalisation give
    NumPy's numbers, with no upload and under 400 launches (182 and 299 when written)."""
    from dfi.nets.decoder import Decoder, FastDecoder, dfi_spec

    channels = {name: weight.shape[0] for name, (weight, _) in tiny_net.params.items()}
    scales = {"conv3_1": 2.0, "conv4_1": 5.0, "conv5_1": 40.0}  # as a trained decoder's record holds
    spec = dfi_spec(channels, width=0.25, scales=scales, **kinds)
    net = Decoder(spec, seed=1)
    rng = np.random.default_rng(3)
    for name, param in net.namedparams():  # γ, β away from 1, 0 so that they count
        if "gamma" in name or "beta" in name:
            param.array[...] = rng.normal(size=param.shape) * 0.3 + ("gamma" in name)
    sides = {name: -(-50 // 2 ** (int(name[4]) - 1)) for name, _ in spec.inputs}  # VGG's pooling rounds up
    feats = {name: np.maximum(rng.normal(size=(2, c, sides[name], sides[name])), 0).astype(np.float32)
             for name, c in spec.inputs}
    expected = FastDecoder(net)(feats, (50, 50))
    with counting() as device:
        net.to_device(device)
        decode = FastDecoder(net)
        on_device = {name: device.send(value) for name, value in feats.items()}
        decode(on_device, (50, 50))  # transformed filters made once
        device.counter.reset()
        got = decode(on_device, (50, 50))
        assert isinstance(got, device.array_type) and got.shape == (2, 3, 50, 50)
        assert device.counter.uploads == 0 and device.counter.total <= 400, device.counter.launches
    np.testing.assert_allclose(np.asarray(got), expected, atol=2e-3)


def test_an_lbfgs_iteration_uses_no_einsum_on_a_gpu():
    """CuPy's einsum for a row dot product is two copies and a batched GEMM of 1×1 outputs;
    the two-loop recursion at history 20 made 42 of them per iteration."""
    from dfi.core.optimize import lbfgs

    with counting() as device:
        rng = np.random.default_rng(0)
        curvature = device.send(rng.uniform(0.5, 2.0, (3, 50)).astype(np.float32))

        def objective(x, rows):
            g = curvature[rows] * x
            return 0.5 * (g * x).sum(axis=1), g

        steps = lbfgs(objective, device.send(rng.normal(size=(3, 50)).astype(np.float32)), max_iter=25,
                      history=20, ftol=0.0)
        for _ in range(22):
            next(steps)
        device.counter.reset()
        next(steps)
        assert "einsum" not in device.counter.launches and device.counter.total <= 340, device.counter.launches


@pytest.mark.parametrize("height, width", [(12, 12), (13, 10), (7, 9)])
def test_tile_moves_cover_maps_of_any_size(height, width):
    """Whole and partial tiles: the strided block moves equal the per-pixel definition."""
    from dfi.nets.conv import winograd_conv, winograd_conv_adjoint
    from dfi.nets.winograd import Conv3x3, Filters

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, height, width, 10)).astype(np.float32)
    layer = Conv3x3(rng.normal(size=(12, 10, 3, 3)).astype(np.float32), rng.normal(size=12).astype(np.float32))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    direct = np.zeros((2, height, width, 12), np.float32)
    for i in range(3):
        for j in range(3):
            direct += padded[:, i:i + height, j:j + width] @ layer.weight[:, :, i, j].T
    from dfi.nets.winograd import Workspace

    for m in (2, 4, 6):
        u = Filters(layer, m, layer.transform(m))
        got = winograd_conv(x, u, Workspace(), bias=layer.bias)
        np.testing.assert_allclose(got, np.maximum(direct + layer.bias, 0), atol=2e-3)
        gy = rng.normal(size=direct.shape).astype(np.float32)
        gx = winograd_conv_adjoint(gy, u, Workspace())[:, 1:height + 1, 1:width + 1]  # (the frame's inside)
        # <conv(x), gy> = <x, conv^T(gy)> for the linear part
        plain = winograd_conv(x, u, Workspace())
        assert np.isclose((plain * gy).sum(), (x * gx).sum(), rtol=1e-3)


@pytest.mark.gpu
def test_on_a_gpu_the_kernels_compute_what_numpy_does(tiny_net):
    """The launch-lean paths on CuPy itself (the stand-in runs them on NumPy): VGG-19's pass,
    the stylizer and a decoder of the non-default kinds."""
    from dfi.core.backend import parse_device, using_device
    from dfi.nets.decoder import Decoder, FastDecoder, dfi_spec
    from dfi.nets.stylizer import TransformNet
    from dfi.nets.stylizer_kernels import FastTransform
    from dfi.nets.vgg import VGG19

    gpu = parse_device("gpu")
    x = np.random.default_rng(0).uniform(-100, 100, (2, 3, 64, 64)).astype(np.float32)
    cpu_feats, cpu_grad = _vgg_pass(VGG19(tiny_net.params, pooling=tiny_net.pooling), x)
    with using_device(gpu):
        net = VGG19(tiny_net.params, pooling=tiny_net.pooling).to_device(gpu)
        xv = chainer.Variable(gpu.send(x))
        feats = net.pick(xv, ["conv3_1", "conv4_1", "conv5_1"])
        sum(F.sum(f * f) for f in feats.values()).backward()
        for name, value in cpu_feats.items():
            np.testing.assert_allclose(chainer.backend.CpuDevice().send(feats[name].array), value, rtol=1e-3,
                                       atol=1e-3 * np.abs(value).max())
        np.testing.assert_allclose(chainer.backend.CpuDevice().send(xv.grad), cpu_grad, rtol=1e-3,
                                   atol=1e-3 * np.abs(cpu_grad).max())
        stylizer = TransformNet(1, width=0.25)
        images = np.random.default_rng(1).uniform(0, 255, (2, 3, 96, 96)).astype(np.float32)
        expected = FastTransform(stylizer)(images, {0: 1.0})
        stylizer.to_device(gpu)
        got = chainer.backend.CpuDevice().send(FastTransform(stylizer)(gpu.send(images), {0: 1.0}))
    np.testing.assert_allclose(got, expected, atol=2e-3)
    spec = dfi_spec({name: weight.shape[0] for name, (weight, _) in tiny_net.params.items()}, width=0.25,
                    padding="zero", upsample="bilinear", norm="instance")
    decoder = Decoder(spec, seed=1)
    feats = {name: np.maximum(np.random.default_rng(2).normal(size=(2, c, 64 >> int(name[4]) - 1,
                                                                    64 >> int(name[4]) - 1)), 0).astype(np.float32)
             for name, c in spec.inputs}
    expected = FastDecoder(decoder)(feats)
    with using_device(gpu):
        decoder.to_device(gpu)
        got = chainer.backend.CpuDevice().send(FastDecoder(decoder)({k: gpu.send(v) for k, v in feats.items()}))
    np.testing.assert_allclose(got, expected, atol=2e-3)

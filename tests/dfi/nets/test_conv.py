"""dfi's convolution and pooling kernels equal Chainer's functions and numerical gradients."""
import numpy as np
import pytest

import dfi._compat  # noqa: F401
import chainer
import chainer.functions as F
from chainer import gradient_check

from dfi.nets import conv, winograd
from dfi.nets.conv import conv3x3_relu
from dfi.nets.winograd import Conv3x3, Workspace, winograd_matrices
from dfi.nets.pool import pool2x2


def _relative(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.mark.parametrize("m", [2, 4, 6])
def test_winograd_matrices_compute_the_correlation_exactly(m):
    a_t, g, b_t = winograd_matrices(m)
    rng = np.random.default_rng(m)
    d, kernel = rng.normal(size=m + 2), rng.normal(size=3)
    expected = [d[i:i + 3] @ kernel for i in range(m)]
    np.testing.assert_allclose(a_t @ ((g @ kernel) * (b_t @ d)), expected, rtol=1e-12, atol=1e-12)
    assert np.array_equal(b_t * 4, np.round(b_t * 4))  # quarters at most: exact in float32


@pytest.fixture(params=[2, 4, 6])
def tile(request, monkeypatch):
    """Force one Winograd tile size for every layer."""
    monkeypatch.setattr(conv, "tile_size", lambda *shape: request.param)
    return request.param


def _chainer_layer(x_nchw, weight, bias, gy_nchw):
    x = chainer.Variable(x_nchw.copy())
    y = F.relu(F.convolution_2d(x, weight, bias, pad=1))
    y.grad = gy_nchw
    y.backward()
    return y.array, x.grad


def _dfi_layer(x_nchw, weight, bias, gy_nchw, workspace):
    x = chainer.Variable(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)))
    y = conv3x3_relu(x, Conv3x3(weight, bias), workspace)
    y.grad = np.ascontiguousarray(gy_nchw.transpose(0, 2, 3, 1))
    y.backward()
    return y.array.transpose(0, 3, 1, 2), x.grad.transpose(0, 3, 1, 2)


@pytest.mark.parametrize("channels, out_channels, batch, height, width", [
    (3, 64, 1, 7, 9), (64, 3, 3, 7, 9), (64, 64, 1, 7, 9), (16, 24, 3, 12, 16), (24, 16, 2, 13, 5)])
def test_convolution_equals_chainer_forward_and_backward(tile, channels, out_channels, batch, height, width):
    rng = np.random.default_rng(channels * 100 + height)
    x = rng.normal(size=(batch, channels, height, width)).astype(np.float32)
    weight = (rng.normal(size=(out_channels, channels, 3, 3)) / np.sqrt(9 * channels)).astype(np.float32)
    bias = rng.normal(size=out_channels).astype(np.float32) * 0.1
    gy = rng.normal(size=(batch, out_channels, height, width)).astype(np.float32)
    workspace = Workspace()
    y_ref, gx_ref = _chainer_layer(x, weight, bias, gy)
    y, gx = _dfi_layer(x, weight, bias, gy, workspace)
    assert _relative(y, y_ref) < 2e-5 and _relative(gx, gx_ref) < 2e-5
    # the workspace is reused by a call of another shape and still gives the same result
    _dfi_layer(x[:, :, :5, :6], weight, bias, gy[:, :, :5, :6], workspace)
    y_again, gx_again = _dfi_layer(x, weight, bias, gy, workspace)
    assert _relative(y_again, y_ref) < 2e-5 and _relative(gx_again, gx_ref) < 2e-5


def test_convolution_gradient_matches_numerical_differences():
    rng = np.random.default_rng(7)
    layer = Conv3x3((rng.normal(size=(12, 10, 3, 3)) * 0.3).astype(np.float32),
                    rng.normal(size=12).astype(np.float32))
    x = rng.normal(size=(2, 5, 7, 10)).astype(np.float32)
    gy = rng.normal(size=(2, 5, 7, 12)).astype(np.float32)
    gradient_check.check_backward(lambda v: conv3x3_relu(v, layer, Workspace()), x, gy,
                                  eps=1e-2, atol=5e-2, rtol=5e-2, dtype=np.float64)


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("batch, channels, height, width", [(1, 3, 7, 9), (3, 64, 10, 10), (2, 8, 13, 13)])
def test_pooling_equals_chainer(kind, batch, channels, height, width):
    rng = np.random.default_rng(height)
    x0 = rng.normal(size=(batch, channels, height, width)).astype(np.float32)
    x = chainer.Variable(x0.copy())
    y = (F.max_pooling_2d(x, 2, stride=2, cover_all=True) if kind == "max"
         else F.average_pooling_2d(x, 2, stride=2))
    gy = rng.normal(size=y.shape).astype(np.float32)
    y.grad = gy
    y.backward()
    mine = chainer.Variable(np.ascontiguousarray(x0.transpose(0, 2, 3, 1)))
    pooled = pool2x2(mine, kind)
    pooled.grad = np.ascontiguousarray(gy.transpose(0, 2, 3, 1))
    pooled.backward()
    np.testing.assert_array_equal(pooled.array.transpose(0, 3, 1, 2), y.array)
    np.testing.assert_allclose(mine.grad.transpose(0, 3, 1, 2), x.grad, atol=1e-7)


def test_max_pooling_gives_a_tie_to_the_first_input_only():
    x = chainer.Variable(np.zeros((1, 2, 2, 1), np.float32))  # four equal inputs
    y = pool2x2(x)
    y.grad = np.ones((1, 1, 1, 1), np.float32)
    y.backward()
    assert x.grad.ravel().tolist() == [1.0, 0.0, 0.0, 0.0]


def test_vgg_on_the_kernels_equals_vgg_on_chainer(tiny_net):
    from dfi.nets.vgg import VGG19

    reference = VGG19(tiny_net.params, kernel="chainer")
    layers = ["conv3_1", "conv4_1", "conv5_1"]
    x0 = np.random.default_rng(0).uniform(-100, 100, (2, 3, 37, 29)).astype(np.float32)
    results = []
    for net in (tiny_net, reference):
        x = chainer.Variable(x0.copy())
        feats = net.pick(x, layers)
        loss = F.sum(sum(F.sum(v * v) for v in feats.values()))
        loss.backward()
        results.append((float(loss.array), {k: v.array for k, v in feats.items()}, x.grad))
    (loss, feats, grad), (ref_loss, ref_feats, ref_grad) = results
    assert abs(loss / ref_loss - 1) < 1e-4
    for name in layers:
        assert feats[name].shape == ref_feats[name].shape and _relative(feats[name], ref_feats[name]) < 1e-4
    assert np.linalg.norm(grad - ref_grad) / np.linalg.norm(ref_grad) < 1e-2  # (ReLU/argmax flips)


def test_the_dfi_loss_equals_the_old_path(synth_lfw, tiny_net):
    """One edit's feature loss and gradient at the start: the kernels against Chainer's."""
    from data_tools.index import load_index
    from dfi.core.image import preprocess
    from dfi.core.losses import feature_loss
    from dfi.edit.attributes import target_features
    from dfi.edit.pipeline import EditConfig, load_face
    from dfi.nets.features import extract
    from dfi.nets.vgg import VGG19

    index = load_index(synth_lfw[1])
    config = EditConfig(size=48)
    face = load_face(index.image_path(0), config, row=0)
    other = load_face(index.image_path(1), config, row=1)
    losses = []
    for net in (tiny_net, VGG19(tiny_net.params, kernel="chainer")):
        source = extract(net, face.working[None], config.layers)
        vector = {k: v - source[k] for k, v in extract(net, other.working[None], config.layers).items()}
        targets = target_features(source, vector, [0.3])
        x = chainer.Variable(preprocess(np.clip(face.working[None] + 20, 0, 255), net.convention))
        losses.append(float(feature_loss(net.pick(x, config.layers), targets).array[0]))
    assert abs(losses[0] / losses[1] - 1) < 1e-4


@pytest.mark.gpu
def test_kernels_agree_on_cpu_and_gpu(tiny_net):
    import copy

    from dfi.core.backend import parse_device, to_cpu

    gpu = copy.copy(tiny_net).to_device(parse_device("gpu"))
    x0 = np.random.default_rng(1).uniform(-100, 100, (3, 3, 41, 35)).astype(np.float32)
    grads = []
    for net in (tiny_net, gpu):
        x = chainer.Variable(net.device.send(x0))
        F.sum(sum(F.sum(v * v) for v in net.pick(x, ["conv2_2", "conv4_1"]).values())).backward()
        grads.append(to_cpu(x.grad))
    assert np.linalg.norm(grads[0] - grads[1]) / np.linalg.norm(grads[0]) < 1e-3


def test_chainer_kernel_refuses_a_column_buffer_col2im_gpu_cannot_index(tiny_net):
    import types

    from dfi.core.errors import SettingError
    from dfi.nets.vgg import VGG19

    reference = VGG19(tiny_net.params, kernel="chainer")
    reference.device = types.SimpleNamespace(xp=types.SimpleNamespace())  # a GPU, as far as the check sees
    with pytest.raises(SettingError, match=r"conv1_2 would need a column buffer of .* 2\^31"):
        reference.pick(types.SimpleNamespace(shape=(1, 3, 6000, 6000)), ["conv1_2"])


def test_a_large_batch_is_convolved_in_groups_with_the_same_result(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 16, 16, 18)).astype(np.float32)
    weight = (rng.normal(size=(12, 16, 3, 3)) * 0.2).astype(np.float32)
    bias = np.zeros(12, np.float32)
    gy = rng.normal(size=(3, 12, 16, 18)).astype(np.float32)
    whole = _dfi_layer(x, weight, bias, gy, Workspace())
    monkeypatch.setattr(winograd, "MAX_WORKSPACE", max(winograd.workspace_floats(16, 12, 1, 16, 18)))  # one image a group
    assert winograd.batch_group(3, 16, 12, 16, 18) == 1
    grouped = _dfi_layer(x, weight, bias, gy, Workspace())
    for a, b in zip(whole, grouped):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(a).max())


@pytest.mark.parametrize("batch, shape", [(1, (37, 29)), (3, (64, 48))])
def test_the_memory_model_follows_what_the_kernels_allocate(tiny_net, batch, shape):
    import copy

    from dfi.nets.winograd import kernel_memory

    net = copy.copy(tiny_net).to_device("@numpy")  # a fresh workspace
    layers = ["conv3_1", "conv5_1"]
    x = chainer.Variable(np.random.default_rng(0).uniform(0, 255, (batch, 3, *shape)).astype(np.float32))
    F.sum(sum(F.sum(v * v) for v in net.pick(x, layers).values())).backward()
    convs = [m[1:] for m in net.layer_shapes(shape, layers) if m[0].startswith("conv")]
    model = kernel_memory(convs, batch)
    assert [b.size for b in net.workspace.buffers] == [model["region0"], model["region1"]]
    assert net.workspace.filter_bytes() == 4 * model["kept_filters"] > 0


def test_every_layers_filters_are_kept_and_a_batch_keeps_larger_tiles():
    """At 200² one image keeps every VGG-19 layer's transformed filters (the budget's floor;
    F(2) from conv4_1 on, where one image's F(4) tiles are too few to pay), and a sweep's
    six images keep F(4)'s for every layer (half of Chainer's column buffer for the batch)."""
    from dfi.nets.vgg import vgg19_shapes

    sides = {"1": 200, "2": 100, "3": 50, "4": 25, "5": 13}
    convs = [(shape[1], shape[0], sides[name[4]], sides[name[4]])
             for name, shape in vgg19_shapes().items() if name <= "conv5_1"]
    one, six = winograd.kernel_memory(convs, 1), winograd.kernel_memory(convs, 6)
    assert one["made_filters"] == six["made_filters"] == 0  # nothing made during a call
    assert 4 * one["kept_filters"] <= winograd.MIN_FILTER_BUDGET < 4 * six["kept_filters"]
    assert [winograd.tile_size(1, side, side) for side in (200, 100, 50, 25, 13)] == [6, 4, 4, 2, 2]
    assert [winograd.tile_size(6, side, side) for side in (200, 100, 50, 25, 13)] == [6, 6, 4, 4, 4]


@pytest.mark.parametrize("window", [[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 1, 1], [2, 3, 3, 1]])
def test_max_pooling_gives_a_tie_to_the_first_of_the_equal_inputs(window):
    x = chainer.Variable(np.array(window, np.float32).reshape(1, 2, 2, 1))  # inputs a b / c d
    y = pool2x2(x)
    y.grad = np.full((1, 1, 1, 1), 3.0, np.float32)
    y.backward()
    expected = [0.0] * 4
    expected[int(np.argmax(window))] = 3.0
    assert y.array.item() == max(window) and x.grad.ravel().tolist() == expected



@pytest.mark.parametrize("m", [2, 4, 6])
def test_the_compiled_tile_transforms_compute_what_the_gemm_steps_do(m, monkeypatch):
    """dfi.nets.compiled (one pass per transform, on both threads) against the gathers, GEMMs
    and scatters CuPy runs: forward with and without bias, valid mode, the gated adjoint,
    partial last tiles, two images (the adjoint's overlapping tiles summed by alternate
    rounds of tile rows into a frame of NaN, each row zeroed once before it is added to)."""
    from dfi.nets import threads

    monkeypatch.setattr(threads, "thread_count", lambda: 2)
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 1)
    rng = np.random.default_rng(m)
    x = rng.normal(size=(2, 13, 11, 20)).astype(np.float32)
    layer = Conv3x3(rng.normal(size=(17, 20, 3, 3)).astype(np.float32), rng.normal(size=17).astype(np.float32))
    gy = rng.normal(size=(2, 13, 11, 17)).astype(np.float32)
    gate = np.maximum(rng.normal(size=gy.shape), 0).astype(np.float32)
    u = winograd.Filters(layer, m, layer.transform(m))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))

    def run():
        with threads.kernel_section(np):
            return (conv.winograd_conv(x, u, Workspace(), bias=layer.bias), conv.winograd_conv(x, u, Workspace()),
                    conv.winograd_conv(padded, u, Workspace(), valid=True),
                    conv.winograd_conv_adjoint(gy, u, Workspace(), mask=gate, frame=np.full(  # (overwritten)
                        conv.adjoint_frame(np, m, 2, 13, 11, 20).shape, np.nan, np.float32)),
                    conv.winograd_conv_adjoint(gy, u, Workspace())[:, 1:14, 1:12])
    compiled = run()
    monkeypatch.setattr(threads, "COMPILED", False)
    reference = run()
    assert threads.compiled(np) is None and not (compiled[0] == reference[0]).all()  # (two paths ran)
    for got, want in zip(compiled, reference):
        assert got.shape == want.shape and _relative(got, want) < 1e-5
    np.testing.assert_allclose(compiled[0], np.maximum(compiled[1] + layer.bias, 0), rtol=1e-5, atol=2e-4)


def test_compiled_max_pooling_equals_the_numpy_steps_with_ties_nans_and_odd_sizes(monkeypatch):
    from dfi.nets import threads

    monkeypatch.setattr(threads, "thread_count", lambda: 2)
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 1)
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=(2, 9, 7, 5)).astype(np.float32)  # many ties in each window
    x[0, 2, 3, 1] = np.nan
    gy = rng.normal(size=(2, 5, 4, 5)).astype(np.float32)

    def run():
        v = chainer.Variable(x)
        y = pool2x2(v)
        y.grad = gy
        y.backward()
        return y.array, v.grad

    compiled = run()
    monkeypatch.setattr(threads, "COMPILED", False)
    reference = run()
    for got, want in zip(compiled, reference):
        np.testing.assert_array_equal(got, want)
    assert np.isnan(compiled[0][0, 1, 1, 1]) and compiled[1][0, 2, 3, 1] == 0

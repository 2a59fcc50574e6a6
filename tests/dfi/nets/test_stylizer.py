"""The feed-forward transformation network: reflection padding's gradient, the fast inference
path against the Chainer graph, style mixes, sizes."""
import numpy as np
import pytest

import dfi._compat  # noqa: F401
import chainer
from chainer import gradient_check

from dfi.core.errors import SettingError
from dfi.nets.stylizer import LAYERS, TransformNet, reflection_pad
from dfi.nets.stylizer_kernels import run


def _net(n_styles=2, width=0.25, seed=0):
    net = TransformNet(n_styles, width=width, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for table in net.styles:  # styles that differ (a fresh table is γ = 1, β = 0 for all)
        for param in table.params():
            param.array[...] += rng.normal(0, 0.3, param.shape).astype(np.float32)
    return net


def _images(batch=2, height=20, width=28, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, 3, height, width)).astype(np.float32)


def test_reflection_padding_matches_numpy_and_its_gradient_is_exact():
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 7)).astype(np.float32)
    padded = reflection_pad(chainer.Variable(x), 2).array
    np.testing.assert_array_equal(padded, np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect"))
    gy = np.random.default_rng(1).normal(size=padded.shape).astype(np.float32)
    ggx = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
    gradient_check.check_backward(lambda v: reflection_pad(v, 2), x.astype(np.float64), gy.astype(np.float64),
                                  atol=1e-6, rtol=1e-6)
    gradient_check.check_double_backward(lambda v: reflection_pad(v, 2), x.astype(np.float64),
                                         gy.astype(np.float64), ggx.astype(np.float64), atol=1e-6, rtol=1e-6)


def test_the_published_layer_table():
    names = [layer[0] for layer in LAYERS]
    assert names[:3] == ["c1", "d1", "d2"] and names[-3:] == ["u1", "u2", "c2"] and len(names) == 16
    net = TransformNet(1)
    assert [getattr(net, n).W.shape for n in ("c1", "d1", "d2", "r11", "u1", "u2", "c2")] == [
        (32, 3, 9, 9), (64, 32, 3, 3), (128, 64, 3, 3), (128, 128, 3, 3), (64, 128, 3, 3), (32, 64, 3, 3),
        (3, 32, 9, 9)]
    assert net.styles[0].c1_gamma.shape == (1, 32) and not hasattr(net.styles[0], "c2_gamma")


@pytest.mark.parametrize("shape", [(1, 20, 28), (3, 16, 16), (2, 36, 8)])
def test_fast_inference_equals_the_chainer_graph(shape):
    net = _net()
    x = _images(*shape)
    mix = {0: 0.7, 1: 0.6}
    with chainer.no_backprop_mode():
        expected = net(x, mix).array
    got = run(net, x, mix)
    assert got.shape == x.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert 0 <= got.min() and got.max() <= 255


def test_a_one_hot_mix_is_the_pure_style_and_styles_differ():
    net = _net(3)
    x = _images()
    pure = run(net, x, {1: 1.0})
    np.testing.assert_array_equal(run(net, x, {1: 1.0, 0: 0.0, 2: 0.0}), pure)
    with chainer.no_backprop_mode():
        np.testing.assert_allclose(net(x, {1: 1.0, 2: 0.0}).array, net(x, {1: 1.0}).array, atol=1e-5)
    assert np.abs(run(net, x, {0: 1.0}) - pure).mean() > 1.0


def test_mix_weights_are_summed_unnormalised():
    net = _net(2)
    first, second = dict(net.styles[0].namedparams()), dict(net.styles[1].namedparams())
    table = {name: first[name].array * 0.5 + second[name].array * 1.5 for name in first}
    merged = TransformNet(1, width=0.25)
    sources = dict(net.namedparams())
    for name, param in merged.namedparams():
        if not name.startswith("/styles/"):
            param.array[...] = sources[name].array
    for name, param in merged.styles[0].namedparams():
        param.array[...] = table[name]
    x = _images(1)
    np.testing.assert_allclose(run(net, x, {0: 0.5, 1: 1.5}), run(merged, x, {0: 1.0}), atol=1e-3)


@pytest.mark.parametrize("mix, match", [({}, "give a style"), ({2: 1.0}, "style 2 is not in this model; it has "
                                                                      "styles 0–1"),
                                        ({-1: 1.0}, "style -1 is not in this model"),
                                        ({0: float("nan")}, "weight nan is not a finite number")])
def test_bad_mixes_are_refused(mix, match):
    with pytest.raises(SettingError, match=match):
        _net().check_mix(mix)


def test_added_styles_start_neutral_and_only_they_are_new():
    net = _net(2)
    before = {name: param.array.copy() for name, param in net.namedparams()}
    assert net.add_styles(2) == [2, 3] and net.n_styles == 4
    for name, param in net.namedparams():
        if name in before:
            np.testing.assert_array_equal(param.array, before[name])
    np.testing.assert_array_equal(net.styles[3].d1_gamma.array, 1.0)
    np.testing.assert_array_equal(net.styles[3].d1_beta.array, 0.0)


@pytest.mark.parametrize("shape", [(1, 8, 12), (2, 4, 8), (1, 4, 4)])
def test_tiny_images_follow_the_graph_too(shape):
    net = _net()
    x = _images(*shape)
    with chainer.no_backprop_mode():
        expected = net(x, {0: 1.0}).array
    got = run(net, x, {0: 1.0})
    assert got.shape == x.shape and np.isfinite(got).all()
    if shape[1:] != (4, 4):  # at 4×4 the maps shrink to 1×1 and back, and instance norm over
        # near-constant 2×2 maps magnifies float32 rounding without bound
        np.testing.assert_allclose(got, expected, atol=0.05)


def test_thin_layers_in_bands_equal_one_band(monkeypatch):
    import dfi.nets.stylizer_kernels as stylizer

    net, x = _net(), _images(2, 24, 20)
    whole = run(net, x, {1: 1.0})
    monkeypatch.setattr(stylizer, "BAND_FLOATS", 3000)  # a few rows per band (on both threads at once)
    monkeypatch.setattr(stylizer, "TAPS_BAND_FLOATS", 3000)
    np.testing.assert_allclose(run(net, x, {1: 1.0}), whole, atol=2e-3)


@pytest.mark.parametrize("fold", [1, 2, 4])
@pytest.mark.parametrize("width", [13, 16])
def test_folded_columns_equal_a_plain_correlation(fold, width):
    # F output pixels per GEMM row (an odd width falls back to one): the same sums as a direct
    # valid correlation, in bands as well
    from dfi.nets.stylizer_kernels import _columns_conv, column_weights

    rng = np.random.default_rng(3)
    weight = rng.standard_normal((5, 3, 9, 9)).astype(np.float32)
    padded = rng.standard_normal((2, 11 + 8, width + 8, 3)).astype(np.float32)
    expected = np.zeros((2, 11, width, 5))
    for i in range(9):
        for j in range(9):
            expected += np.einsum("nyxc,oc->nyxo", padded[:, i:i + 11, j:j + width].astype(np.float64), weight[:, :, i, j])
    np.testing.assert_allclose(_columns_conv(padded, column_weights(weight, fold), 9, 1, fold), expected, atol=1e-4)


def test_column_buffers_of_training_and_the_2_31_guard():
    """Chainer trains the stylizer by im2col / col2im, with 32-bit offsets on a GPU: the 9×9
    output layer's buffer is 32·81 = 2,592 elements per pixel per image at width 1, past
    2³¹ at --size 512 --batch-size 4."""
    from dfi.core.errors import SettingError
    from dfi.nets.stylizer import check_columns, column_elements

    net = TransformNet(1)
    columns = column_elements(net, 512, 4)
    assert columns["c2"] == 2592 * 512 * 512 * 4 == max(columns.values())
    assert columns["c1"] == 3 * 81 * 512 * 512 * 4 and columns["d1"] == 32 * 9 * 256 * 256 * 4
    with pytest.raises(SettingError, match=r"--size 512 with --batch-size 4: layer c2's column buffer would hold "
                                           r"2,717,908,992 .* --batch-size 3 at --size 512 or --size 452 at"):
        check_columns(net, 512, 4)
    check_columns(net, 512, 3)
    check_columns(TransformNet(1, width=0.5), 512, 4)  # 16 channels into c2: half as many

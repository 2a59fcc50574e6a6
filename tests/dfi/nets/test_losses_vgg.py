import numpy as np
import pytest

import dfi._compat  # noqa: F401
import chainer
from chainer import gradient_check

from dfi.core.image import CAFFE, TORCHVISION, deprocess, preprocess
from dfi.core.losses import feature_loss, gram_matrix, style_loss, total_variation
from dfi.nets.vgg import VGG19, untrained_vgg19, vgg19_layer_names


def test_feature_loss_matches_numpy(device):
    rng = np.random.default_rng(0)
    a = {"l1": rng.normal(size=(2, 3, 4, 5)).astype("f"), "l2": rng.normal(size=(2, 6, 2, 2)).astype("f")}
    t = {k: rng.normal(size=v.shape).astype("f") for k, v in a.items()}
    got = feature_loss({k: chainer.Variable(device.send(v)) for k, v in a.items()},
                       {k: device.send(v) for k, v in t.items()}, {"l1": 0.25, "l2": 2.0})
    expect = 0.25 * ((a["l1"] - t["l1"]) ** 2).reshape(2, -1).mean(1) + \
        2.0 * ((a["l2"] - t["l2"]) ** 2).reshape(2, -1).mean(1)
    np.testing.assert_allclose(chainer.backend.CpuDevice().send(got.array), expect, rtol=1e-5)


def test_total_variation_matches_numpy_and_gradient():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 5, 6)).astype(np.float64)
    scale = np.array([1.0, 2.0, 0.5]).reshape(1, 3, 1, 1)
    got = total_variation(chainer.Variable(x), scale).array
    dy = np.diff(x, axis=2) ** 2 * scale ** 2
    dx = np.diff(x, axis=3) ** 2 * scale ** 2
    expect = (dy.reshape(2, -1).sum(1) + dx.reshape(2, -1).sum(1)) / 30
    np.testing.assert_allclose(got, expect, rtol=1e-10)
    gradient_check.check_backward(lambda v: total_variation(v, scale), x, rng.normal(size=2),
                                  dtype=np.float64, atol=1e-5, rtol=1e-4)


def test_gram_and_style_loss():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(2, 4, 3, 5)).astype(np.float64)
    g = gram_matrix(chainer.Variable(f)).array
    flat = f.reshape(2, 4, 15)
    np.testing.assert_allclose(g, np.einsum("nci,ndi->ncd", flat, flat) / 15, rtol=1e-10)
    target = rng.normal(size=(2, 4, 4))
    loss = style_loss({"a": chainer.Variable(f)}, {"a": target}).array
    np.testing.assert_allclose(loss, ((g - target) ** 2).reshape(2, -1).mean(1), rtol=1e-10)
    gradient_check.check_backward(lambda v: style_loss({"a": v}, {"a": target}), f,
                                  rng.normal(size=2), dtype=np.float64, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("convention", [CAFFE, TORCHVISION])
def test_preprocess_roundtrip(convention):
    rng = np.random.default_rng(3)
    img = (rng.random((2, 3, 4, 4)) * 255).astype("f")
    x = preprocess(img, convention)
    np.testing.assert_allclose(deprocess(x, convention), img, atol=1e-3)
    red = np.zeros((3, 1, 1), "f")
    red[0] = 255
    x = preprocess(red, convention)
    if convention.order == "BGR":  # red lands in the last channel, minus the Caffe mean
        np.testing.assert_allclose(x[:, 0, 0], [-103.939, -116.779, 255 - 123.68], rtol=1e-6)
    else:
        np.testing.assert_allclose(x[:, 0, 0], (np.array([1, 0, 0]) - convention.mean) / np.array(convention.std), rtol=1e-6)


def test_pick_names_shapes_and_ceil_pooling(tiny_net):
    x = np.zeros((1, 3, 200, 200), "f")
    feats = tiny_net.pick(x, ["conv5_1", "conv3_1"])
    assert set(feats) == {"conv3_1", "conv5_1"}
    assert feats["conv3_1"].shape[2:] == (50, 50)
    assert feats["conv5_1"].shape[2:] == (13, 13)  # Caffe ceil mode: 25 -> 13
    with pytest.raises(ValueError, match="unknown layer 'conv6_1'; valid: conv1_1, conv1_2, pool1"):
        tiny_net.pick(x, ["conv6_1"])
    assert vgg19_layer_names()[-1] == "pool5" and len(vgg19_layer_names()) == 21


def test_pick_stops_at_deepest_layer(tiny_net):
    params = {k: v for k, v in tiny_net.params.items()}
    poisoned = dict(params, conv4_1=(np.full_like(params["conv4_1"][0], np.nan), params["conv4_1"][1]))
    net = VGG19(poisoned, convention=tiny_net.convention)
    feats = net.pick(np.ones((1, 3, 32, 32), "f"), ["conv3_1"])
    assert np.isfinite(feats["conv3_1"].array).all()  # conv4_1 was never run


def test_conv1_1_against_naive_numpy():
    net = untrained_vgg19(width=0.0625, seed=5)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 3, 6, 7)).astype("f")
    weight, bias = net.params["conv1_1"]
    padded = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    expect = np.zeros((weight.shape[0], 6, 7))
    for o in range(weight.shape[0]):
        for i in range(6):
            for j in range(7):
                expect[o, i, j] = (padded[:, i:i + 3, j:j + 3] * weight[o]).sum() + bias[o]
    got = net.pick(x, ["conv1_1"])["conv1_1"].array[0]
    np.testing.assert_allclose(got, np.maximum(expect, 0), rtol=1e-4, atol=1e-5)


def test_weights_stay_out_of_the_graph(tiny_net):
    x = chainer.Variable(np.ones((1, 3, 16, 16), "f"))
    out = tiny_net.pick(x, ["conv2_1"])["conv2_1"]
    chainer.functions.sum(out).backward()
    assert x.grad is not None
    assert all(not isinstance(w, chainer.Variable) for w, _ in tiny_net.params.values())

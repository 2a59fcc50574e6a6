"""The feature decoders' builder: records, the Chainer graph against dfi's kernels, model files."""
import numpy as np
import pytest

import dfi._compat  # noqa: F401
import chainer

from dfi.core.errors import SettingError
from dfi.nets.decoder import (Decoder, DecoderSpec, FastDecoder, adain_spec, check_decoder_vgg, dfi_spec,
                              load_decoder, save_decoder)


def _channels(net):
    return {name: weight.shape[0] for name, (weight, _) in net.params.items()}


def _features(spec, size, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {name: np.maximum(rng.normal(size=(batch, channels, size // (2 ** (int(name[4]) - 1)),
                                               size // (2 ** (int(name[4]) - 1)))), 0).astype(np.float32)
            for name, channels in spec.inputs}


@pytest.mark.parametrize("size", [32, 48, 80])
def test_dfis_decoder_on_the_kernels_equals_its_chainer_graph(tiny_net, size):
    spec = dfi_spec(_channels(tiny_net), width=0.25)
    assert spec.layers == ("conv5_1", "conv4_1", "conv3_1") and spec.multiple == 16
    net = Decoder(spec, seed=1)
    feats = _features(spec, size)
    with chainer.no_backprop_mode(), chainer.using_config("train", False):
        expected = net(feats).array
    got = FastDecoder(net)(feats)
    assert got.shape == (2, 3, size, size) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_adains_decoder_is_the_published_architecture():
    spec = adain_spec()
    net = Decoder(spec)
    assert sum(p.size for p in net.params()) == 3_505_219  # pytorch-AdaIN decoder.pth
    feats = _features(spec, 32, batch=1)
    with chainer.no_backprop_mode():
        expected = net(feats).array
    got = FastDecoder(net)(feats)
    assert got.shape == (1, 3, 32, 32) and 0 <= got.min() and got.max() <= 255
    np.testing.assert_allclose(got, expected, atol=2e-3)


@pytest.mark.parametrize("inputs, ops, words", [
    ((("conv4_1", 8), ("conv5_1", 8)), (("conv", 3, False),), "deepest first"),
    ((("conv4_1", 8),), (("conv", 3, False),), "return to stride 1"),
    ((("conv4_1", 8), ("conv3_1", 4)), (("up",), ("up",), ("up",), ("conv", 3, False)), "join every layer"),
    ((("conv4_1", 8),), (("pool",),), "not conv, up or join"),
    ((("relu4_1", 8),), (("conv", 3, False),), "not a VGG-19 convolution"),
])
def test_bad_records_are_refused(inputs, ops, words):
    with pytest.raises(SettingError, match=words):
        DecoderSpec(inputs, ops)


def test_a_model_file_round_trips_and_refuses_another_vgg(tiny_net, tmp_path):
    spec = dfi_spec(_channels(tiny_net), width=0.25)
    net = Decoder(spec, seed=2)
    path = tmp_path / "dec.npz"
    save_decoder(path, net, vgg_identity=tiny_net.identity, convention="caffe", settings={"iterations": 3})
    loaded, record = load_decoder(path)
    assert loaded.spec == spec and record["training"] == {"iterations": 3}
    for (name, a), (_, b) in zip(sorted(net.namedparams()), sorted(loaded.namedparams())):
        np.testing.assert_array_equal(a.array, b.array, err_msg=name)
    check_decoder_vgg(record, tiny_net.identity, ["conv3_1", "conv4_1", "conv5_1"])
    with pytest.raises(SettingError, match="decodes the features of VGG"):
        check_decoder_vgg(record, "vgg19:max:0123456789ab", ["conv3_1", "conv4_1", "conv5_1"])
    with pytest.raises(SettingError, match="decodes layers conv3_1, conv4_1, conv5_1, not conv4_1"):
        check_decoder_vgg(record, tiny_net.identity, ["conv4_1"])
    foreign = tmp_path / "foreign.npz"
    foreign.write_bytes(np.random.default_rng(0).bytes(200))
    with pytest.raises(ValueError, match="not a dfi decoder"):
        load_decoder(foreign)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a dfi decoder"):
        load_decoder(tmp_path / "other.npz")


@pytest.mark.parametrize("size", [(50, 50), (37, 45)])
def test_any_image_size_decodes_to_that_size(tiny_net, size):
    """Features of any size (VGG's pooling rounds up): maps are cropped at each join and at the end."""
    from dfi.nets.features import extract

    spec = dfi_spec(_channels(tiny_net), width=0.25)
    net = Decoder(spec, seed=1)
    images = np.random.default_rng(0).uniform(0, 255, (2, 3, *size)).astype(np.float32)
    feats = extract(tiny_net, images, spec.layers)
    with chainer.no_backprop_mode():
        expected = net(feats, size).array
    got = FastDecoder(net)(feats, size)
    assert got.shape == (2, 3, *size)
    np.testing.assert_allclose(got, expected, atol=0.02)  # (Winograd's float32 rounding on large features)


def test_a_loaded_decoder_keeps_its_record_and_decodes_on_the_kernels(tiny_net, tmp_path):
    spec = dfi_spec(_channels(tiny_net), width=0.25)
    net = Decoder(spec, seed=4)
    path = tmp_path / "dec.npz"
    save_decoder(path, net, vgg_identity=tiny_net.identity, convention="caffe", settings={"iterations": 3})
    loaded = Decoder.load(path)
    assert loaded.record["vgg"] == tiny_net.identity and loaded.record["training"] == {"iterations": 3}
    assert Decoder(spec).record is None
    feats = _features(spec, 48)
    with chainer.no_backprop_mode(), chainer.using_config("train", False):
        expected = net(feats).array
    got = loaded.decode(feats)
    assert got.shape == (2, 3, 48, 48)
    np.testing.assert_allclose(got, expected, atol=2e-3)

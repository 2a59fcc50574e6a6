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


@pytest.mark.parametrize("kinds", [dict(padding="zero"), dict(upsample="bilinear"), dict(norm="instance"),
                                   dict(padding="zero", upsample="bilinear", norm="instance")])
def test_each_decoder_variant_on_the_kernels_equals_its_chainer_graph(tiny_net, kinds):
    """Zero padding, bilinear upsampling and instance normalisation, at a size whose maps
    are rounded up (50 → 4, 7, 13): the kernels' pass is the graph's."""
    spec = dfi_spec(_channels(tiny_net), width=0.25, **kinds)
    net = Decoder(spec, seed=1)
    rng = np.random.default_rng(3)
    for name, param in net.namedparams():  # γ, β away from 1, 0 so that they count
        if "gamma" in name or "beta" in name:
            param.array[...] = rng.normal(size=param.shape) * 0.3 + ("gamma" in name)
    assert (sum("gamma" in name for name, _ in net.namedparams()) > 0) == (kinds.get("norm") == "instance")
    sides = {name: -(-50 // 2 ** (int(name[4]) - 1)) for name, _ in spec.inputs}  # VGG's pooling rounds up
    feats = {name: np.maximum(rng.normal(size=(2, c, sides[name], sides[name])), 0).astype(np.float32)
             for name, c in spec.inputs}
    with chainer.no_backprop_mode(), chainer.using_config("train", False):
        expected = net(feats, (50, 50)).array
        default = Decoder(dfi_spec(_channels(tiny_net), width=0.25), seed=1)(feats, (50, 50)).array
    got = FastDecoder(net)(feats, (50, 50))
    assert got.shape == (2, 3, 50, 50)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert np.abs(expected - default).max() > 0.1  # the variant is not the default network


def test_bilinear_upsampling_has_half_pixel_centres():
    """Against linear interpolation at the source coordinates (j + ½)/2 − ½, clamped."""
    from dfi.nets.decoder import bilinear_up2

    x = np.random.default_rng(0).normal(size=(1, 5, 4, 2)).astype(np.float32)
    got = bilinear_up2(x, (1, 2), np)

    def along(a, axis):
        n = a.shape[axis]
        source = np.clip((np.arange(2 * n) + 0.5) / 2 - 0.5, 0, n - 1)
        return np.apply_along_axis(lambda v: np.interp(source, np.arange(n), v), axis, a)
    np.testing.assert_allclose(got, along(along(x, 1), 2), atol=1e-6)
    with chainer.no_backprop_mode():
        from dfi.nets.decoder import _CHAINER_ARRAYS
        np.testing.assert_allclose(bilinear_up2(chainer.Variable(x), (1, 2), _CHAINER_ARRAYS).array, got, atol=1e-6)


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


@pytest.mark.parametrize("kind, value, words", [("padding", "same", "padding 'same' is not one of reflect, zero"),
                                                ("upsample", "cubic", "upsampling 'cubic' is not one of nearest"),
                                                ("norm", "batch", "normalisation 'batch' is not one of none, instance")])
def test_an_unknown_padding_upsampling_or_normalisation_is_refused(kind, value, words):
    with pytest.raises(SettingError, match=words):
        DecoderSpec((("conv4_1", 8),), (("up",), ("up",), ("up",), ("conv", 3, False)), **{kind: value})


def test_a_record_without_the_kinds_reads_as_the_defaults_and_a_variant_round_trips(tiny_net, tmp_path):
    """Decoders saved before the record named padding, upsampling and normalisation were
    reflection-padded, nearest, unnormalised; a variant's file rebuilds that variant."""
    spec = dfi_spec(_channels(tiny_net), width=0.25)
    old = {key: value for key, value in spec.record().items() if key not in ("padding", "upsample", "norm")}
    assert DecoderSpec.from_record(old) == spec
    variant = Decoder(dfi_spec(_channels(tiny_net), width=0.25, padding="zero", upsample="bilinear", norm="instance"))
    save_decoder(tmp_path / "v.npz", variant, vgg_identity=tiny_net.identity, convention="caffe", settings={})
    loaded, record = load_decoder(tmp_path / "v.npz")
    assert loaded.spec == variant.spec and record["architecture"]["norm"] == "instance"
    assert sorted(name for name, _ in loaded.namedparams()) == sorted(name for name, _ in variant.namedparams())


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
    np.testing.assert_allclose(got, expected, atol=0.02, rtol=1e-3)  # (Winograd's float32 rounding on large features)


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

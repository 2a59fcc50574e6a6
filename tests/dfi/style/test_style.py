"""dfi style / invert: colour maths, loss normalisation, memory estimate, end to end."""
import numpy as np
import pytest
from PIL import Image

from data_tools.synth import make_style_image
from dfi.core import color
from dfi.core.image import resize
from dfi.core.memory import estimate_bytes, largest_fitting
from dfi.core.reconstruct import ReconstructConfig
from dfi.style.gatys import (StyleConfig, targets, check_memory, invert_features, make_loss,
                       stylize, style_transfer)
from dfi.style.settings import parse_layer_weights


def _smooth_image(size=32, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.uniform(30, 225, (3, 4, 4)).astype(np.float32)
    return resize(small, (size, size)).clip(0, 255)


def _style(size=32, kind="strokes"):
    return np.asarray(make_style_image((size, size), kind=kind), np.float32).transpose(2, 0, 1).copy()


# ------------------------------------------------------------------ colour maths
def test_luminance_of_known_colours():
    red = np.zeros((3, 2, 2), np.float32)
    red[0] = 255
    assert np.allclose(color.luminance(red), 0.299 * 255, atol=1e-3)
    white = np.full((3, 1, 1), 200, np.float32)
    assert np.allclose(color.luminance(white), 200, atol=1e-3)
    # grey: three equal channels; YIQ/YUV round trips
    assert np.allclose(color.grey(red), 0.299 * 255, atol=1e-3)
    image = _smooth_image()
    for space in ("yiq", "yuv"):
        assert np.allclose(color.from_space(color.to_space(image, space), space), image, atol=1e-3)


def test_combine_luminance_keeps_chroma_of_one_and_luma_of_other():
    a, b = _smooth_image(seed=1), _smooth_image(seed=2)
    for space in ("yiq", "yuv"):
        out = color.combine_luminance(a, b, space)
        assert np.allclose(color.to_space(out, space)[0], color.to_space(a, space)[0], atol=1e-2)
        assert np.allclose(color.to_space(out, space)[1:], color.to_space(b, space)[1:], atol=1e-2)


def test_match_histogram_reproduces_target_statistics():
    rng = np.random.default_rng(0)
    # correlated colours away from the clip range
    mix = np.array([[1.0, 0.3, 0.0], [0.2, 0.8, 0.1], [0.0, 0.4, 0.6]])
    source = (np.tensordot(mix, rng.normal(0, 12, (3, 40, 40)), axes=1) + 110).astype(np.float32)
    reference = (np.tensordot(mix.T, rng.normal(0, 15, (3, 30, 50)), axes=1)
                 + np.array([140, 100, 90])[:, None, None]).astype(np.float32)
    out = color.match_histogram(source, reference)
    flat_o, flat_r = out.reshape(3, -1).astype(np.float64), reference.reshape(3, -1).astype(np.float64)
    assert np.allclose(flat_o.mean(1), flat_r.mean(1), atol=0.05)
    assert np.allclose(np.cov(flat_o), np.cov(flat_r), rtol=1e-3, atol=0.05)
    # the transform is the identity when both have the same statistics
    a, b = color.color_transform(source, source)
    assert np.allclose(a, np.eye(3), atol=1e-6) and np.allclose(b, 0, atol=1e-4)


def test_match_luminance_and_match_color():
    style, content = _style(), _smooth_image()
    out = color.match_luminance(style, content)
    y, yc = color.luminance(out), color.luminance(content)
    assert np.allclose(out[0], out[1]) and np.allclose(out[1], out[2])
    assert abs(y.mean() - yc.mean()) < 0.01 and abs(y.std() - yc.std()) < 0.01
    matched = color.match_color(style, content)
    assert np.allclose(matched.mean(axis=(1, 2)), content.mean(axis=(1, 2)), atol=0.01)
    assert np.allclose(matched.std(axis=(1, 2)), content.std(axis=(1, 2)), atol=0.01)


# ------------------------------------------------------------------ settings
def test_parse_layer_weights():
    assert parse_layer_weights("conv1_1,conv2_1:3", "--x") == {"conv1_1": 0.25, "conv2_1": 0.75}
    assert parse_layer_weights("conv4_2", "--x") == {"conv4_2": 1.0}
    for bad, words in (("conv9_9", "unknown layer 'conv9_9'"), ("conv1_1:-1", "must be a number"),
                       ("conv1_1:x", "must be a number"), ("", "at least one layer"),
                       ("conv1_1:0", "at least one layer")):
        with pytest.raises(ValueError, match=words):
            parse_layer_weights(bad, "--style-layers")


@pytest.mark.parametrize("kwargs, words", [
    ({"style_weight": -1}, "--style-weight -1"), ({"scales": (64, 32)}, "coarse to fine"),
    ({"scales": (8,)}, "between 16"), ({"init": "zeros"}, "--init 'zeros'"),
    ({"preserve_color": "hsv"}, "--preserve-color 'hsv'"), ({"style_scale": 0}, "--style-scale"),
    ({"style_blend": (0.0, 0.0)}, "--style-blend")])
def test_style_config_rejects(kwargs, words):
    with pytest.raises(ValueError, match=words):
        StyleConfig(**kwargs)


# ------------------------------------------------------------------ losses
def _style_term(net, content, style, size):
    """The normalised loss terms at one size, and Gatys et al.'s un-normalised
    Σ (F Fᵀ − S Sᵀ)² at conv1_1 for comparison."""
    import chainer
    from dfi.core.image import preprocess
    from dfi.core.losses import gram_matrix

    config = StyleConfig(scales=(size,))
    content_t, grams = targets(net, resize(content, (size, size)), [style], np.ones(1), config, size)
    z = resize(_smooth_image(seed=5), (size, size))
    feats = net.pick(chainer.Variable(preprocess(z[None], net.convention)), config.layers)
    terms = make_loss(content_t, grams, config)(feats, np.arange(1))
    conv = feats["conv1_1"].array
    positions = conv.shape[2] * conv.shape[3]
    raw = float((((gram_matrix(conv).array - grams["conv1_1"][0]) * positions) ** 2).sum())
    return {k: float(v.array[0]) for k, v in terms.items()}, raw


def test_loss_weights_do_not_depend_on_image_size(tiny_net):
    content, style = _smooth_image(128), _style(128)
    small, raw_small = _style_term(tiny_net, content, style, 48)
    large, raw_large = _style_term(tiny_net, content, style, 96)
    for term in ("content", "style"):
        assert 0.5 < large[term] / small[term] < 2.0, (term, small, large)
    # what an un-normalised (summed) loss would do: grow with the pixel count
    assert raw_large / raw_small > 3.0


def test_style_and_content_terms_decrease(tiny_net):
    config = StyleConfig(scales=(32,), reconstruct=ReconstructConfig(iterations=15, tv_weight=1e-6, ftol=0))
    records = list(stylize(tiny_net, _smooth_image(), [_style()], config))
    first, last = records[0].progress, records[-1].progress
    assert float(last.loss[0]) < 0.8 * float(first.loss[0])
    assert float(last.terms["style"][0]) < float(first.terms["style"][0])
    assert set(last.terms) == {"content", "style", "tv"}


def test_feature_inversion_recovers_the_input(tiny_net):
    image = _smooth_image(32, seed=3)
    config = StyleConfig(scales=(32,), reconstruct=ReconstructConfig(iterations=120, tv_weight=1e-5, ftol=0))
    out = invert_features(tiny_net, image, "conv1_2", config)
    start = np.clip(np.random.default_rng(0).normal(127.5, 40.0, image.shape), 0, 255)
    err, err0 = np.abs(out - image).mean(), np.abs(start - image).mean()
    assert err < 0.25 * err0 and err < 12, (err, err0)


def test_multiple_styles_blend_grams(tiny_net):
    a, b = _style(32, "strokes"), _style(32, "waves")
    config = StyleConfig(scales=(32,), style_blend=(3.0, 1.0))
    _, grams = targets(tiny_net, None, [a, b], np.array([0.75, 0.25]), config, 32)
    _, ga = targets(tiny_net, None, [a], np.ones(1), config, 32)
    _, gb = targets(tiny_net, None, [b], np.ones(1), config, 32)
    for name in grams:
        assert np.allclose(grams[name][0], 0.75 * ga[name][0] + 0.25 * gb[name][0], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="2 weights for 3 style images"):
        list(stylize(tiny_net, None, [a, b, a], StyleConfig(scales=(32,), style_blend=(1.0, 1.0))))


def test_coarse_to_fine_stages_and_texture(tiny_net):
    config = StyleConfig(scales=(16, 32), init="noise", content_weight=0.0,
                         reconstruct=ReconstructConfig(iterations=3, ftol=0))
    records = list(stylize(tiny_net, None, [_style(40)], config))
    assert [r.shape for r in records] == [(16, 16)] * 3 + [(32, 32)] * 3
    assert [r.stage for r in records[::3]] == [0, 1]


def test_preserve_color_modes_keep_content_chroma(tiny_net):
    content, style = _smooth_image(32, seed=4), _style(32)
    for mode, space in (("luminance", "yiq"), ("yuv", "yuv")):
        config = StyleConfig(scales=(32,), preserve_color=mode,
                             reconstruct=ReconstructConfig(iterations=3))
        out = style_transfer(tiny_net, content, [style], config)
        chroma_out = color.to_space(out, space)[1:]
        chroma_in = color.to_space(content, space)[1:]
        inside = (out > 1).all(axis=0) & (out < 254).all(axis=0)  # unclipped pixels
        assert np.abs(chroma_out - chroma_in)[:, inside].max() < 0.05, mode
    config = StyleConfig(scales=(32,), preserve_color="histogram", reconstruct=ReconstructConfig(iterations=2))
    assert style_transfer(tiny_net, content, [style], config).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="needs a content image"):
        style_transfer(tiny_net, None, [style], StyleConfig(scales=(32,), preserve_color="luminance"))


# ------------------------------------------------------------------ memory
def test_memory_estimate_grows_with_pixels_and_refuses(tiny_net, monkeypatch):
    layers = ["conv1_1", "conv4_2", "conv5_1"]
    small = estimate_bytes(tiny_net, (100, 100), layers)
    large = estimate_bytes(tiny_net, (200, 200), layers)
    weights = 4 * sum(w.size + b.size for w, b in tiny_net.params.values())
    # activations and buffers grow with the pixels; the kept transformed filters do not
    assert 3.0 < (large - weights) / (small - weights) < 4.2
    from dfi.nets.vgg import VGG19, untrained_vgg19
    full = untrained_vgg19()  # at full width and 400² Chainer's im2col columns outweigh the kernel's
    assert estimate_bytes(VGG19(full.params, kernel="chainer"), (400, 400), layers) > \
        estimate_bytes(full, (400, 400), layers)  # buffers with its kept filters (113 MB whatever the size)
    assert estimate_bytes(tiny_net, (200, 200), ["conv1_1"]) < large
    assert largest_fitting(lambda n: n * n <= 1000, 1, 100) == 31
    assert largest_fitting(lambda n: False, 1, 100) == 0
    import dfi.style.gatys
    monkeypatch.setattr(dfi.style.gatys, "available_memory", lambda device: 50 * 2**20)
    monkeypatch.setattr(dfi.style.gatys, "resident_bytes", lambda: 0)
    with pytest.raises(MemoryError, match=r"size 1024 px needs about .* the largest size that fits is about \d+ px"):
        check_memory(tiny_net, _smooth_image(), [_style()], StyleConfig(scales=(1024,)))
    assert check_memory(tiny_net, _smooth_image(), [_style()], StyleConfig(scales=(32,))) > 0


# ------------------------------------------------------------------ command line
FAST = ["--weights", "untrained", "--device", "cpu", "--iterations", "3", "--size", "32"]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    root = tmp_path_factory.mktemp("style")
    content = root / "content.jpg"
    Image.fromarray(np.uint8(_smooth_image(48).transpose(1, 2, 0))).resize((60, 40)).save(content)
    styles = []
    for kind in ("strokes", "waves"):
        path = root / f"{kind}.png"
        make_style_image((40, 40), kind=kind).save(path)
        styles.append(path)
    return content, styles


@pytest.mark.parametrize("mode", ["none", "luminance", "histogram", "yuv"])
def test_cli_style_modes(pictures, tmp_path, cli, mode):
    content, styles = pictures
    out = tmp_path / "out.png"
    code, _, err = cli("--quiet", "style", content, *styles, "--style-blend", "0.7,0.3",
                       "--preserve-color", mode, *FAST, "-o", out)
    assert code == 0, err
    with Image.open(out) as im:
        assert im.size == (32, 21)  # the content's aspect, long side --size
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_cli_texture_invert_scales_and_snapshots(pictures, tmp_path, cli):
    content, styles = pictures
    code, _, err = cli("--quiet", "style", "--texture", styles[0], "--scales", "16,32",
                       "--save-every", "2", *FAST, "-o", tmp_path / "tex.png")
    assert code == 0, err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["tex.png", "tex_16px_0002.png", "tex_32px_0002.png"]
    code, _, err = cli("--quiet", "invert", content, "--layer", "conv2_1", *FAST,
                       "-o", tmp_path / "inv.png")
    assert code == 0, err
    with Image.open(tmp_path / "inv.png") as im:
        assert im.size == (32, 21)


@pytest.mark.parametrize("argv, code, words", [
    (["{content}"], 2, "give a CONTENT and at least one STYLE"),
    (["{content}", "missing.png"], 1, "missing.png: no such file"),
    (["--texture", "{style}", "--preserve-color", "yuv"], 2, "--texture has none"),
    (["{content}", "{style}", "--style-layers", "conv6_1"], 2, "unknown layer 'conv6_1'"),
    (["{content}", "{style}", "--scales", "16,24"], 2, "disagree"),
    (["{content}", "{style}", "--style-blend", "1,2"], 2, "2 weights for 1 style image(s)"),
    (["{content}", "{style}", "--init", "content", "--texture"], 2, "--init content needs"),
    (["{content}", "{style}", "--scales", "64,32"], 2, "coarse to fine"),
    (["{content}", "{style}", "--optimizer", "sgd"], 2, "invalid choice: 'sgd'"),
])
def test_cli_style_bad_inputs(pictures, tmp_path, cli, argv, code, words):
    content, styles = pictures
    argv = [a.format(content=content, style=styles[0]) for a in argv]
    out = tmp_path / "out.png"
    got, _, err = cli("--quiet", "style", *argv, *FAST, "-o", out)
    assert got == code and words in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_cli_style_refuses_what_does_not_fit(pictures, tmp_path, cli, monkeypatch):
    import dfi.style.gatys
    content, styles = pictures
    monkeypatch.setattr(dfi.style.gatys, "available_memory", lambda device: 1)
    out = tmp_path / "big.png"
    code, _, err = cli("--quiet", "style", content, styles[0], *FAST, "-o", out)
    assert code == 1 and "needs about" in err and "no size fits" in err
    assert not out.exists()

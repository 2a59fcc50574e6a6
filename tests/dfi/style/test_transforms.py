"""AdaIN and WCT as pure functions: the statistics they promise, the blends and masks."""
import numpy as np
import pytest

from dfi.core.errors import SettingError
from dfi.style.transforms import adain, blend_weights, mean_std, stylise_features, wct


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    content = rng.gamma(2.0, 1.0, (6, 9, 11)).astype(np.float32)
    style = (rng.standard_normal((6, 7, 8)) * rng.uniform(0.5, 3, (6, 1, 1)) + rng.uniform(-2, 2, (6, 1, 1)))
    return content, style.astype(np.float32)


def test_adain_gives_the_style_statistics_as_pytorch_adain_computes_them(feats):
    content, style = feats
    out = adain(content, style)
    # pytorch-AdaIN: unbiased variance + 1e-5, for content and style
    c = content.reshape(6, -1).astype(np.float64)
    s = style.reshape(6, -1).astype(np.float64)
    c_std, s_std = np.sqrt(c.var(axis=1, ddof=1) + 1e-5), np.sqrt(s.var(axis=1, ddof=1) + 1e-5)
    want = (c - c.mean(1, keepdims=True)) / c_std[:, None] * s_std[:, None] + s.mean(1, keepdims=True)
    np.testing.assert_allclose(out.reshape(6, -1), want, rtol=1e-4, atol=1e-4)
    mean, std = mean_std(out)
    np.testing.assert_allclose(mean, s.mean(1), atol=1e-4)
    np.testing.assert_allclose(std, s_std, rtol=1e-3)


def test_alpha_blends_and_masks(feats):
    content, style = feats
    np.testing.assert_allclose(stylise_features(content, [style], adain, alpha=0.0), content)
    half = stylise_features(content, [style], adain, alpha=0.5)
    np.testing.assert_allclose(half, 0.5 * adain(content, style) + 0.5 * content, rtol=1e-5)
    twice = stylise_features(content, [style, style], adain, weights=[3, 1])
    np.testing.assert_allclose(twice, adain(content, style), rtol=1e-5, atol=1e-5)  # weights normalised
    mask = np.zeros((9, 11), bool)
    mask[:, :5] = True
    other = style[::-1] * 2 + 5
    out = stylise_features(content, [style, other], adain, mask=mask)
    np.testing.assert_allclose(mean_std(out, mask)[0], style.reshape(6, -1).mean(1), atol=1e-3)
    np.testing.assert_allclose(mean_std(out, ~mask)[0], other.reshape(6, -1).mean(1), atol=1e-3)
    for bad in (lambda: stylise_features(content, [style], adain, alpha=1.5),
                lambda: stylise_features(content, [style], adain, mask=mask),
                lambda: blend_weights([1, -1], 2), lambda: blend_weights([1], 2)):
        with pytest.raises(SettingError):
            bad()


def test_wct_gives_the_style_covariance(feats):
    content, style = feats
    out = wct(content, style)
    o, s = out.reshape(6, -1).astype(np.float64), style.reshape(6, -1).astype(np.float64)
    np.testing.assert_allclose(o.mean(1), s.mean(1), atol=1e-4)
    np.testing.assert_allclose(np.cov(o), np.cov(s), rtol=1e-3, atol=1e-3)
    assert out.dtype == np.float32 and out.shape == content.shape

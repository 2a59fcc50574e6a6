"""Feature transforms for arbitrary style in one pass: AdaIN (Huang & Belongie 2017) and
WCT (Li et al. 2017), pure functions on (C, H, W) or (N, C, H, W) feature arrays, NumPy or
CuPy alike.

AdaIN follows pytorch-AdaIN's ``function.py``, the code its published weights come with:
per channel mean and the *unbiased* variance over H·W plus 1e-5 for content and style alike
(the Lua original divides the style's by N; the PyTorch reference is followed here).
WCT whitens the centred content features with E D^−½ Eᵀ of their covariance ffᵀ/(HW − 1)
and colours them with the style's E D^½ Eᵀ plus its mean, eigenvalues below 1e-5 dropped;
the eigen-decompositions run in float64 (float32 loses the small eigenvalues of a
512-channel covariance).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..core.backend import get_array_module
from ..core.errors import SettingError

EPS = 1e-5
EIGEN_FLOOR = 1e-5


def mean_std(feat, mask=None):
    """Per channel mean and std (unbiased variance + :data:`EPS`) of (C, H, W) features,
    over the pixels where ``mask`` (H, W) is true if given."""
    xp = get_array_module(feat)
    flat = feat.reshape(feat.shape[0], -1)
    if mask is not None:
        flat = flat[:, xp.asarray(mask).reshape(-1)]
    count = flat.shape[1]
    if count < 2:
        raise SettingError("a style region needs at least 2 feature pixels (the mask is too small)")
    mean = flat.mean(axis=1)
    var = ((flat - mean[:, None]) ** 2).sum(axis=1) / (count - 1) + EPS
    return mean, xp.sqrt(var)


def adain(content, style, *, content_mask=None):
    """(c − μc)/σc · σs + μs for (C, H, W) ``content`` and ``style`` features (the content's
    statistics over ``content_mask`` only, if given)."""
    c_mean, c_std = mean_std(content, content_mask)
    s_mean, s_std = mean_std(style)
    shape = (-1, 1, 1)
    return (content - c_mean.reshape(shape)) / c_std.reshape(shape) * s_std.reshape(shape) + s_mean.reshape(shape)


def check_alpha(alpha: float) -> float:
    if not (np.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise SettingError(f"--alpha {alpha} must be within 0…1 (0: the content, 1: the full style)")
    return float(alpha)


def blend_weights(weights: Optional[Sequence[float]], count: int) -> np.ndarray:
    """Style weights normalised to sum 1, as the AdaIN reference's interpolation does."""
    w = np.ones(count) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (count,):
        raise SettingError(f"--style-blend gives {w.size} weights for {count} styles")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise SettingError(f"--style-blend {','.join(f'{v:g}' for v in w)}: weights must be ≥ 0, not all 0")
    return w / w.sum()


def stylise_features(content, styles: Sequence, transform, *, alpha: float = 1.0,
                     weights: Optional[Sequence[float]] = None, mask=None):
    """The target features of one level: ``transform(content, style, content_mask=…)`` for
    each style, mixed by ``weights`` (normalised), or — with ``mask`` (H, W) of the
    content's features, two styles — the first style where the mask is true and the second
    elsewhere, each from the content statistics of its own region (the Lua reference's
    ``-mask``); then α·target + (1 − α)·content."""
    xp = get_array_module(content)
    alpha = check_alpha(alpha)
    if mask is not None:
        if len(styles) != 2:
            raise SettingError(f"--mask needs exactly two styles (foreground, background), not {len(styles)}")
        mask = xp.asarray(mask, dtype=bool)
        front = transform(content, styles[0], content_mask=mask)
        back = transform(content, styles[1], content_mask=~mask)
        target = xp.where(mask[None], front, back)
    else:
        w = blend_weights(weights, len(styles))
        target = sum(float(wi) * transform(content, s) for wi, s in zip(w, styles))
    return alpha * target + (1.0 - alpha) * content


def _eigen(covariance):
    """Eigenvalues (ascending) and vectors of a symmetric matrix, in float64, with the
    eigenvalues below :data:`EIGEN_FLOOR` dropped."""
    xp = get_array_module(covariance)
    values, vectors = xp.linalg.eigh(covariance.astype(xp.float64))
    keep = values > EIGEN_FLOOR
    return values[keep], vectors[:, keep]


def wct(content, style, *, content_mask=None):
    """Whitening and colouring of (C, H, W) ``content`` features to ``style``'s covariance
    and mean (the content's statistics over ``content_mask`` only, if given)."""
    xp = get_array_module(content)
    channels = content.shape[0]
    flat = content.reshape(channels, -1).astype(xp.float64)
    region = flat if content_mask is None else flat[:, xp.asarray(content_mask).reshape(-1)]
    if region.shape[1] < 2:
        raise SettingError("a style region needs at least 2 feature pixels (the mask is too small)")
    c_mean = region.mean(axis=1, keepdims=True)
    centred = region - c_mean
    values, vectors = _eigen(centred @ centred.T / (region.shape[1] - 1))
    whiten = (vectors / xp.sqrt(values)) @ vectors.T
    s_flat = style.reshape(channels, -1).astype(xp.float64)
    s_mean = s_flat.mean(axis=1, keepdims=True)
    s_centred = s_flat - s_mean
    s_values, s_vectors = _eigen(s_centred @ s_centred.T / (s_flat.shape[1] - 1))
    colour = (s_vectors * xp.sqrt(s_values)) @ s_vectors.T
    out = colour @ (whiten @ (flat - c_mean)) + s_mean
    return out.reshape(content.shape).astype(content.dtype)

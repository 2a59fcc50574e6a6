"""Losses as pure functions of Chainer variables; every one returns one value per image.

* Feature loss (Upchurch et al., CVPR 2017, eq. 3; Mahendran & Vedaldi, CVPR 2015):
  ``Σ_l w_l · mean_{c,h,w} (φ_l(z) − t_l)²``. The per-layer mean keeps the weights
  comparable across layers and image sizes.
* Total variation (Mahendran & Vedaldi 2015, β = 2):
  ``mean_{h,w} Σ_c s_c² [(z_{h+1,w} − z_{h,w})² + (z_{h,w+1} − z_{h,w})²]``, where
  ``s_c`` converts the network's input scale back to pixel units (0–255), so one
  ``tv_weight`` means the same for every weight format.
* Gram / style loss (Gatys et al., CVPR 2016) lives here too, for ``dfi style``.
"""
from __future__ import annotations

from typing import Mapping, Optional

from .. import _compat  # noqa: F401
import chainer
import chainer.functions as F
from chainer import function_node

from .backend import get_array_module


def feature_loss(feats: Mapping[str, chainer.Variable], targets: Mapping[str, object],
                 layer_weights: Optional[Mapping[str, float]] = None) -> chainer.Variable:
    """Weighted per-layer mean squared feature error.

    Args:
        feats: ``{layer: Variable (N, C, h, w)}``, the current image's features.
        targets: ``{layer: array (N, C, h, w)}`` on the same device.
        layer_weights: ``{layer: weight}``; default ``1 / len(feats)`` each.

    Returns:
        Variable of shape (N,), float32.
    """
    total = None
    for name, feat in feats.items():
        weight = layer_weights[name] if layer_weights else 1.0 / len(feats)
        diff = feat - targets[name]
        per_image = F.mean(F.reshape(diff * diff, (diff.shape[0], -1)), axis=1) * weight
        total = per_image if total is None else total + per_image
    return total


def _differences(x, weights):
    """Vertical and horizontal neighbour differences of NCHW ``x``, times ``weights``
    (1, C, 1, 1) or 1: the TV's two terms before squaring."""
    return (x[:, :, 1:, :] - x[:, :, :-1, :]) * weights, (x[:, :, :, 1:] - x[:, :, :, :-1]) * weights


class TotalVariation(function_node.FunctionNode):
    """Per image Σ_c s_c² [(z_{h+1,w} − z_{h,w})² + (z_{h,w+1} − z_{h,w})²] / (H·W).

    Written as one function with its gradient in closed form, 2 s²(Dᵀ D z) / (H·W), so the
    backward pass needs no scatter (slicing's backward would add into a zero array with
    ``numpy.add.at``, slow on a CPU and deprecated on CuPy).
    """

    def __init__(self, channel_scale=None):
        self.channel_scale = channel_scale

    def _weights(self, xp, dtype):
        return 1.0 if self.channel_scale is None else xp.asarray(self.channel_scale, dtype) ** 2

    def forward(self, inputs):
        x, = inputs
        xp = get_array_module(x)
        self.retain_inputs((0,))
        dy, dx = _differences(x, 1.0)
        weights = self._weights(xp, x.dtype)
        per_pixel = (dy * dy * weights).sum(axis=(1, 2, 3)) + (dx * dx * weights).sum(axis=(1, 2, 3))
        return (per_pixel / (x.shape[2] * x.shape[3])).astype(x.dtype),

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        return TotalVariationGrad(self).apply((x, grad_outputs[0]))


class TotalVariationGrad(function_node.FunctionNode):
    """The gradient of :class:`TotalVariation`: (x, gy) → gy · 2 s² Dᵀ D x / (H·W)."""

    def __init__(self, tv: TotalVariation):
        self.tv = tv

    def forward(self, inputs):
        x, gy = inputs
        xp = get_array_module(x)
        dy, dx = _differences(x, self.tv._weights(xp, x.dtype))
        gx = xp.zeros_like(x)
        gx[:, :, 1:, :] += dy
        gx[:, :, :-1, :] -= dy
        gx[:, :, :, 1:] += dx
        gx[:, :, :, :-1] -= dx
        gx *= (2.0 / (x.shape[2] * x.shape[3])) * gy.reshape(-1, 1, 1, 1).astype(x.dtype)
        return gx,

    def backward(self, indexes, grad_outputs):
        raise NotImplementedError("the total variation has no second derivative here")


def network_input(y, convention):
    """Differentiable :func:`dfi.core.image.preprocess` of a Variable of RGB [0, 255] images
    (NCHW): what a generated image (a stylizer's, a decoder's) goes through before VGG."""
    xp = get_array_module(y)
    shape = (1, 3, 1, 1)
    mean = xp.asarray(convention.mean, xp.float32).reshape(shape)
    std = xp.asarray(convention.std, xp.float32).reshape(shape)
    if convention.order == "BGR":
        y = F.flip(y, axis=1)
    return (y * (convention.scale / 255.0) - F.broadcast_to(mean, y.shape)) / F.broadcast_to(std, y.shape)


def total_variation(x: chainer.Variable, channel_scale=None) -> chainer.Variable:
    """Squared-gradient total variation (β = 2) per image (Mahendran & Vedaldi 2015).

    Args:
        x: Variable (N, 3, H, W).
        channel_scale: optional array (1, 3, 1, 1): pixel units per input unit, squared
            into the loss so that the result is in (pixels)².

    Returns:
        Variable of shape (N,).
    """
    return TotalVariation(channel_scale).apply((x,))[0]


def gram_matrix(feat: chainer.Variable) -> chainer.Variable:
    """Gram matrix normalised by the number of positions: G = F Fᵀ / (h·w), (N, C, C).

    Dividing by h·w (not by C·h·w or 4N²M²) makes G an average over positions, which
    keeps style weights valid when the image size changes.
    """
    n, c, h, w = feat.shape
    flat = F.reshape(feat, (n, c, h * w))
    return F.matmul(flat, flat, transb=True) / (h * w)


def style_loss(feats: Mapping[str, chainer.Variable], target_grams: Mapping[str, object],
               layer_weights: Optional[Mapping[str, float]] = None) -> chainer.Variable:
    """Σ_l w_l · mean_{i,j} (G_l(z) − G_l(style))², per image (Gatys et al. 2016, eq. 4–5)."""
    total = None
    for name, feat in feats.items():
        weight = layer_weights[name] if layer_weights else 1.0 / len(feats)
        diff = gram_matrix(feat) - target_grams[name]
        per_image = F.mean(F.reshape(diff * diff, (diff.shape[0], -1)), axis=1) * weight
        total = per_image if total is None else total + per_image
    return total


def temporal_loss(x: chainer.Variable, targets, weights, channel_scale=None) -> chainer.Variable:
    """Short- and long-term temporal consistency (Ruder, Dosovitskiy & Brox 2016, eq. 7–8):
    Σ_j mean over pixels and channels of c_j · (s·(z − ω_j))², per image.

    Args:
        x: Variable (N, 3, H, W), the frames being optimised.
        targets: sequence of arrays (N, 3, H, W): the earlier outputs ω_j warped into the frame.
        weights: sequence of arrays (N, 1, H, W) in [0, 1]: their consistency masks c_j.
        channel_scale: optional (1, 3, 1, 1) pixel units per input unit (as for the TV).

    Returns:
        Variable of shape (N,), in pixel² units.
    """
    total = None
    for target, weight in zip(targets, weights):
        diff = x - target
        if channel_scale is not None:
            diff = diff * F.broadcast_to(channel_scale, diff.shape)
        term = F.mean(F.reshape(F.broadcast_to(weight, diff.shape) * diff * diff, (x.shape[0], -1)), axis=1)
        total = term if total is None else total + term
    return total

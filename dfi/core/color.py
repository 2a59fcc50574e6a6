"""Colour maths on CHW RGB images in [0, 255] (NumPy or CuPy), pure functions.

Used by DFI (match the edit's colours to the input) and by ``dfi style``'s colour
preservation (Gatys, Bethge, Hertzmann & Shechtman 2016, "Preserving Color in Neural
Artistic Style Transfer"):

* ``luminance``: transfer on luminance only (YIQ, as the paper), the style's luminance
  first matched to the content's mean and deviation, then the content's I and Q put back.
* ``histogram``: before the transfer, a linear map x ↦ A(x − μ_s) + μ_c gives the style
  image the content's colour mean and covariance; A = Σ_c^½ Σ_s^−½ with symmetric
  square roots (the paper's "image analogies" choice).
* ``yuv``: after the transfer, the result's Y with the content's U and V
  (jcjohnson/neural-style's ``-original_colors``).
"""
from __future__ import annotations

import numpy as np

from .backend import get_array_module, to_cpu


#: RGB → YIQ (NTSC, FCC) and RGB → YUV (BT.601); rows are output channels.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]], dtype=np.float64)
RGB_TO_YUV = np.array([[0.299, 0.587, 0.114],
                       [-0.14713, -0.28886, 0.436],
                       [0.615, -0.51499, -0.10001]], dtype=np.float64)


def _apply(matrix: np.ndarray, image):
    """``matrix`` (3, 3) applied to every pixel of a CHW image."""
    xp = get_array_module(image)
    m = xp.asarray(matrix, dtype=xp.float32)
    return xp.tensordot(m, image.astype(xp.float32), axes=1)


def to_space(image, space: str):
    """RGB CHW → ``"yiq"`` or ``"yuv"`` CHW (Y in [0, 255])."""
    return _apply(_matrix(space), image)


def from_space(image, space: str):
    """Inverse of :func:`to_space`."""
    return _apply(np.linalg.inv(_matrix(space)), image)


def _matrix(space: str) -> np.ndarray:
    if space == "yiq":
        return RGB_TO_YIQ
    if space == "yuv":
        return RGB_TO_YUV
    raise ValueError(f"colour space {space!r} is not 'yiq' or 'yuv'")


def luminance(image):
    """Y (BT.601 weights) of a CHW RGB image, shape (1, H, W)."""
    return to_space(image, "yiq")[:1]


def grey(image):
    """The luminance as a three-channel image (what the network sees in luminance mode)."""
    xp = get_array_module(image)
    return xp.repeat(luminance(image), 3, axis=0)


def match_luminance(style, content):
    """Grey style image whose luminance has the content's mean and standard deviation."""
    xp = get_array_module(style)
    ys, yc = luminance(style), luminance(content)
    scaled = (ys - ys.mean()) * (yc.std() / max(float(ys.std()), 1e-6)) + yc.mean()
    return xp.repeat(scaled, 3, axis=0).astype(xp.float32)


def combine_luminance(luma_image, color_image, space: str = "yiq"):
    """RGB image with the luminance of ``luma_image`` and the chroma of ``color_image``."""
    mixed = to_space(color_image, space)
    mixed[:1] = to_space(luma_image, space)[:1]
    return from_space(mixed, space).astype(mixed.dtype)


def _sym_power(cov: np.ndarray, power: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, 1e-6 * max(values.max(), 1e-12))
    return (vectors * values ** power) @ vectors.T


def color_transform(source, reference) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) such that ``A @ pixel + b`` gives ``source`` the colour mean and covariance
    of ``reference`` (both CHW RGB); computed in float64 on the CPU (3×3 maths)."""
    src = np.asarray(to_cpu(source), dtype=np.float64).reshape(3, -1)
    ref = np.asarray(to_cpu(reference), dtype=np.float64).reshape(3, -1)
    mu_s, mu_r = src.mean(axis=1), ref.mean(axis=1)
    a = _sym_power(np.cov(ref), 0.5) @ _sym_power(np.cov(src), -0.5)
    return a, mu_r - a @ mu_s


def match_histogram(source, reference):
    """``source`` with the colour mean and covariance of ``reference`` (clipped to [0, 255])."""
    xp = get_array_module(source)
    a, b = color_transform(source, reference)
    out = _apply(a, source) + xp.asarray(b, dtype=xp.float32).reshape(3, 1, 1)
    return xp.clip(out, 0, 255).astype(xp.float32)


def match_color(image, reference):
    """Give ``image`` the per-channel mean and standard deviation of ``reference``."""
    xp = get_array_module(image)
    mean_i, std_i = image.mean(axis=(1, 2), keepdims=True), image.std(axis=(1, 2), keepdims=True)
    mean_r, std_r = reference.mean(axis=(1, 2), keepdims=True), reference.std(axis=(1, 2), keepdims=True)
    return ((image - mean_i) * (std_r / xp.maximum(std_i, 1e-6)) + mean_r).astype(xp.float32)


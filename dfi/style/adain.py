"""Arbitrary style in one pass: AdaIN (Huang & Belongie 2017) with an encoder and a decoder.

encode content and styles to relu4_1 → :func:`~dfi.style.transforms.adain` (blends,
masks, α: :func:`~dfi.style.transforms.stylise_features`) → decode. Colour preservation:
``histogram`` gives each style image the content's colour mean and covariance before it is
encoded — the reference's CORAL (pytorch-AdaIN ``--preserve_color``); ``luminance`` /
``yuv`` as ``dfi style``. Any size: the content is padded by reflection to the encoder's
multiple (8 at relu4_1) and the result cropped back.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .. import _compat  # noqa: F401
import chainer

from ..core.backend import to_cpu, using_device
from ..core.color import combine_luminance, grey, match_histogram, match_luminance
from ..core.errors import SettingError
from ..core.image import pad_to_multiple, resize
from ..core.settings import PRESERVE_COLOR
from .transforms import adain, stylise_features

LAYER = "conv4_1"
MULTIPLE = 8


def feature_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A content mask (H, W) in [0, 1] (foreground where ≥ 0.5), resized to a feature map."""
    small = resize(np.asarray(mask, np.float32)[None] * 255.0, shape)[0] / 255.0
    return small >= 0.5


#: floats per pixel of the widest full-resolution maps a one-pass transfer holds, per
#: channel: the map, its padded copy and the Winograd tiles in and out (BENCHMARKS.md: 2.6–2.9
#: KB per pixel measured at 512² and 1024² for AdaIN's 64 channels)
FLOATS_PER_CHANNEL = 10


def transfer_bytes(encoder, decoder, shape: tuple[int, int]) -> int:
    """Memory one AdaIN transfer of a ``shape`` (H, W) content needs beyond the weights:
    the widest full-resolution layer of the encoder or the decoder, ×
    :data:`FLOATS_PER_CHANNEL` floats per pixel and channel."""
    from ..nets.decoder import conv_channels

    widest = max(encoder.params["conv1_1"][0].shape[0], max(c_in for _, c_in, _, _, _ in conv_channels(decoder.spec)[-2:]))
    height, width = (-(-d // MULTIPLE) * MULTIPLE for d in shape)
    return 4 * FLOATS_PER_CHANNEL * widest * height * width


def check_transfer_memory(encoder, decoder, shape: tuple[int, int]) -> None:
    """Refuse a size whose :func:`transfer_bytes` will not fit on the encoder's device,
    naming the largest long side that would."""
    from ..core.backend import available_memory
    from ..core.memory import format_bytes

    need, free = transfer_bytes(encoder, decoder, shape), available_memory(encoder.device)
    if need <= free:
        return
    scale = (free / need) ** 0.5
    long_side = int(max(shape) * scale) // MULTIPLE * MULTIPLE
    raise MemoryError(f"a {shape[1]}×{shape[0]} transfer needs about {format_bytes(need)}, but only "
                      f"{format_bytes(free)} is free; the largest --size that fits is about {long_side}")


def encode_styles(encoder, styles: Sequence[np.ndarray]) -> list:
    """The relu4_1 features of each style image, on the encoder's device (encode once,
    stylise many contents: ``adain_transfer(…, style_features=…)``)."""
    device = encoder.device
    with using_device(device), chainer.no_backprop_mode():
        return [encoder.features(device.send(np.ascontiguousarray(im[None], np.float32)), [LAYER])[LAYER][0]
                for im in styles]


def adain_transfer(encoder, decoder, content: np.ndarray, styles: Sequence[np.ndarray], *, alpha: float = 1.0,
                   weights: Optional[Sequence[float]] = None, mask: Optional[np.ndarray] = None,
                   preserve_color: str = "none", style_features: Optional[Sequence] = None) -> np.ndarray:
    """``content`` (CHW RGB [0, 255]) in the style of ``styles``; ``decoder`` a
    :class:`~dfi.nets.decoder.FastDecoder` of relu4_1, ``encoder`` an
    :class:`~dfi.nets.encoder.Encoder`, both on one device; ``style_features``: the
    styles' :func:`encode_styles`, if already made (then ``styles`` may be empty, and
    ``histogram`` / ``luminance`` are refused: they change the style images per content).
    Returns CHW [0, 255] float32 (CPU) of the content's size."""
    if preserve_color not in PRESERVE_COLOR:
        raise SettingError(f"--preserve-color {preserve_color!r} is not one of {', '.join(PRESERVE_COLOR)}")
    if not styles and style_features is None:
        raise SettingError("give at least one STYLE image")
    if style_features is not None and preserve_color in ("histogram", "luminance"):
        raise SettingError(f"--preserve-color {preserve_color} recolours the style images for each content: "
                           "encode them per content")
    if preserve_color == "histogram":  # CORAL: the style's colours matched to the content's
        styles = [match_histogram(s, content) for s in styles]
    elif preserve_color == "luminance":
        styles = [match_luminance(s, content) for s in styles]
    source = grey(content) if preserve_color == "luminance" else content
    device = encoder.device
    height, width = content.shape[1:]
    s = encode_styles(encoder, styles) if style_features is None else list(style_features)
    with using_device(device), chainer.no_backprop_mode():
        c = encoder.features(device.send(pad_to_multiple(source, MULTIPLE)[None].astype(np.float32)), [LAYER])[LAYER][0]
        small = None if mask is None else device.send(feature_mask(mask, c.shape[1:]))
        target = stylise_features(c, s, adain, alpha=alpha, weights=weights, mask=small)
        out = decoder({LAYER: target[None]}, pad_to_multiple(content, MULTIPLE).shape[1:])
        image = np.asarray(to_cpu(out), np.float32)[0, :, :height, :width]
    if preserve_color in ("luminance", "yuv"):
        image = combine_luminance(grey(image) if preserve_color == "luminance" else image, content,
                                  "yiq" if preserve_color == "luminance" else "yuv")
    return np.clip(image, 0, 255).astype(np.float32)

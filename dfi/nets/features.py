"""Feature extraction in batches, without building a graph; streaming means."""
from __future__ import annotations

from typing import Iterable, Sequence

from .. import _compat  # noqa: F401
import chainer

from ..core.image import preprocess
from .vgg import VGG19


def extract(net: VGG19, images, layers: Sequence[str], *, batch_size: int = 8) -> dict:
    """Features of RGB [0, 255] images (N, 3, H, W) on ``net``'s device.

    Returns:
        ``{layer: array (N, C, h, w)}`` float32, on the images' device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    xp = chainer.backend.get_array_module(images)
    chunks: dict[str, list] = {name: [] for name in layers}
    with chainer.no_backprop_mode(), chainer.using_config("train", False):
        for start in range(0, images.shape[0], batch_size):
            feats = net.pick(preprocess(images[start:start + batch_size], net.convention), layers)
            for name in layers:
                chunks[name].append(feats[name].array)
    return {name: xp.concatenate(parts) for name, parts in chunks.items()}


def mean_features(net: VGG19, batches: Iterable, layers: Sequence[str], *,
                  batch_size: int = 8) -> tuple[dict, int]:
    """Mean features over an iterable of image batches (N_i, 3, H, W), in one pass.

    Only the running sums are kept, so memory does not grow with the number of images.

    Returns:
        (``{layer: array (1, C, h, w)}``, number of images).
    """
    sums, count = None, 0
    for batch in batches:
        feats = extract(net, batch, layers, batch_size=batch_size)
        part = {name: value.sum(axis=0, keepdims=True) for name, value in feats.items()}
        sums = part if sums is None else {name: sums[name] + part[name] for name in layers}
        count += batch.shape[0]
    if count == 0:
        raise ValueError("mean of no images: the image list is empty")
    return {name: value / count for name, value in sums.items()}, count

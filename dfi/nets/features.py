"""Feature extraction in batches, without building a graph."""
from __future__ import annotations

from typing import Sequence

from .. import _compat  # noqa: F401
import chainer

from ..core.backend import get_array_module, using_device

from ..core.image import preprocess
from .vgg import VGG19


def extract(net: VGG19, images, layers: Sequence[str], *, batch_size: int = 8) -> dict:
    """Features of RGB [0, 255] images (N, 3, H, W) on ``net``'s device, made current for
    the call (whichever thread calls: a page's worker, a library user's).

    Returns:
        ``{layer: array (N, C, h, w)}`` float32, on the images' device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    xp = get_array_module(images)
    chunks: dict[str, list] = {name: [] for name in layers}
    with using_device(net.device), chainer.no_backprop_mode(), chainer.using_config("train", False):
        for start in range(0, images.shape[0], batch_size):
            feats = net.pick(preprocess(images[start:start + batch_size], net.convention), layers)
            for name in layers:
                chunks[name].append(feats[name].array)
        return {name: xp.concatenate(parts) for name, parts in chunks.items()}


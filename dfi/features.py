"""Feature extraction in batches, without building a graph; streaming means."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from . import _compat  # noqa: F401
import chainer

from data_tools.fsutil import atomic_path

from .backend import to_cpu
from .image import preprocess
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


class FeatureCache:
    """Per-image features on disk (float16 npz), so neighbours are not recomputed.

    A cached entry is keyed by the network, layers, working size, crop, and the image's
    absolute path, size and modification time: changing any of them misses the cache.
    At 200² with conv3_1/conv4_1/conv5_1 an entry is about 2 MB.
    """

    def __init__(self, root: str | os.PathLike, *, net_name: str, layers: Sequence[str],
                 size: int, crop):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.layers = list(layers)
        self._context = f"{net_name}|{','.join(layers)}|{size}|{crop}"

    def _file(self, image_path: Path) -> Path:
        stat = image_path.stat()
        key = f"{self._context}|{image_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        return self.root / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"

    def get(self, image_path: Path) -> Optional[dict]:
        """``{layer: float32 array (1, C, h, w)}`` on the CPU, or None."""
        path = self._file(image_path)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return {name: data[name].astype(np.float32)[None] for name in self.layers}
        except (OSError, KeyError, ValueError):
            return None  # unreadable entry: recompute (it will be overwritten)

    def put(self, image_path: Path, feats: dict) -> None:
        """Store one image's features (arrays (1, C, h, w) on any device), atomically."""
        arrays = {name: to_cpu(feats[name])[0].astype(np.float16)
                  for name in self.layers}
        with atomic_path(self._file(image_path), suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

"""Neighbour features on disk, so that repeated edits do not recompute them."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from data_tools.fsutil import atomic_path

from ..core.backend import to_cpu


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

"""The feature store: every indexed face's features in one chunked Zarr store
(``dfi data features``), read by ``edit``, ``sweep`` and ``batch`` with
``--feature-store`` instead of recomputing the neighbours' features.

Layout: one array per layer, (faces, C, h, w) in the store's dtype, sharded by blocks of
faces (one file per block and layer, one face per inner chunk so that a face is read
alone); ``done`` marks the blocks written (one chunk each); the attributes record the
network, layers, working size, crop, images root and the faces' index paths in order.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..core.errors import SettingError

KIND = "dfi-feature-store"
DTYPES = ("float16", "float32")


def store_settings(net_name: str, layers: Sequence[str], size: int, crop) -> dict:
    """What features in a store depend on; a store is used only when these agree."""
    return {"net": net_name, "layers": list(layers), "size": int(size), "crop": [int(v) for v in crop]}


def _zarr():
    try:
        import zarr
    except ImportError:
        raise ImportError("the feature store needs Zarr: pip install 'dfi[cluster]'") from None
    return zarr


def create_store(path: str | os.PathLike, settings: dict, paths: Sequence[str], images_root,
                 shapes: dict, *, dtype: str = "float16", block: int = 16):
    """Make an empty store (a Zarr group) for ``paths``; returns the group."""
    zarr = _zarr()

    if dtype not in DTYPES:
        raise SettingError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    group = zarr.open_group(str(path), mode="w")
    count = len(paths)
    for name in settings["layers"]:
        shape = (count, *shapes[name])
        group.create_array(name, shape=shape, dtype=dtype, chunks=(1, *shapes[name]),
                           shards=(block, *shapes[name]), fill_value=0)
    group.create_array("done", shape=(-(-count // block),), chunks=(1,), dtype="bool", fill_value=False)
    group.attrs.update({"kind": KIND, **settings, "dtype": dtype, "block": block,
                        "images_root": str(images_root), "paths": list(paths)})
    return group


def open_store(path: str | os.PathLike, mode: str = "r"):
    """The Zarr group of a store, checked to be one."""
    zarr = _zarr()

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"--feature-store {path}: no such store (make one with 'dfi data features')")
    try:
        group = zarr.open_group(str(path), mode=mode)
        kind = group.attrs.get("kind")
    except Exception as exc:  # zarr raises several types for a folder that is not a store
        raise ValueError(f"--feature-store {path} is not a Zarr store ({exc})".splitlines()[0]) from None
    if kind != KIND:
        raise ValueError(f"--feature-store {path} is not a dfi feature store")
    return group


def mismatch(group, settings: dict) -> Optional[str]:
    """The first setting that differs between a store and what a run needs, or None."""
    for key in ("net", "size", "crop"):
        if group.attrs.get(key) != settings[key]:
            return f"{key} {group.attrs.get(key)!r}, not {settings[key]!r}"
    missing = [name for name in settings["layers"] if name not in group.attrs.get("layers", [])]
    return f"no layer {missing[0]}" if missing else None


class FeatureStore:
    """Reads neighbours' features from a store (the ``get`` / ``put`` of
    :class:`~dfi.edit.cache.FeatureCache`; faces it lacks are computed, not added)."""

    def __init__(self, path: str | os.PathLike, *, net_name: str, layers: Sequence[str], size: int, crop):
        self.group = open_store(path)
        self.layers = list(layers)
        problem = mismatch(self.group, store_settings(net_name, layers, size, crop))
        if problem:
            raise SettingError(f"--feature-store {path} was made with {problem}; "
                               "make one with the same --weights, --layers, --size")
        self.root = Path(self.group.attrs["images_root"]).resolve()
        self.rows = {p: i for i, p in enumerate(self.group.attrs["paths"])}
        self.block = int(self.group.attrs["block"])
        self.done = np.asarray(self.group["done"][:], dtype=bool)
        self.arrays = {name: self.group[name] for name in self.layers}

    def get(self, image_path: Path) -> Optional[dict]:
        """``{layer: float32 (1, C, h, w)}`` of an image under the store's images root, or None."""
        try:
            rel = Path(image_path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return None
        row = self.rows.get(rel)
        if row is None or not self.done[row // self.block]:
            return None
        return {name: np.asarray(array[row:row + 1], dtype=np.float32) for name, array in self.arrays.items()}

    def put(self, image_path: Path, feats: dict) -> None:
        """Nothing: the store is written only by ``dfi data features``."""


class _Backed:
    """A feature store backed by a cache folder: read the store, then the cache; write the cache."""

    def __init__(self, store: FeatureStore, cache):
        self.store, self.cache = store, cache

    def get(self, image_path: Path) -> Optional[dict]:
        found = self.store.get(image_path)
        return found if found is not None else self.cache.get(image_path)

    def put(self, image_path: Path, feats: dict) -> None:
        self.cache.put(image_path, feats)


def backed(store: FeatureStore, cache=None):
    """``store``, or ``store`` backed by a :class:`~dfi.edit.cache.FeatureCache`."""
    return store if cache is None else _Backed(store, cache)

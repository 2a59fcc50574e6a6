"""``dfi data features``: every indexed face's features computed on the cluster into a
feature store (:mod:`dfi.edit.store`).

The store is built as ``STORE.partial`` and renamed to ``STORE`` when every block is
written, so a store at ``STORE`` is always whole; an interrupted build resumes from the
blocks marked done. Each task computes one block of faces and writes whole shards, so
workers never write the same file.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..core.backend import to_cpu
from ..core.errors import SettingError
from ..edit.pipeline import EditConfig, load_working
from ..edit.store import create_store, mismatch, open_store, store_settings
from ..nets.features import extract
from .cluster import cached_vgg


def feature_block(task: dict) -> dict:
    """Compute and write one block of the store (runs on a worker)."""
    group = open_store(task["store"], mode="r+")
    block, size = int(group.attrs["block"]), int(group.attrs["size"])
    start = task["block"] * block
    paths = group.attrs["paths"][start:start + block]
    net = cached_vgg(task["weights"], task["device"], task["seed"], task["data_dir"])
    config = EditConfig(size=size, crop=tuple(group.attrs["crop"]), layers=tuple(group.attrs["layers"]))
    images = load_working(Path(group.attrs["images_root"]), paths, config)
    feats = extract(net, net.device.send(images), config.layers, batch_size=task["batch_size"])
    for name in config.layers:
        group[name][start:start + len(paths)] = to_cpu(feats[name]).astype(group[name].dtype)
    group["done"][task["block"]] = True
    return {"block": task["block"], "faces": len(paths)}


def layer_shapes(net, layers, size: int) -> dict:
    """{layer: (channels, h, w)} of ``layers``, in their order, for a ``size``² input of ``net``."""
    shapes = {name: (c_out, h, w) for name, _, c_out, h, w in net.layer_shapes((size, size), layers)}
    return {name: shapes[name] for name in layers}


def build_store(client, index, store: Path, identity: str, shapes: dict, size: int, *, weights: str,
                device: str, seed: int, data_dir: Optional[str], dtype: str = "float16", block: int = 16,
                batch_size: int = 8, progress: Optional[Callable[[int], object]] = None) -> dict:
    """Features of every face of ``index`` (an :class:`~data_tools.index.Index`) into ``store`` on ``client``'s workers.

    ``identity`` (:attr:`VGG19.identity`) names the weights and ``shapes`` gives each
    layer's (:func:`layer_shapes`); the driver holds no network: each worker loads its own
    from ``weights``/``device``/``seed``. Returns counts for the record.
    """
    from distributed import as_completed

    crop = EditConfig().crop
    layers = tuple(shapes)
    settings = store_settings(identity, layers, size, crop)
    if store.exists():
        group = open_store(store)
        problem = mismatch(group, settings)
        if problem or group.attrs.get("dtype") != dtype:
            raise SettingError(f"--store {store} exists with other settings ({problem or 'dtype'}); "
                               "remove it or choose another path")
        return {"faces": len(group.attrs["paths"]), "computed": 0}
    partial = store.with_name(store.name + ".partial")
    paths = [str(p) for p in index.table["path"]]
    if partial.exists():
        group = open_store(partial, mode="r+")
        if mismatch(group, settings) or group.attrs.get("paths") != paths or group.attrs.get("dtype") != dtype:
            raise SettingError(f"{partial} is an unfinished store with other settings or faces; remove it")
        block = int(group.attrs["block"])
    else:
        group = create_store(partial, settings, paths, index.images_root, shapes, dtype=dtype, block=block)
    done = np.asarray(group["done"][:], dtype=bool)
    pending = [b for b in range(len(done)) if not done[b]]
    if progress is not None:
        progress(int(min(len(paths), (len(done) - len(pending)) * block)))
    task = {"store": str(partial), "weights": weights, "device": device,
            "seed": seed, "data_dir": data_dir, "batch_size": batch_size}
    futures = [client.submit(feature_block, dict(task, block=b), key=f"dfi-features-{b}", pure=False)
               for b in pending]
    # (results through the client's own loop, as the row runner takes them; a failing block
    # raises here and stops the build: the store would have a hole)
    for _, result in as_completed(futures, with_results=True):
        if progress is not None:
            progress(result["faces"])
    if os.path.exists(store):  # made meanwhile by someone else: keep theirs
        shutil.rmtree(partial)
    else:
        os.replace(partial, store)
    return {"faces": len(paths), "computed": len(pending)}

"""Attribute vectors: w = mean φ(targets) − mean φ(sources), scalings, save / load.

Scalings (``../shared/anchors.md``), and the range of α each one means:

* ``norm`` (default): per layer ‖φ_l(x)‖ · w_l / ‖w_l‖ (chainer-dfi, the article dfi
  follows), so α is the fraction of the input's own feature norm the edit moves by:
  α 0.1–0.5, independent of the weights, the layers and the dataset.
* ``beta``: w / mean(w²) over all layers (the official code's ``--scaling beta``; its
  default δ is 0.4): α about 0.2–0.6.
* ``none``: w as it is; the target is φ(x) + α·w (Upchurch et al. 2017). The right α
  depends on the weights and the data: the official code notes that δ 0.4 with beta
  equals about 3.5 × the raw w on LFW with the normalised VGG-19, so α about 1–4 there.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from data_tools.fsutil import atomic_path

from ..core.backend import get_array_module, to_cpu
from ..core.errors import SettingError
from .settings import SCALINGS


def attribute_vector(src_mean: Mapping, tgt_mean: Mapping) -> dict:
    """``{layer: tgt_mean − src_mean}`` (arrays (1, C, h, w), same device)."""
    return {name: tgt_mean[name] - src_mean[name] for name in tgt_mean}


def combine(vectors: Sequence[Mapping]) -> dict:
    """Sum of several attribute vectors (several attributes edited at once)."""
    out = dict(vectors[0])
    for vector in vectors[1:]:
        out = {name: out[name] + vector[name] for name in out}
    return out


def scale_vector(vector: Mapping, input_feats: Mapping, mode: str) -> dict:
    """Apply a scaling mode (see the module docstring); returns a new dict."""
    if mode == "none":
        return dict(vector)
    if mode == "beta":
        xp = get_array_module(next(iter(vector.values())))
        total = sum(float((value * value).sum()) for value in vector.values())
        count = sum(value.size for value in vector.values())
        mean_sq = total / max(count, 1)
        if mean_sq == 0:
            raise ValueError("scaling 'beta' of a zero attribute vector")
        return {name: value / xp.float32(mean_sq) for name, value in vector.items()}
    if mode == "norm":
        out = {}
        for name, value in vector.items():
            xp = get_array_module(value)
            w_norm = float(xp.sqrt((value * value).sum()))
            x_norm = float(xp.sqrt((input_feats[name][:1] ** 2).sum()))
            if w_norm == 0:
                raise ValueError(f"scaling 'norm': the attribute vector is zero at {name}")
            out[name] = value * xp.float32(x_norm / w_norm)
        return out
    raise SettingError(f"--scaling {mode!r} is not one of {', '.join(SCALINGS)}")


def target_features(input_feats: Mapping, vector: Mapping, alphas: Sequence[float]) -> dict:
    """Stack φ(x) + α·w for every α: ``{layer: array (len(alphas), C, h, w)}``."""
    out = {}
    for name, base in input_feats.items():
        xp = get_array_module(base)
        alpha = xp.asarray(list(alphas), dtype=xp.float32).reshape(-1, 1, 1, 1)
        out[name] = (base[:1] + alpha * vector[name]).astype(xp.float32)
    return out


def save_vector(path: str | os.PathLike, vector: Mapping, meta: Mapping) -> None:
    """Write an attribute vector (npz, one array per layer) with a JSON record, atomically."""
    arrays = {name: to_cpu(value) for name, value in vector.items()}
    arrays["__meta__"] = np.array(json.dumps(dict(meta)))
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def load_vector(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read a vector written by :func:`save_vector` → (``{layer: array}``, meta)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--vector {path}: no such file")
    foreign = f"--vector {path}: not an attribute vector (an .npz of one array per layer, written by --save-vector)"
    if not zipfile.is_zipfile(path):  # (NumPy would suggest allow_pickle for any other bytes: never)
        raise ValueError(foreign)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"])) if "__meta__" in data.files else {}
            vector = {name: data[name] for name in data.files if name != "__meta__"}
    except (ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ValueError(f"{foreign}; {type(exc).__name__}") from None
    if not vector or any(value.dtype.kind != "f" for value in vector.values()):
        raise ValueError(f"{foreign}; it holds {', '.join(vector) or 'no arrays'}")
    return vector, meta

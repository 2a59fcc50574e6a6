"""Training a Chainer link: one optimiser step on weighted loss terms, and checkpoints (the
link, its optimiser's state and the step in one npz written atomically, read back exactly:
a resumed run ends where an uninterrupted one does)."""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from .. import _compat  # noqa: F401
import chainer

from data_tools.fsutil import atomic_path

from .backend import to_cpu


def optimiser_step(link: chainer.Link, optimizer: chainer.Optimizer, terms: Mapping, xp) -> tuple[dict, float]:
    """Minimise the sum of the terms' means (each term one value per image) by one step;
    returns ({term: mean}, total) as host floats, read in one wait for the device."""
    import chainer.functions as F

    means = [F.mean(term) for term in terms.values()]
    loss = sum(means)
    link.cleargrads()
    loss.backward()
    optimizer.update()
    values = xp.stack([m.array for m in (*means, loss)]).tolist()  # the one wait
    return dict(zip(terms, values[:-1])), values[-1]


def save_training(path: str | os.PathLike, name: str, link: chainer.Link, optimizer: chainer.Optimizer,
                  step: int, extra: Mapping[str, int] = ()) -> None:
    """``link`` (under ``name``), ``optimizer``, ``step`` and small integers ``extra``."""
    serializer = chainer.serializers.DictionarySerializer()
    link.serialize(serializer[name])
    optimizer.serialize(serializer["optimizer"])
    state = dict(serializer.target, step=np.array(step), **{k: np.array(v) for k, v in dict(extra).items()})
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **{k: v if isinstance(v, np.ndarray) else to_cpu(v) for k, v in state.items()})


def load_training(path: str | os.PathLike, name: str, link: chainer.Link, optimizer: chainer.Optimizer,
                  check=None) -> int:
    """Read what :func:`save_training` wrote into ``link`` and ``optimizer``; returns the
    step. ``check(data)`` may refuse the file before anything is read into them."""
    with np.load(path) as data:
        if check is not None:
            check(data)
        deserializer = chainer.serializers.NpzDeserializer(data)
        link.serialize(deserializer[name])
        optimizer.serialize(deserializer["optimizer"])
        return int(data["step"])

"""Training an AdaIN decoder (Huang & Belongie 2017, as pytorch-AdaIN's ``train.py``).

For a content crop c and a style crop s: t = AdaIN(f(c), f(s)) at relu4_1, g = D(t); the
loss is ‖f(g)₄ − t‖² (content, a mean) plus ``style_weight`` · Σ over relu1_1 … relu4_1 of
‖μ(f(g)) − μ(f(s))‖² + ‖σ(f(g)) − σ(f(s))‖² (means), with σ the *unbiased* std + 1e-5 of
the reference; Adam at lr / (1 + decay · step). Images are resized to twice the crop on
the short side, then cropped at random (the reference: 512, then 256). Every step's draws
come from (seed, step) alone, so a resumed run ends where an uninterrupted one does.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .. import _compat  # noqa: F401
import chainer
import chainer.functions as F

from ..core.backend import using_device
from ..core.errors import SettingError
from ..core.image import read_ahead, read_training_image, resize
from ..core.memory import check_columns
from ..core.training import load_training, optimiser_step, save_training
from ..nets.decoder import column_elements
from ..nets.encoder import ADAIN_LAYERS
from .settings import AdainTrainConfig  # noqa: F401  (its home is settings: no Chainer there)

EPS = 1e-5


@dataclass
class AdainStep:
    step: int
    terms: dict = field(default_factory=dict)
    loss: float = 0.0


def _crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Short side to 2·size, then a random size² crop."""
    height, width = image.shape[1:]
    scale = 2 * size / min(height, width)
    image = resize(image, (max(size, round(height * scale)), max(size, round(width * scale))))
    top = rng.integers(0, image.shape[1] - size + 1)
    left = rng.integers(0, image.shape[2] - size + 1)
    return image[:, top:top + size, left:left + size]


def _mean_std(h):
    n, c = h.shape[:2]
    flat = F.reshape(h, (n, c, -1))
    mean = F.mean(flat, axis=2)
    centred = flat - F.broadcast_to(F.expand_dims(mean, 2), flat.shape)
    var = F.sum(centred * centred, axis=2) / (flat.shape[2] - 1) + EPS
    return mean, F.sqrt(var)


def adain_target(content, style):
    """AdaIN(content, style) of (N, C, h, w) features (Variables or arrays), per image."""
    (cm, cs), (sm, ss) = _mean_std(content), _mean_std(style)

    def b(v):
        return F.broadcast_to(F.reshape(v, v.shape + (1, 1)), content.shape)
    return (content - b(cm)) / b(cs) * b(ss) + b(sm)


class AdainTrainer:
    """Trains ``decoder`` (a :class:`~dfi.nets.decoder.Decoder` of relu4_1) through
    ``encoder`` (fixed) on content and style images."""

    def __init__(self, encoder, decoder, contents: Sequence[Path], styles: Sequence[Path], config: AdainTrainConfig):
        if not contents or not styles:
            raise SettingError("AdaIN training needs content images and style images")
        if encoder.device.xp is not np:  # Chainer's graph for both, by im2col with 32-bit offsets on a GPU
            check_columns(lambda s, b: {**encoder.column_elements(s, b, ADAIN_LAYERS),
                                        **column_elements(decoder.spec, s, b)}, config.size, config.batch_size,
                          decoder.spec.multiple)
        self.encoder, self.decoder, self.config = encoder, decoder, config
        self.contents, self.styles = list(contents), list(styles)
        self.optimizer = chainer.optimizers.Adam(alpha=config.lr)
        self.optimizer.setup(decoder)
        self.step = 0

    def batch_for(self, step: int):
        rng = np.random.default_rng([self.config.seed, step])
        size, count = self.config.size, self.config.batch_size
        pick = list(zip(rng.integers(len(self.contents), size=count), rng.integers(len(self.styles), size=count)))
        return (np.stack([_crop(read_training_image(self.contents, i), size, rng) for i, _ in pick]),
                np.stack([_crop(read_training_image(self.styles, j), size, rng) for _, j in pick]))

    def loss_terms(self, contents, styles) -> dict:
        encoder, layers = self.encoder, ADAIN_LAYERS
        with chainer.no_backprop_mode():
            c = encoder.pick(contents, [layers[-1]])[layers[-1]].array
            s = encoder.pick(styles, layers)
            s = {n: v.array for n, v in s.items()}
            target = adain_target(c, s[layers[-1]]).array
        decoded = self.decoder({layers[-1]: target}, contents.shape[2:], clip=False)  # (as the reference scores it)
        got = encoder.pick(decoded, layers)
        n = contents.shape[0]
        content = F.mean(F.reshape((got[layers[-1]] - target) ** 2, (n, -1)), axis=1)
        style = 0
        for name in layers:
            (gm, gs), (sm, ss) = _mean_std(got[name]), _mean_std(s[name])
            style = style + F.mean((gm - sm) ** 2, axis=1) + F.mean((gs - ss) ** 2, axis=1)
        return {"content": content, "style": self.config.style_weight * style}

    def run(self, until: int) -> Iterator[AdainStep]:
        device = self.encoder.device
        loads = [functools.partial(self.batch_for, step) for step in range(self.step, until)]
        for contents, styles in read_ahead(loads):
            with using_device(device):
                self.step += 1
                self.optimizer.alpha = self.config.lr / (1.0 + self.config.lr_decay * (self.step - 1))
                terms, total = optimiser_step(self.decoder, self.optimizer,
                                              self.loss_terms(device.send(contents), device.send(styles)), device.xp)
            yield AdainStep(self.step, terms, total)

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        save_training(path, "decoder", self.decoder, self.optimizer, self.step)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        self.step = load_training(path, "decoder", self.decoder, self.optimizer)

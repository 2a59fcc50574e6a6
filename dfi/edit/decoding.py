"""A trained feature decoder for DFI: training it on DFI's own objective, and using it.

Training (Facelet-Bank's recipe, on dfi's losses): for a face x of the dataset and a target
t — its own features φ(x), or an edit of them φ(x) + s·‖φ(x)‖·ŵ along a unit attribute
direction ŵ of the index with s drawn from the default norm scaling's α range — minimise

    feature(φ(y), t) + λ_pixel · ‖D(φ(x)) − x‖² / 255² + λ_TV · TV(y)

with the feature loss of ``dfi edit`` (the mean over layers), so the decoder is good where
edits live. y is D(t) (objective ``direct``, the default, Facelet-Bank's way), or for an
edited target what edits use, the decoded change added to the face, x + D(t) − D(φ(x))
(objective ``residual``). Every step draws its faces, targets and strengths from (seed, step) alone: a
run resumed from a checkpoint ends exactly where an uninterrupted one does.

Use: :func:`inference_decoder` readies a loaded decoder for a network; :func:`decoded_starts` gives each α row x + D(t_α) − D(φ(x)) (the decoded *change* added
to the input): without optimisation the one-pass result; L-BFGS starts from the share of that
change whose objective is lowest (:func:`scaled_starts`), never from worse than x.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np

from .. import _compat  # noqa: F401
import chainer
import chainer.functions as F

from ..core.backend import get_array_module, to_cpu, using_device
from ..core.errors import SettingError
from ..core.image import crop_and_resize, preprocess, read_ahead, read_training_image
from ..core.training import load_training, optimiser_step, save_training
from ..core.losses import feature_loss, network_input, total_variation
from ..core.memory import check_columns
from ..core.reconstruct import evaluate
from ..nets.decoder import Decoder, FastDecoder, check_decoder_layers, check_decoder_vgg, column_elements
from ..nets.features import extract
from ..nets.vgg import VGG19
from .settings import DecoderTrainConfig  # noqa: F401  (its home is settings; no Chainer there)


@dataclass
class DecoderStep:
    """One training step: its number (from 1), its loss terms and total (host floats)."""

    step: int
    terms: dict = field(default_factory=dict)
    loss: float = 0.0


def feature_scales(vgg: VGG19, images: np.ndarray, layers: Sequence[str]) -> dict:
    """{layer: RMS of its features} over ``images`` (the decoder's input scales)."""
    feats = extract(vgg, vgg.device.send(images), layers)
    return {name: max(float(np.sqrt((to_cpu(feats[name]) ** 2).mean())), 1e-12) for name in layers}


def attribute_directions(vgg: VGG19, images: np.ndarray, scores: np.ndarray, layers: Sequence[str]) -> np.ndarray:
    """Unit attribute directions ŵ per layer (flattened over all layers, one row per
    attribute with faces on both sides): mean φ(present) − mean φ(absent), each layer
    divided by its norm. ``images`` (N, 3, S, S) working crops, ``scores`` (N, A)."""
    feats = extract(vgg, vgg.device.send(images), layers)
    rows = []
    for column in range(scores.shape[1]):
        present, absent = scores[:, column] > 0.5, scores[:, column] < -0.5
        if present.sum() < 2 or absent.sum() < 2:
            continue
        parts = []
        for name in layers:
            host = to_cpu(feats[name])
            w = host[present].mean(axis=0) - host[absent].mean(axis=0)
            parts.append((w / max(float(np.sqrt((w * w).sum())), 1e-12)).reshape(-1))
        rows.append(np.concatenate(parts))
    if not rows:
        raise SettingError("the index has no attribute with two faces on each side to learn edits from")
    return np.stack(rows).astype(np.float32)


class DecoderTrainer:
    """Trains ``decoder`` on ``vgg``'s features of the images ``files`` (working crops at
    ``config.size``), with Adam; ``directions`` from :func:`attribute_directions`."""

    def __init__(self, vgg: VGG19, decoder: Decoder, files: Sequence[Path], directions: np.ndarray,
                 config: DecoderTrainConfig, *, crop: Optional[tuple] = None):
        if vgg.device.xp is not np:  # Chainer trains the decoder by im2col, with 32-bit offsets on a GPU
            check_columns(lambda s, b: column_elements(decoder.spec, s, config.decodes_per_image * b), config.size,
                          config.batch_size, decoder.spec.multiple)
        self.vgg, self.decoder, self.files, self.config = vgg, decoder, list(files), config
        self.crop = crop
        with using_device(vgg.device):
            self.directions = vgg.device.send(directions)
        self.optimizer = chainer.optimizers.Adam(alpha=config.lr)
        self.optimizer.setup(decoder)
        self.step = 0

    def batch_for(self, step: int):
        """The images (N, 3, S, S) and edits of ``step``: drawn from (seed, step) alone."""
        config = self.config
        rng = np.random.default_rng([config.seed, step])
        picks = rng.integers(len(self.files), size=config.batch_size)
        size = (config.size, config.size)
        images = np.stack([crop_and_resize(read_training_image(self.files, i), self.crop, size) for i in picks])
        edited = rng.random(config.batch_size) < config.edited
        which = rng.integers(len(self.directions), size=config.batch_size)
        strength = rng.uniform(*config.strengths, size=config.batch_size) * rng.choice([-1.0, 1.0], config.batch_size)
        return images, np.where(edited, strength, 0.0).astype(np.float32), which

    def targets(self, feats: Mapping, strengths, which):
        """φ(x) + s·‖φ_l(x)‖·ŵ_l per layer (s = 0 for plain targets), on the device."""
        if not np.any(strengths):
            return dict(feats)
        xp = get_array_module(next(iter(feats.values())))
        directions = self.directions[xp.asarray(which)]
        out, start = {}, 0
        for name in self.config.layers:
            base = feats[name]
            count = int(np.prod(base.shape[1:]))
            w = directions[:, start:start + count].reshape(base.shape)
            start += count
            norm = xp.sqrt((base * base).reshape(base.shape[0], -1).sum(axis=1))
            out[name] = base + (xp.asarray(strengths) * norm).reshape(-1, 1, 1, 1) * w
        return out

    def loss_terms(self, images, strengths, which) -> dict:
        """The weighted terms (Variables, one value per image) for images on the device.

        A plain target is decoded directly (feature and pixel loss on D(φ(x))); an edited
        one, with the ``residual`` objective, as edits use it: x + D(t) − D(φ(x)) (the
        decoder's change, added to the face), with the ``direct`` one as D(t)."""
        config, vgg, layers = self.config, self.vgg, self.config.layers
        with chainer.no_backprop_mode(), chainer.using_config("train", False):
            feats = {n: v.array for n, v in vgg.pick(preprocess(images, vgg.convention), layers).items()}
        targets = self.targets(feats, strengths, which)
        xp, size, count = get_array_module(images), images.shape[2:], images.shape[0]
        edited = np.flatnonzero(np.asarray(strengths) != 0)
        residual = config.objective == "residual" and len(edited)
        if residual:  # one decoder pass over the targets and the edited faces' own features
            rows = xp.asarray(edited)
            decoded = self.decoder({n: xp.concatenate([targets[n], feats[n][rows]]) for n in layers}, size)
            own = np.arange(count)  # row r's D(φ(x)): its own decode if plain, else the extra one
            own[edited] = count + np.arange(len(edited))
            mask = xp.asarray((np.asarray(strengths) != 0).astype(np.float32).reshape(-1, 1, 1, 1))
            shown = decoded[:count] + mask * (images - decoded[xp.asarray(own)])
        else:
            decoded = self.decoder(targets, size)
            shown = decoded[:count]
        with chainer.using_config("train", False):
            got = vgg.pick(network_input(shown, vgg.convention), layers)
        plain = xp.asarray((np.asarray(strengths) == 0).astype(np.float32))
        pixel = F.mean(F.reshape((decoded[:count] - images) / 255.0, (count, -1)) ** 2, axis=1) * plain
        return {"feature": feature_loss(got, targets), "pixel": config.pixel_weight * pixel,
                "tv": config.tv_weight * total_variation(shown)}

    def run(self, until: int) -> Iterator[DecoderStep]:
        """Train up to step ``until`` (inclusive); the next step's images are decoded in a
        thread meanwhile; one device wait per step."""
        device = self.vgg.device
        loads = [functools.partial(self.batch_for, step) for step in range(self.step, until)]
        for images, strengths, which in read_ahead(loads):
            with using_device(device):
                self.step += 1
                terms, total = optimiser_step(self.decoder, self.optimizer,
                                              self.loss_terms(device.send(images), strengths, which), device.xp)
            yield DecoderStep(self.step, terms, total)

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """The decoder, Adam's state and the step, atomically (``--resume`` reads it)."""
        save_training(path, "decoder", self.decoder, self.optimizer, self.step)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        self.step = load_training(path, "decoder", self.decoder, self.optimizer)


def inference_decoder(decoder, net: VGG19, layers: Sequence[str], name: str = "decoder") -> FastDecoder:
    """``decoder`` (a :class:`Decoder`, e.g. from :meth:`Decoder.load`, or a
    :class:`FastDecoder`) ready for edits of ``net``'s ``layers``: its layers, and a loaded
    decoder's VGG, are checked against them (:class:`SettingError` naming ``name`` and both)
    and a Decoder is moved to ``net``'s device and prepared once."""
    if not isinstance(decoder, (Decoder, FastDecoder)):
        raise SettingError(f"{name}: a dfi Decoder or FastDecoder, not {type(decoder).__name__}")
    chain = decoder if isinstance(decoder, Decoder) else decoder.net
    if chain.record is not None:
        check_decoder_vgg(chain.record, net.identity, layers, name)
    else:
        check_decoder_layers(chain.spec.layers, layers, name)
    if isinstance(decoder, FastDecoder):
        return decoder
    with using_device(net.device):
        decoder.to_device(net.device)
        return FastDecoder(decoder)


def decoded_starts(decoder: FastDecoder, image, targets: Mapping):
    """x + D(t_α) − D(t_0) for every row of ``targets`` (row 0 is α = 0, whose start is x),
    clipped to [0, 255]: L-BFGS's start with a decoder. ``image`` (1, 3, H, W)."""
    xp = get_array_module(image)
    decoded = decoder(targets, image.shape[2:])
    return xp.clip(image + decoded - decoded[:1], 0, 255).astype(xp.float32)


#: the fractions of the decoded change a warm start tries (0: the input itself); the one
#: with the lowest objective starts each row's L-BFGS (:func:`scaled_starts`)
START_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)


def scaled_starts(net, image, starts, loss_fn, layers, config, scales=START_SCALES):
    """For each row, x + c·(start − x) with the scale c of ``scales`` whose objective (the
    sweep's: ``loss_fn`` + TV) is lowest, from one forward pass per scale over all rows (no
    backward). A decoded change that makes the start worse than x (small α) is shrunk or
    dropped, so the warm start is never worse than the cold one. Returns (starts, the scale
    chosen for each row, the image passes spent)."""
    xp = get_array_module(image)
    candidates = [image + np.float32(c) * (starts - image) for c in scales]
    losses = xp.stack([evaluate(net, candidate, loss_fn, layers, config).loss for candidate in candidates])
    best = to_cpu(xp.argmin(losses, axis=0))
    chosen = xp.stack([candidates[k][row] for row, k in enumerate(best)])
    return chosen, [float(scales[k]) for k in best], len(scales) * starts.shape[0]

"""Feed-forward stylisation: train a :class:`dfi.nets.stylizer.TransformNet` on dfi's own losses
(Johnson, Alahi & Fei-Fei 2016; Dumoulin, Shlens & Kudlur 2017) and stylise with it.

Training minimises, for a batch of content images x and one style k per step,
``a · content(φ(y), φ(x)) + β · style(G(y), G_k) + λ · TV(y)`` with y = stylizer(x, k) and
the losses of :mod:`dfi.style.gatys` (each term an average divided by its target's energy,
so the weights keep their meaning at any size), on the VGG-19 of ``--weights``; Adam. Every
step draws its style and its images from ``(seed, step)`` alone, so a run resumed from a
checkpoint (the stylizer, Adam's state and the step) ends exactly where an uninterrupted one
does. Fine-tuning adds styles to a trained model and trains only their (γ, β).

A model file is an npz: the stylizer's parameters and a ``__dfi_stylizer__`` record (the
style names, the architecture, the training settings, dfi's version).
"""
from __future__ import annotations

import functools
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np

from .. import _compat  # noqa: F401
import chainer
import chainer.functions as F

from data_tools.fsutil import atomic_path

from ..core.backend import to_cpu, using_device
from ..core.training import load_training, optimiser_step, save_training
from ..core.color import combine_luminance
from ..core.errors import FileFormatError, SettingError
from ..core.image import IMAGE_SUFFIXES, image_files, pad_to_multiple, read_ahead, read_image, read_training_image, resize
from ..core.losses import feature_loss, network_input, style_loss, total_variation
from ..nets.names import MULTIPLE
from ..nets.stylizer import TransformNet, check_columns
from ..nets.stylizer_kernels import FastTransform
from ..nets.vgg import VGG19
from .gatys import blend_weights, fit_long_side, targets
from .settings import FEEDFORWARD_COLOR, TrainConfig, parse_layer_weights

RECORD = "__dfi_stylizer__"


class ModelFileError(FileFormatError):
    """A file that is not a dfi stylizer model (or a damaged one)."""


def content_images(folder: str | os.PathLike) -> list[Path]:
    """The image files of a content folder (recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--content {folder}: not a folder")
    files = image_files(folder)
    if not files:
        raise FileNotFoundError(f"--content {folder}: no images in it ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _square(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of the largest side that fits, resized to ``size``."""
    height, width = image.shape[1:]
    side = min(height, width)
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    return resize(image[:, top:top + side, left:left + side], (size, size))


def batch_for(step: int, files: Sequence[Path], styles: Sequence[int], config: TrainConfig):
    """The style and content images of ``step``: drawn from (seed, step) alone."""
    rng = np.random.default_rng([config.seed, step])
    style = int(styles[rng.integers(len(styles))])
    picks = rng.integers(len(files), size=config.batch_size)
    return style, np.stack([_square(read_training_image(files, i), config.size, rng) for i in picks])


@dataclass
class TrainStep:
    """One training step: its number (from 1), style, loss terms and total."""

    step: int
    style: int
    terms: dict = field(default_factory=dict)
    loss: float = 0.0


class Trainer:
    """Trains a transformation network on the VGG-19 ``vgg``; holds Adam and each style's
    Gram targets. Each step waits for the device once (for the loss terms it reports)."""

    def __init__(self, vgg: VGG19, transform: TransformNet, styles: Sequence[np.ndarray], files: Sequence[Path],
                 config: TrainConfig, *, style_offset: int = 0):
        if vgg.device.xp is not np:  # Chainer trains the stylizer by im2col, with 32-bit offsets on a GPU
            check_columns(transform, config.size, config.batch_size)
        self.vgg, self.transform, self.files, self.config = vgg, transform, list(files), config
        self.style_layers = parse_layer_weights(config.style_layers, "--style-layers")
        gatys = _gatys_config(config, self.style_layers)
        self.grams = {}
        with using_device(vgg.device):  # every call works with the VGG's device current
            for k, image in enumerate(styles):
                _, grams = targets(vgg, None, [image], blend_weights(gatys, 1), gatys, config.size)
                self.grams[style_offset + k] = grams
        self.optimizer = chainer.optimizers.Adam(alpha=config.lr)
        self.optimizer.setup(transform)
        self.trained = list(config.trained_styles) or list(range(transform.n_styles))
        if config.trained_styles:  # fine-tuning: only the new styles' (γ, β) learn
            trained_tables = {id(p) for k in self.trained for p in transform.styles[k].params()}
            for param in transform.params():
                if id(param) not in trained_tables:
                    param.update_rule.enabled = False
        self.step = 0

    def loss_terms(self, style: int, x, y=None) -> dict:
        """The weighted content, style and TV terms (Variables, one value per image) of the
        content ``x`` (NCHW RGB [0, 255] on the device) stylised in ``style``: ``y``, or by
        default the network's output (through which the terms then differentiate)."""
        config, layer, xp = self.config, self.config.content_layer, self.vgg.device.xp
        with chainer.no_backprop_mode(), chainer.using_config("train", False):
            content = self.vgg.pick(network_input(chainer.Variable(x), self.vgg.convention), [layer])[layer].array
        y = self.transform(x, {style: 1.0}) if y is None else chainer.as_variable(y)
        feats = self.vgg.pick(network_input(y, self.vgg.convention), [layer, *self.style_layers])
        inverse_energy = xp.asarray(1.0 / xp.maximum(xp.mean(content * content), 1e-12), xp.float32)  # no wait
        grams = self.grams[style]
        weights = {n: self.style_layers[n] / max(e, 1e-12) for n, (_, e) in grams.items()}
        gram_targets = {n: xp.broadcast_to(g, (y.shape[0], *g.shape[1:])) for n, (g, _) in grams.items()}
        return {"content": config.content_weight * feature_loss({layer: feats[layer]}, {layer: content}, {layer: 1.0})
                * F.broadcast_to(inverse_energy, (y.shape[0],)),
                "style": config.style_weight * style_loss({n: feats[n] for n in grams}, gram_targets, weights),
                "tv": config.tv_weight * total_variation(y)}

    def run(self, until: int) -> Iterator[TrainStep]:
        """Train up to step ``until`` (inclusive), one :class:`TrainStep` per step; the next
        step's images are decoded in a thread while the device works on this one's."""
        device = self.vgg.device
        loads = [functools.partial(batch_for, step, self.files, self.trained, self.config)
                 for step in range(self.step, until)]
        for style, content in read_ahead(loads):
            with using_device(device):  # (not across the yield: the caller's thread may differ)
                self.step += 1
                terms, total = optimiser_step(self.transform, self.optimizer,
                                              self.loss_terms(style, device.send(content)), device.xp)
            yield TrainStep(self.step, style, terms, total)

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """The stylizer, Adam's state and the step, atomically (``--resume`` reads it)."""
        save_training(path, "stylizer", self.transform, self.optimizer, self.step,
                      {"n_styles": self.transform.n_styles})

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        def check(data):
            if int(data["n_styles"]) != self.transform.n_styles:
                raise ModelFileError(f"--resume {path}: a checkpoint of {int(data['n_styles'])} styles, "
                                     f"not {self.transform.n_styles}")
        self.step = load_training(path, "stylizer", self.transform, self.optimizer, check)


def _gatys_config(config: TrainConfig, style_layers: Mapping[str, float]):
    from .settings import StyleConfig

    return StyleConfig(content_layers={config.content_layer: 1.0}, style_layers=dict(style_layers),
                       scales=(config.size,))


# ------------------------------------------------------------------ model files
def save_model(path: str | os.PathLike, stylizer: TransformNet, *, styles: Sequence[str], settings: Mapping,
               extra: Optional[Mapping] = None) -> None:
    """The trained stylizer and its record (``extra``: more fields, e.g. a converted
    model's source and licence), atomically."""
    from .. import __version__

    arrays = {name: to_cpu(param.array) for name, param in stylizer.namedparams()}
    record = {"format": "dfi-stylizer", "version": 1, "dfi": __version__, "styles": list(styles),
              "architecture": stylizer.architecture(), "training": dict(settings), **dict(extra or {})}
    arrays[RECORD] = np.array(json.dumps(record, default=str))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_model(path: str | os.PathLike) -> tuple[TransformNet, dict]:
    """A stylizer and its record from a model file.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: not a dfi stylizer model, or its arrays do not fit its record.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--model {path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"--model {path}: not a dfi stylizer model (not an .npz file); "
                             "train one with dfi train-stylizer")
    try:
        with np.load(path, allow_pickle=False) as data:
            if RECORD not in data.files:
                raise ModelFileError(f"--model {path}: not a dfi stylizer model (no {RECORD} record)")
            record = json.loads(str(data[RECORD]))
            if record.get("format") != "dfi-stylizer":
                raise ModelFileError(f"--model {path}: its record is not a dfi stylizer's")
            architecture = record["architecture"]
            stylizer = TransformNet(int(architecture["n_styles"]), width=float(architecture["width"]),
                                    variant=str(architecture.get("variant", "dfi")))
            for name, param in stylizer.namedparams():
                if name not in data.files or data[name].shape != param.shape:
                    raise ModelFileError(f"--model {path}: parameter {name} is missing or of another shape")
                param.array[...] = data[name]
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, SettingError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"--model {path}: not a readable dfi stylizer model ({exc})") from None
    return stylizer, record


# ------------------------------------------------------------------ stylising
def parse_mix(text: str) -> dict[int, float]:
    """``"0:0.5,1:0.5"`` → {0: 0.5, 1: 0.5}."""
    mix = {}
    for item in (part.strip() for part in text.split(",")):
        style, sep, weight = item.partition(":")
        try:
            mix[int(style)] = float(weight) if sep else 1.0
        except ValueError:
            raise SettingError(f"--mix {text!r}: give style:weight pairs, e.g. 0:0.5,1:0.5") from None
    return mix


class Stylizer:
    """A trained feed-forward stylizer: ``Stylizer.load("MODEL.npz").stylize(image, style=0)``.

    Images are CHW or NCHW RGB float [0, 255] of any size: they are padded by reflection to
    the network's multiple and cropped back, so the output has the input's size.
    """

    def __init__(self, net: TransformNet, record: Optional[dict] = None, device="@numpy"):
        self.net = net
        self.record = record or {}
        self.device = chainer.get_device(device)
        with using_device(self.device):  # (CuPy makes arrays on the current device)
            self.net.to_device(self.device)
            self.transform = FastTransform(self.net)  # layers prepared once, reused by every call

    @classmethod
    def load(cls, path: str | os.PathLike, device="@numpy") -> "Stylizer":
        """A model file, or a fetched published model's name (``"magenta-varied"``, ``"candy"`` …)."""
        from .pretrained import model_path

        return cls(*load_model(model_path(path)), device=device)

    @property
    def styles(self) -> list[str]:
        """The style names, in style-number order."""
        return list(self.record.get("styles", [str(k) for k in range(self.net.n_styles)]))

    def stylize(self, images, *, style: Optional[int] = None, mix: Optional[Mapping[int, float]] = None,
                preserve_color: str = "none") -> np.ndarray:
        """Stylised images (same shape, CPU float32 in [0, 255]) in one style or a mix
        {style: weight}; ``preserve_color`` "luminance" (YIQ) or "yuv" keeps each input's
        chroma under the stylised luminance."""
        if (style is None) == (mix is None):
            raise SettingError("give exactly one of style= and mix=")
        if preserve_color not in FEEDFORWARD_COLOR:
            raise SettingError(f"--preserve-color {preserve_color!r} is not one of {', '.join(FEEDFORWARD_COLOR)}")
        mix = self.net.check_mix({style: 1.0} if mix is None else mix)
        single = np.ndim(images) == 3
        batch = np.asarray(images, dtype=np.float32)[None] if single else np.asarray(images, dtype=np.float32)
        inputs, (height, width) = batch, batch.shape[2:]
        batch = pad_to_multiple(batch, MULTIPLE)
        with using_device(self.device):
            out = np.asarray(to_cpu(self.transform(self.device.send(batch), mix)))[:, :, :height, :width]
        if preserve_color != "none":
            space = "yiq" if preserve_color == "luminance" else "yuv"
            out = np.stack([np.clip(combine_luminance(o, c, space), 0, 255) for o, c in zip(out, inputs)])
        return out[0] if single else out


def style_images(paths: Sequence[str | os.PathLike], size: int) -> list[np.ndarray]:
    """Style images read and fitted to ``size`` (long side)."""
    return [fit_long_side(read_image(p), size) for p in paths]


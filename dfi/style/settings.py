"""The settings of ``dfi style`` / ``dfi invert``: defaults, choices, the layer-weight
parser and :class:`StyleConfig`, which validates itself. No Chainer, so that the command
line can show them and refuse bad values before any network loads."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np

from ..core.errors import SettingError
from ..core.settings import PRESERVE_COLOR, ReconstructConfig, check_training
from ..nets.names import MULTIPLE, vgg19_layer_names

DEFAULT_CONTENT_LAYERS = "conv4_2"
DEFAULT_STYLE_LAYERS = "conv1_1,conv2_1,conv3_1,conv4_1,conv5_1"
INITS = ("content", "noise", "style")
MIN_SIZE, MAX_SIZE = 16, 8192


def parse_layer_weights(text: str, option: str) -> dict[str, float]:
    """``"conv1_1,conv2_1:0.5"`` → ``{layer: weight}`` normalised to sum to 1 (default 1 each)."""
    weights: dict[str, float] = {}
    valid = vgg19_layer_names()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, value = item.partition(":")
        name = name.strip()
        if name not in valid:
            raise SettingError(f"{option} {text!r}: unknown layer {name!r}; valid: {', '.join(valid)}")
        try:
            weight = float(value) if value else 1.0
        except ValueError:
            weight = float("nan")
        if not (np.isfinite(weight) and weight >= 0):
            raise SettingError(f"{option} {text!r}: weight {value!r} of {name} must be a number ≥ 0")
        weights[name] = weights.get(name, 0.0) + weight
    total = sum(weights.values())
    if not weights or total <= 0:
        raise SettingError(f"{option} {text!r}: give at least one layer with a weight > 0")
    return {name: weight / total for name, weight in weights.items() if weight > 0}


@dataclass(frozen=True)
class StyleConfig:
    """Settings of one ``dfi style`` / ``dfi invert`` run (the CLI's flags, validated here).

    Attributes:
        content_layers, style_layers: ``{layer: weight}``, weights summing to 1.
        content_weight, style_weight: a and β of the module's loss.
        style_blend: one weight per style image (normalised); default equal.
        style_scale: style images are resized to this times the output's long side.
        scales: long side of the output at each coarse-to-fine stage (last = output).
        init: ``content``, ``noise`` or ``style`` (the first style, resized).
        preserve_color: one of :data:`dfi.core.settings.PRESERVE_COLOR`.
        seed: seed of the noise init.
        reconstruct: optimiser settings (iterations are per stage).
    """

    content_layers: Mapping[str, float] = field(
        default_factory=lambda: parse_layer_weights(DEFAULT_CONTENT_LAYERS, "--content-layers"))
    style_layers: Mapping[str, float] = field(
        default_factory=lambda: parse_layer_weights(DEFAULT_STYLE_LAYERS, "--style-layers"))
    content_weight: float = 1.0
    style_weight: float = 1.0
    style_blend: Optional[tuple[float, ...]] = None
    style_scale: float = 1.0
    scales: tuple[int, ...] = (256,)
    init: str = "content"
    preserve_color: str = "none"
    seed: int = 0
    reconstruct: ReconstructConfig = field(
        default_factory=lambda: ReconstructConfig(iterations=300, tv_weight=1e-4, ftol=1e-5))

    def __post_init__(self):
        for name, value in (("--content-weight", self.content_weight),
                            ("--style-weight", self.style_weight)):
            if not (np.isfinite(value) and value >= 0):
                raise SettingError(f"{name} {value} must be a finite number ≥ 0")
        if not (np.isfinite(self.style_scale) and 0.05 <= self.style_scale <= 8):
            raise SettingError(f"--style-scale {self.style_scale} must be between 0.05 and 8")
        if not self.scales or any(not MIN_SIZE <= s <= MAX_SIZE for s in self.scales):
            raise SettingError(f"--scales/--size {','.join(map(str, self.scales))}: each size must be "
                             f"between {MIN_SIZE} and {MAX_SIZE} pixels")
        if list(self.scales) != sorted(self.scales):
            raise SettingError(f"--scales {','.join(map(str, self.scales))} must grow from coarse to fine")
        if self.init not in INITS:
            raise SettingError(f"--init {self.init!r} is not one of {', '.join(INITS)}")
        if self.preserve_color not in PRESERVE_COLOR:
            raise SettingError(f"--preserve-color {self.preserve_color!r} is not one of "
                             f"{', '.join(PRESERVE_COLOR)}")
        if self.style_blend is not None and (
                any(not (np.isfinite(b) and b >= 0) for b in self.style_blend) or sum(self.style_blend) <= 0):
            raise SettingError(f"--style-blend {','.join(map(str, self.style_blend))}: weights must be "
                             "numbers ≥ 0, not all 0")

    @property
    def layers(self) -> list[str]:
        """Every layer the loss reads (content layers first)."""
        return list(dict.fromkeys([*self.content_layers, *self.style_layers]))


CONTENT_LAYERS = ("conv3_1", "conv4_2")
#: the colour modes of a feed-forward stylizer (the style's own colours, or the input's chroma)
FEEDFORWARD_COLOR = ("none", "luminance", "yuv")
TRAIN_STYLE_LAYERS = "conv1_1,conv2_1,conv3_1,conv4_1"


@dataclass(frozen=True)
class TrainConfig:
    """Settings of ``dfi train-stylizer`` (validated here)."""

    size: int = 256
    batch_size: int = 4
    iterations: int = 40000
    lr: float = 1e-3
    content_weight: float = 1.0
    style_weight: float = 5.0
    tv_weight: float = 1e-5
    content_layer: str = "conv3_1"
    style_layers: str = TRAIN_STYLE_LAYERS
    width: float = 1.0
    seed: int = 0
    trained_styles: tuple[int, ...] = ()  # empty: every style; fine-tuning: the new ones

    def __post_init__(self):
        if not 16 <= self.size <= 2048 or self.size % MULTIPLE:
            raise SettingError(f"--size {self.size} must be a multiple of {MULTIPLE} from 16 to 2048")
        for name, value in (("--batch-size", self.batch_size), ("--iterations", self.iterations)):
            if value < 1:
                raise SettingError(f"{name} {value} must be at least 1")
        for name, value in (("--lr", self.lr), ("--content-weight", self.content_weight),
                            ("--style-weight", self.style_weight), ("--tv-weight", self.tv_weight)):
            if not (np.isfinite(value) and value >= 0):
                raise SettingError(f"{name} {value} must be a finite number ≥ 0")
        if not (np.isfinite(self.width) and 0 < self.width <= 4):
            raise SettingError(f"--width {self.width} must be above 0 and at most 4")
        if self.content_layer not in CONTENT_LAYERS:
            raise SettingError(f"--content-layer {self.content_layer!r} is not one of {', '.join(CONTENT_LAYERS)}")
        parse_layer_weights(self.style_layers, "--style-layers")


@dataclass(frozen=True)
class AdainTrainConfig:
    """Settings of ``dfi train-decoder --method adain`` (the reference's defaults)."""

    size: int = 256
    batch_size: int = 8
    iterations: int = 160_000
    lr: float = 1e-4
    lr_decay: float = 5e-5
    style_weight: float = 10.0
    width: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if not 16 <= self.size <= 1024 or self.size % 8:
            raise SettingError(f"--size {self.size} must be a multiple of 8 between 16 and 1024")
        check_training(self.batch_size, self.iterations, self.lr)
        if not (np.isfinite(self.style_weight) and self.style_weight >= 0):
            raise SettingError(f"--style-weight {self.style_weight} must be a finite number ≥ 0")
        if not (np.isfinite(self.width) and 0 < self.width <= 4):
            raise SettingError(f"--width {self.width} must be above 0 and at most 4")

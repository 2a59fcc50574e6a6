"""The settings of ``dfi edit`` / ``dfi sweep``: layers, scalings, the α range,
:class:`EditConfig` (which validates itself), DFI's reconstruction defaults and the
decoder's training settings (:class:`DecoderTrainConfig`). No Chainer,
so that the command line can show them and refuse bad values before any network loads."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core.errors import SettingError
from ..core.settings import ReconstructConfig, check_training
from ..face.frame import LFW_CROP
from ..nets.names import NORMS, PADDINGS, UPSAMPLINGS

DEFAULT_LAYERS = ("conv3_1", "conv4_1", "conv5_1")
#: attribute-vector scalings (see :func:`dfi.edit.attributes.scale_vector`)
SCALINGS = ("none", "beta", "norm")
MAX_ALPHA = 10.0
#: DFI's L-BFGS: with 20 curvature pairs, 100 iterations end within 1 % of the loss that
#: 10 pairs reach in 150 (0.2 % after 120; four faces, 100² and 200²: BENCHMARKS.md, "Fast
#: core"), for two thirds of the passes. ``--iterations`` raises the cap.
ITERATIONS, HISTORY = 100, 20


def reconstruct_config(**options) -> ReconstructConfig:
    """A :class:`ReconstructConfig` with DFI's defaults, ``options`` overriding them."""
    return ReconstructConfig(**{"iterations": ITERATIONS, "history": HISTORY, **options})


@dataclass(frozen=True)
class EditConfig:
    """Settings of one DFI edit or sweep (the CLI's flags, validated here)."""

    layers: tuple[str, ...] = DEFAULT_LAYERS
    k: int = 100
    size: int = 200
    crop: tuple[int, int, int, int] = LFW_CROP  # of the dataset's faces (and of aligned photos)
    scaling: str = "norm"
    rule: str = "chainer"
    exclude_person: bool = False
    batch_size: int = 8
    color_match: bool = True
    reconstruct: ReconstructConfig = field(default_factory=reconstruct_config)

    def __post_init__(self):
        if self.k < 1:
            raise SettingError(f"--k {self.k} must be at least 1")
        if not 16 <= self.size <= 2048:
            raise SettingError(f"--size {self.size} must be between 16 and 2048 pixels")
        if self.scaling not in SCALINGS:
            raise SettingError(f"--scaling {self.scaling!r} is not one of {', '.join(SCALINGS)}")


def check_alphas(alphas: Sequence[float]) -> list[float]:
    """Validate α values: finite, within ±MAX_ALPHA, at least one, none twice."""
    alphas = [float(a) for a in alphas]
    if not alphas:
        raise SettingError("give at least one alpha")
    for alpha in alphas:
        if not np.isfinite(alpha) or abs(alpha) > MAX_ALPHA:
            raise SettingError(f"alpha {alpha} is out of range; use finite values in "
                               f"[-{MAX_ALPHA:g}, {MAX_ALPHA:g}] (typical: 0.1–0.5 with the default "
                               "--scaling norm, 0.2–0.6 with beta, about 1–4 with none)")
    names = [f"{alpha:g}" for alpha in alphas]  # as the outputs and records name them
    twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if twice is not None:
        raise SettingError(f"alpha {twice} is given twice; give each alpha once (each is one row)")
    return alphas


OBJECTIVES = ("residual", "direct")


@dataclass(frozen=True)
class DecoderTrainConfig:
    """Settings of ``dfi train-decoder`` (validated here)."""

    size: int = 64
    batch_size: int = 4
    iterations: int = 2000
    lr: float = 1e-4  # (1e-3 diverges on an untrained VGG-19's features; AdaIN trains at 1e-4)
    layers: tuple[str, ...] = DEFAULT_LAYERS
    #: width, pixel weight and the layers' kinds below: measured side by side (BENCHMARKS.md,
    #: "Design choices"); width 1 is as good only in 1.85 × the training time
    width: float = 0.5
    pixel_weight: float = 1.0
    tv_weight: float = 1e-4
    edited: float = 0.5          # share of the targets that are edits
    strengths: tuple[float, float] = (0.1, 0.5)  # |s|, the norm scaling's α range
    seed: int = 0
    crop: tuple[int, int, int, int] = LFW_CROP  # dfi edit's
    #: what an edited target's feature loss is measured on: "direct", D(t) itself
    #: (Facelet-Bank's), or "residual", the start edits use, x + D(t) − D(φ(x)). Measured
    #: (BENCHMARKS.md, 15 minutes each at 64²): the same fast-edit loss and warm starts,
    #: with residual's steps 9 % dearer; direct is the default
    objective: str = "direct"
    #: the decoder's layers (dfi.nets.decoder): reflection, nearest, none
    padding: str = PADDINGS[0]
    upsample: str = UPSAMPLINGS[0]
    norm: str = NORMS[0]

    def __post_init__(self):
        if not 16 <= self.size <= 1024:
            raise SettingError(f"--size {self.size} must be between 16 and 1024 pixels")
        check_training(self.batch_size, self.iterations, self.lr)
        if not 0 <= self.edited <= 1:
            raise SettingError(f"edited share {self.edited} must be within 0…1")
        if self.objective not in OBJECTIVES:
            raise SettingError(f"--objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        for option, value, allowed in (("--padding", self.padding, PADDINGS), ("--upsample", self.upsample, UPSAMPLINGS),
                                       ("--norm", self.norm, NORMS)):
            if value not in allowed:
                raise SettingError(f"{option} {value!r} is not one of {', '.join(allowed)}")

    @property
    def decodes_per_image(self) -> int:
        """Images the decoder decodes per training image at most: 2 when the residual
        objective decodes edited faces' own features too, else 1."""
        return 2 if self.objective == "residual" and self.edited > 0 else 1

"""Settings the command line shows before any work starts: the reconstruction loop's
options and the colour modes. Plain values and frozen dataclasses that validate
themselves; no Chainer, so that ``dfi --help`` stays instant.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SettingError

OPTIMIZERS = ("lbfgs", "adam")
#: ``--preserve-color`` modes (see :mod:`dfi.core.color`).
PRESERVE_COLOR = ("none", "luminance", "histogram", "yuv")


@dataclass(frozen=True)
class ReconstructConfig:
    """Optimisation settings shared by ``dfi edit``, ``sweep`` and ``style``.

    Attributes:
        iterations: iteration cap per image.
        tv_weight: weight λ of the total-variation term (pixel units, see losses).
        optimizer: ``"lbfgs"`` or ``"adam"``.
        history: L-BFGS memory.
        ftol: L-BFGS stops an image when one iteration lowers its loss by less than
            this fraction.
        lr: Adam step size, in pixel units (0–255).
        micro_batch: evaluate at most this many images per forward/backward pass
            (0 = all); on a CPU small passes are faster, on a GPU large ones.
    """

    iterations: int = 150
    tv_weight: float = 1e-3
    optimizer: str = "lbfgs"
    history: int = 10
    ftol: float = 1e-4
    lr: float = 2.0
    micro_batch: int = 0

    def __post_init__(self):
        if self.iterations < 1:
            raise SettingError(f"--iterations {self.iterations} must be at least 1")
        if not (self.tv_weight >= 0 and np.isfinite(self.tv_weight)):
            raise SettingError(f"--tv-weight {self.tv_weight} must be a finite number ≥ 0")
        if self.optimizer not in OPTIMIZERS:
            raise SettingError(f"--optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.micro_batch < 0:
            raise SettingError(f"micro_batch {self.micro_batch} must be ≥ 0")



def check_training(batch_size: int, iterations: int, lr: float) -> None:
    """The checks the decoder trainers' settings share: at least one image per step and
    one step, and a finite learning rate above 0."""
    for name, value in (("--batch-size", batch_size), ("--iterations", iterations)):
        if value < 1:
            raise SettingError(f"{name} {value} must be at least 1")
    if not (lr > 0 and np.isfinite(lr)):
        raise SettingError(f"--lr {lr} must be a positive number")

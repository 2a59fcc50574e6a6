"""The settings of the frame loop (the video flags of ``dfi style`` / ``dfi edit``):
choices and :class:`VideoConfig`, which validates itself. No Chainer, PyAV or OpenCV, so
that the command line can show them before anything loads."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import SettingError
from .flow import PRESETS

VIDEO_INITS = ("warped", "content", "noise")
MAX_TEMPORAL_FRAME = 8


@dataclass(frozen=True)
class VideoConfig:
    """Settings of the frame loop (the video flags of ``dfi style`` / ``dfi edit``).

    Attributes:
        temporal_weight: weight of the temporal term (0 turns it off); its unit is a squared
            pixel difference averaged over the frame, so 1e-3 weighs a 30-level flicker
            about as much as a typical style loss.
        temporal_frames: how many frames back the term looks, e.g. (1, 2, 4).
        init: how frames after the first start: ``warped`` previous output, ``content``
            or ``noise``.
        flow_preset: OpenCV DIS preset (``ultrafast``, ``fast``, ``medium``).
    """

    temporal_weight: float = 1e-3
    temporal_frames: tuple[int, ...] = (1,)
    init: str = "warped"
    flow_preset: str = "medium"

    def __post_init__(self):
        if not (np.isfinite(self.temporal_weight) and self.temporal_weight >= 0):
            raise SettingError(f"--temporal-weight {self.temporal_weight} must be a finite number ≥ 0")
        frames = self.temporal_frames
        if not frames or any(not 1 <= j <= MAX_TEMPORAL_FRAME for j in frames) or len(set(frames)) != len(frames):
            raise SettingError(f"--temporal-frames {','.join(map(str, frames))}: give distinct frame offsets "
                               f"from 1 to {MAX_TEMPORAL_FRAME}, e.g. 1,2,4")
        if self.init not in VIDEO_INITS:
            raise SettingError(f"--video-init {self.init!r} is not one of {', '.join(VIDEO_INITS)}")
        if self.flow_preset not in PRESETS:
            raise SettingError(f"flow preset {self.flow_preset!r} is not one of {', '.join(PRESETS)}")

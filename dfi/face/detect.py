"""Face detection and facial landmarks, from models shipped inside registry packages.

Detector: dlib's HOG + linear-SVM frontal face detector (built into ``dlib-bin``), then
dlib's 68-point shape predictor (iBUG 300-W markup), whose model file ships in the
``face_recognition_models`` package, so nothing is downloaded at run time.

Why this one (see README, "Editing any photo"): of the options that install from the
registries without a compiler, it is the most accurate for landmarks: OpenCV's current
wheels ship no Haar cascades and no landmark model, MediaPipe's wheels ship no models,
and a cascade gives boxes but no eye or mouth positions. Landmarks are fitted on the full-
resolution photo; detection runs on a copy at most ``DETECT_SIDE`` pixels long (HOG time
grows with the area), upsampled for small photos (the detector's smallest face is about
80 px); a larger photo in which that copy shows no face is searched again at full size,
since its faces may be too small once shrunk (a group photo, a wide shot). Note the
licence of the 68-point model: its training data (iBUG 300-W) is for non-commercial
research use.

Only :func:`detect_faces` touches dlib; it is imported on first use, with a clear error
when the optional ``photo`` extra is not installed.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

#: longest side of the copy the detector sees; larger photos are shrunk for detection
DETECT_SIDE = 1024
#: detector score (SVM margin) a face needs; weaker candidates count only when there is
#: no other, since at threshold 0 HOG also fires on textures
MIN_SCORE = 0.3
#: 68-point markup: the person's right eye (image left), left eye, outer lip contour
_EYE_A, _EYE_B, _MOUTH = slice(36, 42), slice(42, 48), slice(48, 60)


class NoFaceError(ValueError):
    """No face was detected in a photo."""


@dataclass(frozen=True)
class Detection:
    """One detected face, in the photo's pixel coordinates (x, y)."""

    box: tuple[int, int, int, int]  # left, top, right, bottom
    score: float
    points: np.ndarray  # (68, 2) landmarks, iBUG 300-W order

    @property
    def landmarks(self) -> np.ndarray:
        """(3, 2): centre of the eye on the image's left, of the other eye, of the mouth."""
        return np.array([self.points[_EYE_A].mean(axis=0), self.points[_EYE_B].mean(axis=0),
                         self.points[_MOUTH].mean(axis=0)])

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return (right - left) * (bottom - top)


@functools.lru_cache(maxsize=1)
def _models():
    try:
        import dlib
        import face_recognition_models
    except ImportError as exc:
        raise ImportError(f"face detection needs dlib and its landmark model ({exc.name} is "
                          "missing): pip install 'dfi[photo]', or skip alignment with "
                          "--no-align / --crop l,t,r,b") from None
    return (dlib, dlib.get_frontal_face_detector(),
            dlib.shape_predictor(face_recognition_models.pose_predictor_model_location()))


def _upsamplings(longest: int) -> list[int]:
    """How many times to double the image for the detector: 0, then more while the
    doubled copy stays within DETECT_SIDE (small photos have small faces)."""
    steps = [0]
    while longest * 2 ** (steps[-1] + 1) <= DETECT_SIDE and len(steps) < 3:
        steps.append(steps[-1] + 1)
    return steps


def detect_faces(photo: np.ndarray) -> list[Detection]:
    """All frontal faces in a CHW RGB float photo with their 68 landmarks, largest first.

    Faces scoring at least :data:`MIN_SCORE`; when there is none, the best weaker candidate
    alone (logged as a warning). Returns an empty list when there is no candidate at all.
    """
    dlib, detector, predictor = _models()
    rgb = np.ascontiguousarray(np.clip(np.rint(photo.transpose(1, 2, 0)), 0, 255).astype(np.uint8))
    height, width = rgb.shape[:2]
    shrink = min(1.0, DETECT_SIDE / max(height, width))
    small = rgb if shrink == 1.0 else np.asarray(Image.fromarray(rgb).resize(
        (max(1, round(width * shrink)), max(1, round(height * shrink))), Image.BILINEAR))
    tries = [(small, shrink, upsample) for upsample in _upsamplings(max(small.shape[:2]))]
    if shrink < 1.0:
        tries.append((rgb, 1.0, 0))  # faces under ~80 px in the shrunk copy
    candidates = []
    for image, scale, upsample in tries:
        rects, scores, _ = detector.run(image, upsample, 0.0)
        candidates += [(float(s), tuple(round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom())))
                       for r, s in zip(rects, scores)]
        if any(score >= MIN_SCORE for score, _ in candidates):
            break
    kept = [(s, box) for s, box in candidates if s >= MIN_SCORE]
    if not kept and candidates:
        kept = [max(candidates, key=lambda c: c[0])]
        logger.warning("only a weak face candidate (score %.2f) was found; check it with "
                       "--show-landmarks FILE", kept[0][0])
    found = []
    for score, box in kept:
        shape = predictor(rgb, dlib.rectangle(*box))
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        found.append(Detection(box, score, points))  # type: ignore[arg-type]
    return sorted(found, key=lambda d: (-d.area, d.box))

"""Face alignment geometry: map a photo's face onto the LFW frame and paste an edit back.

DFI only works on faces placed like the dataset's. Given landmarks (eye centres and the
mouth centre) in a photo, :func:`similarity_transform` finds the rotation, uniform scale
and translation that best maps them onto :data:`LFW_TEMPLATE` (least squares, Umeyama
1991); :func:`warp_to_frame` resamples the photo into the 250×250 LFW frame, where the
usual crop and edit run; :func:`paste_back` warps the edited frame back into the photo
through a feathered mask, so pixels outside the mask are exactly the photo's.

:func:`align_face` runs the whole path on a photo: detect (:mod:`dfi.face.detect`), pick a
face, fit, warp. Pure NumPy on CHW float images; resampling with Pillow (bicubic).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..core.errors import SettingError
from ..core.image import resize, to_pil
from .detect import Detection, NoFaceError, detect_faces
from .frame import FEATHER, FRAME, LFW_CROP, LFW_TEMPLATE


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 matrix M of the similarity (rotation, uniform scale, translation) that
    maps points ``src`` (n, 2) onto ``dst`` (n, 2) with least squared error: dst ≈ M·[src, 1]."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (n, 2) point sets with n ≥ 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var = (s ** 2).sum() / len(src)
    if var <= 1e-12:
        raise ValueError("the landmarks coincide: no transform can be fitted")
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(sigma) @ sign)) / var
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2×3 affine matrix."""
    return np.linalg.inv(_full(matrix))[:2]


def _full(matrix: np.ndarray) -> np.ndarray:
    """2×3 affine → 3×3 homogeneous."""
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def _chain(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """The 2×3 affine map that applies ``first``, then ``then``."""
    return (_full(then) @ _full(first))[:2]


def _translation(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0, x], [0, 1.0, y]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (n, 2) through a 2×3 matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def _warp(image: np.ndarray, out_to_in: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample CHW ``image`` at ``out_to_in`` · (x, y) for each output pixel (H, W = size).

    Pixel centres are at integer + 0.5 in Pillow's affine transform; the matrices here use
    integer pixel coordinates, hence the half-pixel shifts.
    """
    height, width = size
    shift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    unshift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    full = unshift @ _full(out_to_in) @ shift
    data = tuple(full[:2].reshape(-1))
    return np.stack([np.asarray(Image.fromarray(np.asarray(c, np.float32), mode="F").transform(
        (width, height), Image.AFFINE, data, resample=Image.BICUBIC, fillcolor=0.0)) for c in image])


def _scale(matrix: np.ndarray) -> float:
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def _preimage_box(to_frame: np.ndarray, size: tuple[int, int], margin: int = 3) -> tuple[int, int, int, int]:
    """Integer box (l, t, r, b) of photo pixels that the frame of ``size`` sees, plus a margin."""
    height, width = size
    corners = apply(invert(to_frame), [[-1, -1], [width, -1], [-1, height], [width, height]])
    (left, top), (right, bottom) = np.floor(corners.min(axis=0)), np.ceil(corners.max(axis=0))
    return int(left) - margin, int(top) - margin, int(right) + margin + 1, int(bottom) + margin + 1


def warp_to_frame(photo: np.ndarray, matrix: np.ndarray, size: tuple[int, int] = FRAME) -> np.ndarray:
    """The photo seen in the LFW frame: output pixel q shows photo pixel M⁻¹·q.

    ``matrix`` maps photo coordinates to frame coordinates (from
    :func:`similarity_transform`). Areas outside the photo are filled by repeating its
    border, so the network sees no black bars. A photo larger than the frame is first
    shrunk with an antialiasing filter (an affine warp alone would alias), and only the
    part the frame sees is resampled, so memory stays small for large photos.
    """
    scale = _scale(matrix)
    if scale < 0.8:
        height, width = photo.shape[1:]
        new = (max(1, round(height * scale)), max(1, round(width * scale)))
        fy, fx = height / new[0], width / new[1]
        small_to_photo = np.array([[fx, 0, (fx - 1) / 2], [0, fy, (fy - 1) / 2]])
        photo, matrix = resize(photo, new), _chain(small_to_photo, matrix)
    height, width = photo.shape[1:]
    left, top, right, bottom = _preimage_box(matrix, size)
    # the photo's part inside that box (at least one pixel), then edge padding up to the box
    x0, y0 = min(max(left, 0), width - 1), min(max(top, 0), height - 1)
    x1, y1 = max(min(right, width), x0 + 1), max(min(bottom, height), y0 + 1)
    pad_x, pad_y = (max(0, x0 - left), max(0, right - x1)), (max(0, y0 - top), max(0, bottom - y1))
    region = np.pad(photo[:, y0:y1, x0:x1], ((0, 0), pad_y, pad_x), mode="edge")
    region_to_frame = _chain(_translation(x0 - pad_x[0], y0 - pad_y[0]), matrix)
    return np.clip(_warp(region, invert(region_to_frame), size), 0, 255).astype(np.float32)


def feather(shape: tuple[int, int], *, fraction: float = FEATHER) -> np.ndarray:
    """(H, W) weights that rise smoothly from 0 at the border to 1 inside.

    The ramp is a raised cosine over ``fraction`` of each side, so an edit added inside
    a crop leaves no visible seam at the crop's edges.
    """
    def ramp(n: int) -> np.ndarray:
        width = max(1, int(round(n * fraction)))
        pos = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float32)
        return np.where(pos >= width, 1.0, 0.5 - 0.5 * np.cos(np.pi * pos / width)).astype(np.float32)

    height, width = shape
    return np.outer(ramp(height), ramp(width))


def face_mask(size: tuple[int, int] = FRAME, *, box=LFW_CROP, fraction: float = FEATHER) -> np.ndarray:
    """(H, W) weights in the frame: 1 inside ``box`` (the LFW crop), falling to 0 at its
    edges with a raised-cosine ramp over ``fraction`` of each side."""
    mask = np.zeros(size, np.float32)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = feather((bottom - top, right - left), fraction=fraction)
    return mask


def paste_back(photo: np.ndarray, edited: np.ndarray, original: np.ndarray, matrix: np.ndarray,
               mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Add an edit made in the frame back onto the full-resolution photo.

    The change ``mask · (edited − original)`` is warped back into the photo and added,
    so the photo keeps its own resolution and detail; where the warped mask is 0 the
    photo is returned exactly as it was.

    Args:
        photo: CHW original.
        edited, original: CHW frame images after and before the edit.
        matrix: photo → frame, as given to :func:`warp_to_frame`.
        mask: (H, W) weights in the frame (default :func:`face_mask`).
    """
    mask = face_mask(edited.shape[1:]) if mask is None else mask
    out = photo.astype(np.float32, copy=True)
    height, width = photo.shape[1:]
    left, top, right, bottom = _preimage_box(matrix, mask.shape)
    left, top, right, bottom = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if left >= right or top >= bottom:
        return out
    region_to_frame = _chain(_translation(left, top), matrix)
    size = (bottom - top, right - left)
    # bicubic resampling of zeros is exactly zero: outside the mask nothing is added
    out[:, top:bottom, left:right] += _warp((edited - original) * mask, region_to_frame, size)
    return np.clip(out, 0, 255).astype(np.float32)


@dataclass(frozen=True)
class Alignment:
    """A face of a photo placed in the LFW frame."""

    matrix: np.ndarray  # photo → frame, 2×3
    frame: np.ndarray  # CHW, FRAME-sized view of the photo
    detection: Detection  # the chosen face (box, 68 points)
    detections: tuple[Detection, ...]  # every face found, largest first
    number: int  # which of them (1 = largest)

    def record(self) -> dict:
        """JSON-ready summary (sweep records)."""
        return {"face": self.number, "faces_found": len(self.detections),
                "box": list(self.detection.box),
                "landmarks": np.round(self.detection.landmarks, 2).tolist(),
                "matrix": np.round(self.matrix, 6).tolist()}


def align_face(photo: np.ndarray, *, face: int = 1, template: np.ndarray = LFW_TEMPLATE,
               detections: Optional[Sequence[Detection]] = None, name: str = "the photo") -> Alignment:
    """Detect the faces of ``photo``, pick the ``face``-th largest and warp it into the frame.

    Raises:
        NoFaceError: no face found (the message suggests cropping by hand).
        SettingError: ``face`` is not one of the faces found.
    """
    found = tuple(detect_faces(photo) if detections is None else detections)
    height, width = photo.shape[1:]
    if not found:
        raise NoFaceError(f"no face found in {name} ({width}x{height}); place the face by hand "
                          "with --crop l,t,r,b (it is then used as is)")
    if not 1 <= face <= len(found):
        raise SettingError(f"--face {face}: {name} has {len(found)} face(s); choose 1–{len(found)} "
                         "(1 = the largest; --show-landmarks FILE shows their numbers)")
    chosen = found[face - 1]
    matrix = similarity_transform(chosen.landmarks, template)
    return Alignment(matrix, warp_to_frame(photo, matrix), chosen, found, face)


def detected_landmarks(images, *, limit: int = 500) -> np.ndarray:
    """Eye and mouth centres (n, 3, 2) of the largest face in each of the first ``limit`` of
    ``images`` (CHW arrays, an iterable) that has one."""
    points = []
    for count, image in enumerate(images):
        if count >= limit:
            break
        found = detect_faces(image)
        if found:
            points.append(found[0].landmarks)
    if not points:
        raise NoFaceError("no face found in any of the images")
    return np.array(points)


def measure_template(images, *, limit: int = 500) -> tuple[np.ndarray, int]:
    """Median eye and mouth centres (3, 2) over ``images`` (see :func:`detected_landmarks`):
    the template of a dataset in the detector's own terms; also how many images had a face."""
    points = detected_landmarks(images, limit=limit)
    return np.median(points, axis=0), len(points)


def draw_landmarks(photo: np.ndarray, alignment: Alignment, *,
                   box: tuple[int, int, int, int] = LFW_CROP) -> np.ndarray:
    """A debug picture: every face's box and number, the chosen face's 68 points, its
    eye and mouth centres, and the outline of what the edit sees (``box`` in the frame)."""
    picture = to_pil(photo)
    draw = ImageDraw.Draw(picture)
    radius = max(1.0, max(picture.size) / 400)
    for number, detection in enumerate(alignment.detections, 1):
        colour = (255, 220, 0) if number == alignment.number else (160, 160, 160)
        draw.rectangle(detection.box, outline=colour, width=max(1, round(radius)))
        draw.text((detection.box[0] + 2, detection.box[1] + 2), str(number), fill=colour)
    for x, y in alignment.detection.points:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(0, 255, 0))
    for x, y in alignment.detection.landmarks:
        draw.ellipse([x - 3 * radius, y - 3 * radius, x + 3 * radius, y + 3 * radius], outline=(255, 0, 0),
                     width=max(1, round(radius)))
    left, top, right, bottom = box
    outline = apply(invert(alignment.matrix), [[left, top], [right, top], [right, bottom], [left, bottom]])
    draw.polygon([tuple(p) for p in outline], outline=(0, 160, 255))
    return np.asarray(picture, dtype=np.float32).transpose(2, 0, 1).copy()

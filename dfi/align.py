"""Face alignment geometry: map a photo's face onto the LFW frame and paste an edit back.

DFI only works on faces placed like the dataset's. Given landmarks (eye centres and the
mouth centre) in a photo, :func:`similarity_transform` finds the rotation, uniform scale
and translation that best maps them onto :data:`LFW_TEMPLATE` (least squares, Umeyama
1991); :func:`warp_to_frame` resamples the photo into the 250×250 LFW frame, where the
usual crop and edit run; :func:`paste_back` warps the edited frame back into the photo
through a feathered mask, so pixels outside the mask are exactly the photo's.

Pure NumPy on CHW float images; resampling with Pillow (bicubic).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from data_tools.synth import FACE_CENTRE, LEFT_EYE, MOUTH, RIGHT_EYE, SIZE

#: where the faces of the 250×250 frame have their left eye, right eye and mouth centre
#: (x, y), taken from the synthetic LFW's geometry (placed like deep-funneled LFW).
LFW_TEMPLATE = np.array([[FACE_CENTRE[0] + x, FACE_CENTRE[1] + y] for x, y in (LEFT_EYE, RIGHT_EYE, MOUTH)])
FRAME = (SIZE, SIZE)


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
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


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
    full = unshift @ np.vstack([out_to_in, [0, 0, 1]]) @ shift
    data = tuple(full[:2].reshape(-1))
    return np.stack([np.asarray(Image.fromarray(np.asarray(c, np.float32), mode="F").transform(
        (width, height), Image.AFFINE, data, resample=Image.BICUBIC, fillcolor=0.0)) for c in image])


def warp_to_frame(photo: np.ndarray, matrix: np.ndarray, size: tuple[int, int] = FRAME) -> np.ndarray:
    """The photo seen in the LFW frame: output pixel q shows photo pixel M⁻¹·q.

    ``matrix`` maps photo coordinates to frame coordinates (from
    :func:`similarity_transform`). Areas outside the photo are filled by repeating its
    border, so the network sees no black bars.
    """
    height, width = photo.shape[1:]
    pad = max(height, width)
    padded = np.pad(photo, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    to_padded = np.array([[1.0, 0, pad], [0, 1.0, pad]])
    composed = np.vstack([to_padded, [0, 0, 1]]) @ np.vstack([invert(matrix), [0, 0, 1]])
    return np.clip(_warp(padded, composed[:2], size), 0, 255).astype(np.float32)


def face_mask(size: tuple[int, int] = FRAME, *, box=(40, 20, 210, 190), fraction: float = 0.15) -> np.ndarray:
    """(H, W) weights in the frame: 1 inside ``box`` (the LFW crop), falling to 0 at its
    edges with a raised-cosine ramp over ``fraction`` of each side."""
    from .edit import feather

    mask = np.zeros(size, np.float32)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = feather((bottom - top, right - left), fraction=fraction)
    return mask


def paste_back(photo: np.ndarray, frame_image: np.ndarray, matrix: np.ndarray,
               mask: np.ndarray) -> np.ndarray:
    """Put an (edited) frame image back into the photo.

    Args:
        photo: CHW original.
        frame_image: CHW image in the frame (``warp_to_frame`` output, edited).
        matrix: photo → frame, as given to :func:`warp_to_frame`.
        mask: (H, W) weights in the frame; where it is 0 the photo is left exactly as is.
    """
    size = photo.shape[1:]
    back = _warp(frame_image, matrix, size)
    weight = _warp(mask[None], matrix, size)[0].clip(0, 1)
    out = photo.astype(np.float32, copy=True)
    inside = weight > 0
    out[:, inside] = photo[:, inside] * (1 - weight[inside]) + back[:, inside] * weight[inside]
    return np.clip(out, 0, 255).astype(np.float32)

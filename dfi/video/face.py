"""Deep Feature Interpolation on a video of a face, consistent over time.

1. The face is tracked: detected in every frame (the one nearest the previous frame's,
   starting from the ``face``-th largest), its eye and mouth centres smoothed over time
   (a Gaussian over frames; frames without a detection are interpolated), so the aligned
   frames do not jitter.
2. The attribute vector is computed once, for the first frame's aligned face.
3. Each frame is aligned with its smoothed landmarks and reconstructed for α = 0 and every
   α at once; each row starts from the same row of the previous frame warped into this one
   along the optical flow between the aligned crops, and a temporal term keeps it
   consistent with it where the flow can be trusted (:mod:`dfi.video.stylize`); with a
   trained decoder the first frame starts from the best share of the decoded change
   (:func:`dfi.edit.decoding.scaled_starts`), and ``fast`` decodes
   every frame's edit in one pass instead.
4. The change is pasted back into the full frame, as for a photo.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from ..core.backend import to_cpu
from ..core.image import crop_and_resize
from ..core.losses import feature_loss
from ..core.reconstruct import Progress, evaluate, reconstruct
from ..edit.attributes import combine, scale_vector, target_features
from ..edit.decoding import decoded_starts, inference_decoder, scaled_starts
from ..edit.pipeline import EditConfig, Face, check_alphas, compose
from ..face.align import LFW_TEMPLATE, Alignment, similarity_transform, warp_to_frame
from ..face.detect import NoFaceError, detect_faces
from ..nets.features import extract
from ..nets.vgg import VGG19
from .flow import flows_ahead
from .stylize import VideoConfig, temporal_term, warped_start

#: standard deviation (in frames) of the Gaussian that smooths the landmarks over time
SMOOTHING = 2.0


@dataclass(frozen=True)
class FaceTrack:
    """The tracked face: raw landmarks (n, 3, 2) (NaN where no face was found), smoothed ones,
    and the photo → LFW-frame matrix of each frame from the smoothed ones."""

    raw: np.ndarray
    smooth: np.ndarray
    matrices: tuple[np.ndarray, ...]

    @property
    def found(self) -> int:
        return int(np.isfinite(self.raw[:, 0, 0]).sum())


def smooth_landmarks(raw: np.ndarray, sigma: float = SMOOTHING) -> np.ndarray:
    """Fill the frames without a face by linear interpolation, then smooth each coordinate
    over time with a Gaussian of ``sigma`` frames (mirrored at both ends)."""
    points = np.array(raw, dtype=np.float64).reshape(len(raw), -1)
    known = np.isfinite(points[:, 0])
    if not known.any():
        raise NoFaceError("no face found in any frame")
    frames = np.arange(len(points))
    for column in range(points.shape[1]):
        points[:, column] = np.interp(frames, frames[known], points[known, column])
    if sigma > 0 and len(points) > 1:
        radius = int(np.ceil(3 * sigma))
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        kernel /= kernel.sum()
        padded = np.pad(points, ((radius, radius), (0, 0)), mode="symmetric")
        points = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(points.shape[1])], axis=1)
    return points.reshape(raw.shape)


def track_face(frames: Iterator[np.ndarray], *, face: int = 1, sigma: float = SMOOTHING,
               on_frame: Optional[Callable[[int], object]] = None) -> FaceTrack:
    """Detect and follow one face through ``frames`` (CHW photos); see the module docstring.

    Raises:
        NoFaceError: no face in any frame.
        SettingError: ``face`` is not one of the faces of the first frame.
    """
    from ..core.errors import SettingError

    raw, previous = [], None
    for index, photo in enumerate(frames):
        found = detect_faces(photo)
        if index == 0 and found and not 1 <= face <= len(found):
            raise SettingError(f"--face {face}: the first frame has {len(found)} face(s); choose 1–{len(found)}")
        if not found:
            raw.append(np.full((3, 2), np.nan))
        else:
            if previous is None:
                chosen = found[face - 1] if index == 0 else found[0]
            else:
                chosen = min(found, key=lambda d: np.linalg.norm(d.landmarks.mean(axis=0) - previous))
            previous = chosen.landmarks.mean(axis=0)
            raw.append(chosen.landmarks)
        if on_frame is not None:
            on_frame(1)
    raw = np.array(raw)
    smooth = smooth_landmarks(raw, sigma)
    return FaceTrack(raw, smooth, tuple(similarity_transform(points, LFW_TEMPLATE) for points in smooth))


def aligned_face(photo: np.ndarray, matrix: np.ndarray, config: EditConfig) -> Face:
    """A frame's face in the LFW frame (with the tracked, smoothed matrix)."""
    frame = warp_to_frame(photo, matrix)
    alignment = Alignment(matrix, frame, None, (), 1)
    size = (config.size, config.size)
    return Face(photo, crop_and_resize(frame, config.crop, size), config.crop, None, alignment)


@dataclass
class EditedFrame:
    """One frame: the full-size result for each α, the working-size rows (α = 0 first) and the
    loop's last record."""

    index: int
    results: list
    rows: np.ndarray
    progress: Progress
    seconds: float


def edit_video(net: VGG19, frames: Iterator[np.ndarray], track: FaceTrack, vectors: Sequence[dict],
               alphas: Sequence[float], config: EditConfig, video: VideoConfig, *, start: int = 0,
               previous: Sequence[np.ndarray] = (), previous_crops: Sequence[np.ndarray] = (),
               color_match: bool = True, decoder=None, fast: bool = False) -> Iterator[EditedFrame]:
    """Edit every frame (from ``start`` on) by the same attribute vector(s); see the module
    docstring. ``previous`` / ``previous_crops``: for a resumed run, the working-size rows
    and aligned crops of the frames just before ``start``, oldest first. ``decoder`` (a
    :class:`~dfi.nets.decoder.Decoder` or :class:`~dfi.nets.decoder.FastDecoder`): the first frame's rows (or every frame's when
    the warped start is off) start from the best share of the decoded change; ``fast``:
    every frame is the decoded edit alone, one encode and one decode (no optimisation, no
    temporal term)."""
    alphas = check_alphas(alphas)
    device = net.device
    if decoder is not None:
        decoder = inference_decoder(decoder, net, config.layers)
    vector = combine([{k: device.send(v) for k, v in w.items()} for w in vectors])
    offsets = tuple(sorted(set(video.temporal_frames) | {1}))
    faces: dict = {}

    def crops():
        for index, photo in enumerate(frames, start):
            faces[index] = aligned_face(photo, track.matrices[index], config)
            yield faces[index].working

    earlier_rows = list(previous)
    for flows in flows_ahead(crops(), offsets, start=start, history=previous_crops, preset=video.flow_preset):
        tick = time.perf_counter()
        face = faces.pop(flows.index)
        image = device.send(face.working[None])
        input_feats = extract(net, image, config.layers)
        targets = target_features(input_feats, scale_vector(vector, input_feats, config.scaling), [0.0, *alphas])
        earlier = {j: earlier_rows[-j] for j in offsets if j <= len(earlier_rows)}

        def loss_fn(feats, rows):
            return feature_loss(feats, {name: value[rows] for name, value in targets.items()})
        if fast:
            last = evaluate(net, decoded_starts(decoder, image, targets), loss_fn, config.layers, config.reconstruct)
        else:
            if 1 in earlier and video.init == "warped" and 1 in flows.backward:
                init = device.send(np.stack([warped_start(row, flows.backward[1]) for row in earlier[1]]))
            elif decoder is not None:  # (the shares of the change scored without the temporal term)
                init = scaled_starts(net, image, decoded_starts(decoder, image, targets), loss_fn, config.layers,
                                     config.reconstruct)[0]
            else:
                init = device.send(np.repeat(face.working[None], len(alphas) + 1, axis=0))
            last = None
            for last in reconstruct(net, init, loss_fn, config.layers, config.reconstruct,
                                    image_loss=temporal_term(net, flows, earlier, video.temporal_weight)):
                pass
        rows = np.asarray(to_cpu(last.images), dtype=np.float32)
        results = [compose(face, rows[k + 1], rows[0], color_match=color_match) for k in range(len(alphas))]
        earlier_rows = (earlier_rows + [rows])[-max(offsets):]
        yield EditedFrame(flows.index, results, rows, last, time.perf_counter() - tick)

"""Deep Feature Interpolation (Upchurch et al., CVPR 2017): the editing pipeline.

1. The input face is cropped and resized to the working size; a photo that is not in the
   LFW frame is first aligned to it (:mod:`dfi.face.align`: detect, fit, warp).
2. Source faces (attribute absent) and target faces (attribute present) come from the
   dataset index: for an indexed face by attribute similarity (``data_tools``), for any
   other photo by pixel similarity of the working crops (chainer-dfi's idea).
3. w = mean φ(targets) − mean φ(sources), scaled; targets φ(x) + α·w for every α.
4. One batched reconstruction for all α plus α = 0; the edit that reaches the output is
   z_α − z_0 (the reconstruction error of the method cancels), upsampled and added to
   the full-resolution original inside the crop (for an aligned photo, warped back into
   it), optionally through a mask.
"""
from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np

from data_tools.index import Index
from data_tools.neighbors import candidate_pools, find_neighbors

from ..core.backend import using_device
from ..core.color import match_color
from ..core.image import check_min_side, crop_and_resize, read_ahead, read_image, resize
from ..core.losses import feature_loss
from ..core.reconstruct import Progress, evaluate, reconstruct
from ..face.align import Alignment, align_face, face_mask, feather, paste_back
from ..nets.features import extract
from ..nets.vgg import VGG19
from .attributes import attribute_vector, combine, scale_vector, target_features
from .cache import FeatureCache
from .decoding import decoded_starts, inference_decoder, scaled_starts
from .settings import EditConfig, check_alphas  # noqa: F401  (their home is settings)

logger = logging.getLogger(__name__)

@dataclass
class Face:
    """An input face: the full image and its working crop (CHW RGB float32, CPU).

    ``crop`` is a box of ``full``, or, when ``alignment`` is set, a box of the aligned
    frame (``alignment.frame``).
    """

    full: np.ndarray
    working: np.ndarray
    crop: tuple[int, int, int, int]
    row: Optional[int] = None  # position in the index, when the face is indexed
    alignment: Optional[Alignment] = None


def load_face(path, config: EditConfig, *, row: Optional[int] = None,
              crop: Union[tuple[int, int, int, int], str, None] = None, face: int = 1) -> Face:
    """Read an input face.

    Args:
        crop: a box (l, t, r, b) of the image, ``"none"`` for the whole image, or ``"align"``
            to detect the ``face``-th largest face and align it to the LFW frame. Default:
            ``config.crop`` (the image is already in the dataset's frame).
    """
    full = read_image(path)
    _, height, width = full.shape
    size = (config.size, config.size)
    if crop == "align":
        alignment = align_face(full, face=face, name=str(path))
        return Face(full, crop_and_resize(alignment.frame, config.crop, size), config.crop, row, alignment)
    box = (0, 0, width, height) if crop == "none" else config.crop if crop is None else crop
    return Face(full, crop_and_resize(full, box, size), box, row)


def load_working(images_root: Path, paths: Sequence[str], config: EditConfig) -> np.ndarray:
    """The working crops of the dataset faces ``paths`` (relative to ``images_root``)."""
    return np.stack([crop_and_resize(read_image(images_root / p), config.crop,
                                     (config.size, config.size)) for p in paths])


def choose_neighbors(index: Index, face: Face, attribute: str,
                     config: EditConfig) -> tuple[list[str], list[str]]:
    """Relative paths of the K source and K target faces for ``face``."""
    if face.row is not None:
        found = find_neighbors(index.table, face.row, attribute, k=config.k, rule=config.rule,
                               exclude_person=config.exclude_person)
        return list(found.sources["path"]), list(found.targets["path"])
    source, target, _ = candidate_pools(index.table, attribute, rule=config.rule)
    small = (32, 32)
    probe = resize(face.working, small).reshape(-1)
    picked = []
    for mask, side in ((source, "source"), (target, "target")):
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            raise ValueError(f"no {side} faces for {attribute!r} in the index")
        if rows.size < config.k:
            warnings.warn(f"only {rows.size} {side} faces for {attribute!r} (asked for --k {config.k})",
                          stacklevel=2)
        paths = index.table["path"].to_numpy()[rows]
        thumbs = np.stack([resize(img, small).reshape(-1)
                           for img in load_working(index.images_root, paths, config)])
        order = np.argsort(((thumbs - probe) ** 2).sum(axis=1), kind="stable")[:config.k]
        picked.append([str(p) for p in paths[order]])
    return picked[0], picked[1]


def _mean_features(net: VGG19, index: Index, paths: Sequence[str], config: EditConfig,
                   cache: Optional[FeatureCache], progress: Optional[Callable[[int], object]]) -> dict:
    """Mean features of the faces ``paths``: cached ones read, the others computed in
    batches (the next batch's images decoded in a thread meanwhile) and cached."""
    if not paths:
        raise ValueError("mean of no images: the image list is empty")
    device = net.device
    sums, missing = None, []

    def add(part: dict) -> None:
        nonlocal sums
        sums = part if sums is None else {n: sums[n] + part[n] for n in config.layers}

    for rel in paths:
        feats = cache.get(index.images_root / rel) if cache is not None else None
        if feats is None:
            missing.append(rel)
        else:
            add({name: device.send(value) for name, value in feats.items()})
    if progress is not None and len(paths) > len(missing):
        progress(len(paths) - len(missing))
    chunks = [missing[i:i + config.batch_size] for i in range(0, len(missing), config.batch_size)]
    loads = [functools.partial(load_working, index.images_root, chunk, config) for chunk in chunks]
    for chunk, images in zip(chunks, read_ahead(loads)):
        feats = extract(net, device.send(images), config.layers, batch_size=config.batch_size)
        if cache is not None:
            for i, rel in enumerate(chunk):
                cache.put(index.images_root / rel, {n: v[i:i + 1] for n, v in feats.items()})
        add({n: v.sum(axis=0, keepdims=True) for n, v in feats.items()})
        if progress is not None:
            progress(len(chunk))
    return {name: value / len(paths) for name, value in sums.items()}


def compute_vector(net: VGG19, index: Index, sources: Sequence[str], targets: Sequence[str],
                   config: EditConfig, *, cache: Optional[FeatureCache] = None,
                   progress: Optional[Callable[[int], object]] = None) -> dict:
    """Unscaled w = mean φ(targets) − mean φ(sources) on ``net``'s device.

    Args:
        cache: read / write each neighbour's features on disk.
        progress: called with the number of faces done after every batch (a progress
            bar's ``update``); ``len(sources) + len(targets)`` in all.
    """
    return attribute_vector(_mean_features(net, index, sources, config, cache, progress),
                            _mean_features(net, index, targets, config, cache, progress))


def sweep(net: VGG19, face: Face, vectors: Sequence[dict], alphas: Sequence[float],
          config: EditConfig, *, decoder=None, fast: bool = False) -> Iterator[Progress]:
    """Reconstruct the face for every α at once; batch row 0 is α = 0 (the baseline).

    Args:
        decoder: a :class:`dfi.nets.decoder.Decoder` (``Decoder.load(path)``) or
            :class:`~dfi.nets.decoder.FastDecoder` for ``net``'s features: each α row
            starts from x + c·(D(t_α) − D(φ(x))) instead of x, the share c of the decoded change
            whose objective is lowest (:func:`scaled_starts`; its forward passes are counted
            in ``evaluations``, the shares chosen are each record's ``start_shares``).
        fast: with a decoder, no optimisation: one progress record of those starts.

    Yields:
        :class:`Progress` for the batch ``[0, *alphas]``.
    """
    alphas = check_alphas(alphas)
    device = net.device

    def loss_fn(feats, rows):
        return feature_loss(feats, {name: value[rows] for name, value in targets.items()})

    with using_device(device):  # the setup (not across a yield: the caller's thread may differ)
        image = device.send(face.working[None])
        input_feats = extract(net, image, config.layers)
        vector = scale_vector(combine([{k: device.send(v) for k, v in w.items()} for w in vectors]),
                              input_feats, config.scaling)
        targets = target_features(input_feats, vector, [0.0, *alphas])
        if decoder is None:
            start = device.xp.repeat(image, len(alphas) + 1, axis=0)
        else:
            decoder = inference_decoder(decoder, net, config.layers)
            start = decoded_starts(decoder, image, targets)
        spent, shares = 0, ()  # the decoded change's shares are tried by forward passes, counted as whole passes
        if fast:  # every row the whole decoded change (row 0's is none)
            progress = evaluate(net, start, loss_fn, config.layers, config.reconstruct)
            progress.start_shares = (0.0, *[1.0] * len(alphas))
        elif decoder is not None:
            start, shares, spent = scaled_starts(net, image, start, loss_fn, config.layers, config.reconstruct)
    if fast:
        yield progress
        return
    for progress in reconstruct(net, start, loss_fn, config.layers, config.reconstruct):
        progress.evaluations += spent
        progress.start_shares = tuple(shares)
        yield progress


def compose(face: Face, edited: np.ndarray, baseline: np.ndarray, *,
            color_match: bool = True, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Full-resolution result: original + upsampled (edited − baseline) inside the crop
    (for an aligned face: inside the frame's crop, warped back into the photo).

    Args:
        face: the input face.
        edited, baseline: working-size reconstructions (CHW, CPU) for α and α = 0.
        color_match: first match ``edited``'s colour statistics to ``baseline``'s.
        mask: optional (H, W) weights in [0, 1] at the full image size.
    """
    if color_match:
        edited = match_color(edited, baseline)
    left, top, right, bottom = face.crop
    change = resize(edited - baseline, (bottom - top, right - left))
    if face.alignment is None:
        weight = feather((bottom - top, right - left))
        if mask is not None:
            weight = weight * mask[top:bottom, left:right]
        out = face.full.copy()
        out[:, top:bottom, left:right] += change * weight
    else:
        frame = face.alignment.frame
        edited_frame = frame.copy()
        edited_frame[:, top:bottom, left:right] += change
        out = paste_back(face.full, edited_frame, frame, face.alignment.matrix,
                         face_mask(frame.shape[1:], box=face.crop))
        if mask is not None:
            out = face.full + (out - face.full) * mask[None]
    return np.clip(out, 0, 255).astype(np.float32)


def read_mask(path, shape: tuple[int, int]) -> np.ndarray:
    """A greyscale mask image as (H, W) weights in [0, 1], resized to ``shape``."""
    mask = check_min_side(read_image(path), f"--mask {path}").mean(axis=0, keepdims=True) / 255.0
    return resize(mask, shape)[0].clip(0, 1)

"""Temporally consistent style transfer (Ruder, Dosovitskiy & Brox, GCPR 2016) on the shared
reconstruction loop.

Frame by frame, each frame is optimised against the style loss of :mod:`dfi.style.gatys`
plus a temporal term that ties it to the earlier outputs warped into it along the optical
flow, where the flow can be trusted: weight · Σ_j mean c_j (x − ω_j)² in pixel units (see
:func:`dfi.core.losses.temporal_loss`; j over ``temporal_frames``, masks combined nearest
first). Each frame after the first starts from the previous output warped into it (pixels
whose source lies outside the frame take its nearest edge pixel), which also makes it converge in
fewer iterations. The style's Gram matrices are computed once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from ..core.backend import to_cpu
from ..core.image import preprocess, resize
from ..core.losses import temporal_loss
from ..core.reconstruct import Progress, pixel_scale, reconstruct
from ..nets.vgg import VGG19
from ..style.gatys import StyleConfig, blend_weights, finish, initial_image, make_loss, prepare_inputs, targets
from .flow import FrameFlows, flows_ahead, warp
from .settings import VideoConfig

@dataclass
class FrameResult:
    """One finished frame: its number, the result at the working size (CHW, CPU, before
    colour preservation), the loop's last record and the seconds it took."""

    index: int
    image: np.ndarray
    progress: Progress
    seconds: float


def temporal_term(net: VGG19, flows: FrameFlows, earlier: dict, weight: float):
    """The reconstruction loop's image term for one frame, or None when it has nothing to
    compare with: the earlier outputs (``earlier``: {j: (n, 3, H, W) or CHW}, one row per
    image being optimised) warped into the frame, each against its own row."""
    if weight <= 0 or not flows.backward:
        return None
    device, xp = net.device, net.device.xp
    warped, masks = [], []
    for j, flow in flows.backward.items():
        if j not in earlier:
            continue
        rows = earlier[j] if earlier[j].ndim == 4 else earlier[j][None]
        pictures = np.stack([warp(row, flow)[0] for row in rows])
        warped.append(device.send(preprocess(pictures, net.convention)))
        masks.append(device.send(flows.masks[j][None, None].astype(np.float32)))
    if not warped:
        return None
    scale = pixel_scale(net.convention, xp)

    def image_loss(x, rows):
        return {"temporal": weight * temporal_loss(x, [target[rows] for target in warped], masks, scale)}
    return image_loss


def warped_start(earlier: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """An earlier output warped into this frame. Where its source lies outside the frame the
    earlier output's nearest edge pixel is taken, not the frame itself: a seam between the
    stylised picture and the raw frame costs the optimiser many iterations to smooth (at
    128² it tripled the start's total variation), while the temporal term ignores those
    pixels either way (their mask is 0)."""
    return warp(earlier, flow, clamp=True)[0].astype(np.float32)


def start_image(flows: FrameFlows, earlier: dict, video: VideoConfig, config: StyleConfig,
                content: np.ndarray, styles: Sequence[np.ndarray], seed: int) -> np.ndarray:
    """Where a frame's optimisation starts (CHW, working size)."""
    shape = flows.frame.shape[1:]
    if flows.index == 0 or 1 not in earlier:
        return initial_image(config, content, styles, shape)
    if video.init == "warped" and 1 in flows.backward:
        return warped_start(earlier[1], flows.backward[1])
    if video.init == "content":
        return content.copy()
    rng = np.random.default_rng(seed + flows.index)
    return np.clip(rng.normal(127.5, 40.0, (3, *shape)), 0, 255).astype(np.float32)


def stylize_video(net: VGG19, frames: Iterator[np.ndarray], styles: Sequence[np.ndarray],
                  config: StyleConfig, video: VideoConfig, shape: tuple[int, int], *,
                  start: int = 0, previous: Sequence[np.ndarray] = (),
                  previous_frames: Sequence[np.ndarray] = ()) -> Iterator[FrameResult]:
    """Stylise a stream of frames, one result per frame.

    Args:
        net: the network, on the device to use.
        frames: CHW RGB [0, 255] frames (any size; resized to ``shape``), from ``start`` on.
        styles: the style images.
        config: the style settings (one stage: ``shape``; colour preservation applies per
            frame).
        video: the frame loop's settings.
        shape: the working (H, W).
        previous, previous_frames: for a resumed run, the outputs (before colour
            preservation) and the working-size input frames just before ``start``, oldest first.
    """
    offsets = video.temporal_frames if video.temporal_weight > 0 or video.init == "warped" else ()
    offsets = tuple(sorted(set(offsets) | ({1} if video.init == "warped" else set())))
    blend = blend_weights(config, len(styles)) if styles else np.zeros(0)
    long_side = max(shape)
    reference, matched = None, list(styles)
    grams = None
    earlier_outputs = list(previous)
    layers = config.layers
    working = (resize(frame, shape) for frame in frames)
    for flows in flows_ahead(working, offsets, start=start, history=previous_frames,
                             preset=video.flow_preset):
        tick = time.perf_counter()
        if reference is None:  # colour preservation matches the styles to the first frame
            reference, matched = prepare_inputs(flows.frame, styles, config)
            _, grams = targets(net, None, matched, blend, config, long_side)
        content, _ = prepare_inputs(flows.frame, [], config)
        content_t, _ = targets(net, content, [], blend, config, long_side)
        earlier = {j: earlier_outputs[-j] for j in offsets if j <= len(earlier_outputs)}
        init = start_image(flows, earlier, video, config, content, matched, config.seed)
        last = None
        for last in reconstruct(net, net.device.send(init[None]), make_loss(content_t, grams, config), layers,
                                config.reconstruct,
                                image_loss=temporal_term(net, flows, earlier, video.temporal_weight)):
            pass
        result = np.asarray(to_cpu(last.images[0]), dtype=np.float32)
        earlier_outputs = (earlier_outputs + [result])[-max(offsets, default=1):]
        yield FrameResult(flows.index, result, last, time.perf_counter() - tick)


def finish_frame(result: FrameResult, frame: np.ndarray, config: StyleConfig,
                 size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """A result as it is written: colour preservation against the frame, at ``size``."""
    image = finish(result.image, resize(frame, result.image.shape[1:]), config)
    return resize(image, size) if size is not None and tuple(size) != image.shape[1:] else image


def one_pass_video(transfer, frames: Iterator[np.ndarray], shape: tuple[int, int], *, blend: float = 0.0,
                   start: int = 0, previous: Optional[np.ndarray] = None,
                   previous_frame: Optional[np.ndarray] = None, preset: str = "medium") -> Iterator[tuple]:
    """(index, output) of every frame stylised on its own by ``transfer(frame)`` (AdaIN,
    WCT) at ``shape``. With ``blend`` in (0, 1] each output is pulled towards the previous
    output warped along the optical flow, where the flow is consistent (Ruder et al.'s
    masks): y ← y + blend · m · (warp(y_prev) − y) — a cheap remedy for flicker.
    ``previous`` / ``previous_frame``: the output and the frame (at ``shape``) just before
    ``start``, for a resumed run."""
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"--temporal-blend {blend} must be within 0…1")
    offsets = (1,) if blend > 0 else ()
    history = [previous_frame] if previous_frame is not None and blend > 0 else []
    last = previous
    for flows in flows_ahead((resize(f, shape) for f in frames), offsets, start=start, history=history,
                             preset=preset):
        out = np.asarray(transfer(flows.frame), np.float32)
        if last is not None and 1 in flows.backward:
            warped, _ = warp(last, flows.backward[1])
            out = out + np.float32(blend) * flows.masks[1][None].astype(np.float32) * (warped - out)
        last = out
        yield flows.index, out

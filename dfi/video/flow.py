"""Optical flow between frames (OpenCV's DIS), the consistency masks of Ruder, Dosovitskiy &
Brox (2016), and warping a picture along a flow.

``backward = flow(frame i → frame i−j)`` says where each pixel of frame i came from:
``frame_i(x) ≈ frame_{i−j}(x + backward(x))``, so the previous output seen from frame i is
``previous(x + backward(x))`` (bilinear). Its mask is 0 where that cannot be trusted
(artistic-videos' consistency checker): where the forward flow does not lead back
(|ŵ + w(x + ŵ)|² ≥ 0.01 (|ŵ|² + |w(x + ŵ)|²) + 0.5: occluded or disoccluded), at motion
boundaries (|∇u|² + |∇v|² > 0.01 |ŵ|² + 0.002) and where x + ŵ leaves the frame; then it is
lightly smoothed. Flows are computed ahead in a thread (OpenCV releases the GIL), so the
optimiser does not wait for them.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

PRESETS = ("ultrafast", "fast", "medium")


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ImportError("video needs PyAV and OpenCV: pip install 'dfi[video]'") from None
    return cv2


def _grey(image: np.ndarray) -> np.ndarray:
    """CHW RGB float [0, 255] → (H, W) uint8 luminance."""
    luma = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)


def dis_flow(first: np.ndarray, second: np.ndarray, *, preset: str = "medium") -> np.ndarray:
    """Dense flow (H, W, 2) float32 (dx, dy) with ``first(x) ≈ second(x + flow(x))``; the
    frames are CHW RGB [0, 255]. OpenCV's DIS (Kroeger et al. 2016)."""
    cv2 = _cv2()
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
    return dis.calc(_grey(first), _grey(second), None)


def warp(image: np.ndarray, flow: np.ndarray, *, clamp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``image(x + flow(x))`` for CHW ``image`` (bilinear), and the (H, W) bool of pixels
    whose source lies inside the image. Where it lies outside the result is 0 (never a fill
    colour), or with ``clamp`` the image's nearest edge pixel (artistic-videos' warp: a start
    image with no seam where the frame revealed something new)."""
    cv2 = _cv2()
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x, map_y = grid_x + flow[..., 0], grid_y + flow[..., 1]
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    border = cv2.BORDER_REPLICATE if clamp else cv2.BORDER_CONSTANT
    warped = np.stack([cv2.remap(np.ascontiguousarray(c, dtype=np.float32), map_x, map_y, cv2.INTER_LINEAR,
                                 borderMode=border, borderValue=0.0) for c in image])
    return (warped if clamp else warped * inside), inside


def consistency(backward: np.ndarray, forward: np.ndarray, *, smooth: float = 1.0) -> np.ndarray:
    """Ruder et al.'s weights (H, W) in [0, 1] for ``backward`` (i → i−j), checked against
    ``forward`` (i−j → i): see the module docstring."""
    cv2 = _cv2()
    back_of_forward, inside = warp(forward.transpose(2, 0, 1), backward)
    back_of_forward = back_of_forward.transpose(1, 2, 0)
    total = backward + back_of_forward
    occluded = (total ** 2).sum(-1) >= 0.01 * ((backward ** 2).sum(-1) + (back_of_forward ** 2).sum(-1)) + 0.5
    du_y, du_x = np.gradient(backward[..., 0])
    dv_y, dv_x = np.gradient(backward[..., 1])
    boundary = du_x ** 2 + du_y ** 2 + dv_x ** 2 + dv_y ** 2 > 0.01 * (backward ** 2).sum(-1) + 0.002
    weights = (~occluded & ~boundary & inside).astype(np.float32)
    if smooth > 0:
        weights = cv2.GaussianBlur(weights, (0, 0), smooth) * inside
    return weights


def combine_closest_first(masks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Long-term masks, the nearest frame first: each keeps only what the nearer ones do not
    cover, c_j ← max(c_j − Σ_{k nearer} c_k, 0) (Ruder et al. 2016, eq. 9)."""
    out, covered = [], 0.0
    for mask in masks:
        out.append(np.maximum(mask - covered, 0.0).astype(np.float32))
        covered = covered + mask
    return out


@dataclass
class FrameFlows:
    """One frame and, for each offset j it can look back (j ≤ its number), the backward flow
    to frame i−j and its (combined) consistency mask."""

    index: int
    frame: np.ndarray  # CHW at the working size
    backward: dict  # {j: (H, W, 2)}
    masks: dict  # {j: (H, W)}


def flows_ahead(frames: Iterator[np.ndarray], offsets: Sequence[int], *, start: int = 0,
                history: Sequence[np.ndarray] = (), preset: str = "medium",
                lookahead: int = 2) -> Iterator[FrameFlows]:
    """Frames with their flows to the frames ``offsets`` back, computed in a thread up to
    ``lookahead`` frames ahead of the consumer (memory stays flat). ``history`` holds the
    working-size frames just before ``start`` (for a resumed run), oldest first."""
    offsets = sorted(set(offsets))
    results: queue.Queue = queue.Queue(maxsize=lookahead)
    stop = threading.Event()
    done = object()

    def hand_over(item) -> bool:
        """Queue ``item`` for the consumer; False once the consumer has gone."""
        while not stop.is_set():
            try:
                results.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        past = list(history)[-max(offsets):] if offsets else []
        try:
            for index, frame in enumerate(frames, start):
                backward, masks = {}, []
                for j in offsets:
                    if j <= len(past):
                        earlier = past[-j]
                        backward[j] = dis_flow(frame, earlier, preset=preset)
                        masks.append(consistency(backward[j], dis_flow(earlier, frame, preset=preset)))
                combined = dict(zip([j for j in offsets if j in backward], combine_closest_first(masks)))
                if not hand_over(FrameFlows(index, frame, backward, combined)):
                    return
                if offsets:
                    past = (past + [frame])[-max(offsets):]
            hand_over(done)
        except BaseException as exc:  # the consumer raises it
            hand_over(exc)

    thread = threading.Thread(target=work, daemon=True, name="dfi-flow")
    thread.start()
    try:
        while True:
            item = results.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)

"""2×2 / stride 2 pooling of channels-last maps (N, H, W, C) as Chainer functions, without
im2col: four strided views of each window, NumPy/CuPy alike; on a CPU max pooling's
forward and backward are one compiled pass each (:mod:`dfi.nets.compiled`)."""
from __future__ import annotations

import numpy as np

from .. import _compat  # noqa: F401
from chainer import function_node

from ..core.backend import get_array_module
from . import threads


def _windows(x, fill: float):
    """The four inputs of each 2×2 window of ``x`` (N, H, W, C), as strided views. With
    ``fill`` −inf an odd last row or column is pooled on its own (ceil mode, max pooling);
    with ``fill`` None it is dropped (floor mode, average pooling)."""
    xp = get_array_module(x)
    height, width = x.shape[1:3]
    if fill is None:
        x = x[:, :height - height % 2, :width - width % 2]
    elif height % 2 or width % 2:
        padded = xp.full((x.shape[0], height + height % 2, width + width % 2, x.shape[3]), fill, xp.float32)
        padded[:, :height, :width] = x
        x = padded
    return [x[:, r::2, s::2] for r in (0, 1) for s in (0, 1)]


def _window_max(windows):
    xp = get_array_module(windows[0])
    y = xp.empty(windows[0].shape, dtype=xp.float32)

    def biggest(out, a, b, c, d):
        xp.maximum(a, b, out=out)
        xp.maximum(out, c, out=out)
        xp.maximum(out, d, out=out)
    threads.split(biggest, y, *windows, axis=(0, 1))
    return y


def _max_grad(g0, g1, g2, g3, w0, w1, w2, w3, y, gy) -> None:
    """Each window's gradient ``gy`` into the first of its inputs ``w0…w3`` that equals
    the window's maximum ``y``, the others' set to 0 (``g0…g3``: the gradient's four
    strided views; all of pooled shape). Which windows are already given out is kept as a
    boolean mask (one byte a value: its updates cost a quarter of a float pass's memory)."""
    xp = get_array_module(gy)
    taken = xp.equal(w0, y)
    xp.multiply(gy, taken, out=g0)
    wins = xp.empty_like(taken)
    for k, (g, w) in enumerate(((g1, w1), (g2, w2), (g3, w3))):
        xp.equal(w, y, out=wins)
        xp.greater(wins, taken, out=wins)  # equal to the maximum, and no earlier input was
        xp.multiply(gy, wins, out=g)
        if k < 2:
            xp.logical_or(taken, wins, out=taken)


class Pool2x2(function_node.FunctionNode):
    """2×2 / stride 2 pooling of channels-last maps. ``max``: ceil mode (Caffe's, as VGG was
    trained): an odd last row or column is pooled on its own; keeps its input (which the
    convolution before it keeps anyway) and its output (a quarter of that), and finds the
    winners again when going back.
    ``average``: floor mode, as ``chainer.functions.average_pooling_2d``."""

    def __init__(self, kind: str = "max"):
        self.kind = kind

    def forward(self, inputs):
        x, = inputs
        self.shape = x.shape
        if self.kind == "max":
            self.retain_inputs((0,))
            self.retain_outputs((0,))
            xp = get_array_module(x)
            with threads.kernel_section(xp):
                compiled = threads.compiled(xp)
                if compiled:
                    y = xp.empty((x.shape[0], -(-x.shape[1] // 2), -(-x.shape[2] // 2), x.shape[3]), dtype=xp.float32)
                    compiled.max_pool(x, y)
                    return y,
                return _window_max(_windows(x, -np.inf)),
        a, b, c, d = _windows(x, None)
        return (a + b + c + d) * np.float32(0.25),

    def backward(self, indexes, grad_outputs):
        kept = (*self.get_retained_inputs(), *self.get_retained_outputs()) if self.kind == "max" else ()
        return Pool2x2Grad(self.kind, self.shape).apply((*kept, grad_outputs[0]))


class Pool2x2Grad(function_node.FunctionNode):
    """The input gradient of :class:`Pool2x2`: for max pooling each pooled gradient goes to
    the first input of its window that holds the maximum (as an argmax would pick it)."""

    def __init__(self, kind: str, shape: tuple):
        self.kind, self.shape = kind, shape

    def forward(self, inputs):
        gy = inputs[-1]
        xp = get_array_module(gy)
        height, width = self.shape[1:3]
        shape = (self.shape[0], height + height % 2, width + width % 2, self.shape[3])
        corners = ((0, 0), (0, 1), (1, 0), (1, 1))
        if self.kind == "average":  # (floor mode: an odd last row or column gets 0)
            gx = (xp.zeros if height % 2 or width % 2 else xp.empty)(shape, dtype=xp.float32)
            rows, cols = gy.shape[1] * 2, gy.shape[2] * 2
            for r, s in corners:
                xp.multiply(gy, np.float32(0.25), out=gx[:, r:rows:2, s:cols:2])
            return gx[:, :height, :width],
        x, y, _ = inputs
        compiled = threads.compiled(xp)
        if compiled:
            gx = xp.empty(self.shape, dtype=xp.float32)
            with threads.kernel_section(xp):
                compiled.max_pool_grad(x, y, gy, gx)
            return gx,
        gx = xp.empty(shape, dtype=xp.float32)  # (its four strided views cover all of it)
        corners = [gx[:, r::2, s::2] for r, s in corners]
        with threads.kernel_section(xp):
            threads.split(_max_grad, corners[0], *corners[1:], *_windows(x, -np.inf), y, gy, axis=(0, 1),
                          temporaries=True)
        return gx[:, :height, :width],

    def backward(self, indexes, grad_outputs):
        raise NotImplementedError("dfi's pooling has no second derivative")


def pool2x2(x, kind: str = "max"):
    """Apply :class:`Pool2x2` (``"max"`` or ``"average"``) to a channels-last Variable or array."""
    return Pool2x2(kind).apply((x,))[0]

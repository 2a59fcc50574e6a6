"""The Winograd convolution's tile transforms on a CPU as compiled loops (Numba): each
reads its input once and writes its output once, where the NumPy steps need a padded copy,
a strided gather, a GEMM by Bᵀ⊗Bᵀ (α⁴ multiplies per tile and channel, against 2α³ for the
two small products done here, fewer still as Bᵀ's zeros are skipped) and a scatter, each a
pass over memory. Measured on one core at 200² × 64 channels, F(6): the input transform 9.0
→ 5.0 ms, the output transform with bias and ReLU 6.8 → 4.0 ms (BENCHMARKS.md, issue 26).

Maps are channels-last, so each step of a tile runs along the channels, which the compiler
vectorises (indexed from 0 in whole arrays: views or offsets inside the loops cost 2–3×).
The threads take ranges of tiles (:func:`dfi.nets.threads.ranges`); the adjoint's
overlapping tiles, summed into one frame, take ranges of tile rows in two alternate rounds,
so no two threads ever add to the same pixel. Tiles are numbered image by image, row by
row: tile ``t`` is image ``t // (down·across)``, row ``t // across % down``, column ``t %
across``, as :mod:`dfi.nets.conv`'s (α², tiles, C) matrices order them. Only float32 NumPy
arrays come here; CuPy's path is :mod:`dfi.nets.conv`'s own (one launch per step).
"""
from __future__ import annotations

import numba
import numpy as np

from . import threads

#: only multiply-add contraction: no reassociation (the loops vectorise along the channels
#: without it) and NaN stays NaN through the ReLU
_FAST = {"contract"}
_JIT = {"nogil": True, "cache": True, "fastmath": _FAST, "error_model": "numpy"}


@numba.njit(**_JIT)
def _input_tiles(x, b_t, out, shift, down, across, t0, t1):  # pragma: no cover (compiled)
    batch, height, width, channels = x.shape
    alpha = b_t.shape[0]
    m = alpha - 2
    d = np.empty((alpha, alpha, channels), np.float32)
    rows = np.empty((alpha, alpha, channels), np.float32)
    for t in range(t0, t1):
        n, ty, tx = t // (down * across), t // across % down, t % across
        y0, x0 = m * ty - shift, m * tx - shift
        for i in range(alpha):
            for j in range(alpha):
                if 0 <= y0 + i < height and 0 <= x0 + j < width:
                    for c in range(channels):
                        d[i, j, c] = x[n, y0 + i, x0 + j, c]
                else:
                    for c in range(channels):
                        d[i, j, c] = 0.0
        for i in range(alpha):  # rows = Bᵀ d
            for j in range(alpha):
                for c in range(channels):
                    rows[i, j, c] = 0.0
            for k in range(alpha):
                b = b_t[i, k]
                if b != 0.0:
                    for j in range(alpha):
                        for c in range(channels):
                            rows[i, j, c] += b * d[k, j, c]
        for i in range(alpha):  # V = (Bᵀ d) B
            for l in range(alpha):
                p = i * alpha + l
                for c in range(channels):
                    out[p, t, c] = 0.0
                for j in range(alpha):
                    b = b_t[l, j]
                    if b != 0.0:
                        for c in range(channels):
                            out[p, t, c] += b * rows[i, j, c]


@numba.njit(**_JIT)
def _output_tiles(products, a_t, bias, relu, out, down, across, t0, t1):  # pragma: no cover
    batch, height, width, channels = out.shape
    m, alpha = a_t.shape
    rows = np.empty((m, alpha, channels), np.float32)
    y = np.empty(channels, np.float32)
    for t in range(t0, t1):
        n, ty, tx = t // (down * across), t // across % down, t % across
        for a in range(m):  # rows = Aᵀ M
            for l in range(alpha):
                for c in range(channels):
                    rows[a, l, c] = 0.0
            for i in range(alpha):
                w = a_t[a, i]
                if w != 0.0:
                    for l in range(alpha):
                        p = i * alpha + l
                        for c in range(channels):
                            rows[a, l, c] += w * products[p, t, c]
        for a in range(min(m, height - m * ty)):  # Y = (Aᵀ M) A + b, inside the maps
            for b in range(min(m, width - m * tx)):
                for c in range(channels):
                    y[c] = bias[c]
                for l in range(alpha):
                    w = a_t[b, l]
                    if w != 0.0:
                        for c in range(channels):
                            y[c] += w * rows[a, l, c]
                yy, xx = m * ty + a, m * tx + b
                if relu:  # (NaN stays NaN, as NumPy's maximum keeps it)
                    for c in range(channels):
                        out[n, yy, xx, c] = 0.0 if y[c] <= 0.0 else y[c]
                else:
                    for c in range(channels):
                        out[n, yy, xx, c] = y[c]


@numba.njit(**_JIT)
def _output_adjoint(gy, mask, gated, a_t, out, down, across, t0, t1):  # pragma: no cover
    batch, height, width, channels = gy.shape
    m, alpha = a_t.shape
    g = np.empty((m, m, channels), np.float32)
    rows = np.empty((alpha, m, channels), np.float32)
    for t in range(t0, t1):
        n, ty, tx = t // (down * across), t // across % down, t % across
        for a in range(m):
            for b in range(m):
                yy, xx = m * ty + a, m * tx + b
                if yy < height and xx < width:
                    if gated:
                        for c in range(channels):
                            g[a, b, c] = gy[n, yy, xx, c] if mask[n, yy, xx, c] > 0.0 else 0.0
                    else:
                        for c in range(channels):
                            g[a, b, c] = gy[n, yy, xx, c]
                else:
                    for c in range(channels):
                        g[a, b, c] = 0.0
        for i in range(alpha):  # rows = A g
            for b in range(m):
                for c in range(channels):
                    rows[i, b, c] = 0.0
            for a in range(m):
                w = a_t[a, i]
                if w != 0.0:
                    for b in range(m):
                        for c in range(channels):
                            rows[i, b, c] += w * g[a, b, c]
        for i in range(alpha):  # dM = (A g) Aᵀ
            for l in range(alpha):
                p = i * alpha + l
                for c in range(channels):
                    out[p, t, c] = 0.0
                for b in range(m):
                    w = a_t[b, l]
                    if w != 0.0:
                        for c in range(channels):
                            out[p, t, c] += w * rows[i, b, c]


@numba.njit(**_JIT)
def _input_adjoint(grads, b_t, frame, down, across, r0, r1):  # pragma: no cover
    channels = frame.shape[3]
    alpha = b_t.shape[0]
    m = alpha - 2
    rows = np.empty((alpha, alpha, channels), np.float32)
    for t in range(r0 * across, r1 * across):  # tile rows r0…r1 − 1 of the whole batch
        n, ty, tx = t // (down * across), t // across % down, t % across
        for r in range(alpha):  # rows = B dV
            for l in range(alpha):
                for c in range(channels):
                    rows[r, l, c] = 0.0
            for i in range(alpha):
                b = b_t[i, r]
                if b != 0.0:
                    for l in range(alpha):
                        p = i * alpha + l
                        for c in range(channels):
                            rows[r, l, c] += b * grads[p, t, c]
        for r in range(alpha):  # dd = (B dV) Bᵀ, summed into the overlapping frame
            for s in range(alpha):
                yy, xx = m * ty + r, m * tx + s
                for l in range(alpha):
                    b = b_t[l, s]
                    if b != 0.0:
                        for c in range(channels):
                            frame[n, yy, xx, c] += b * rows[r, l, c]


def _f32(matrix) -> np.ndarray:
    return np.ascontiguousarray(matrix, dtype=np.float32)


def input_transform(x, b_t, out, *, shift: int, down: int, across: int) -> None:
    """``out[p, t] = (Bᵀ d_t B)[p]`` for every α × α input tile d_t (stride m) of channels-last
    ``x`` (N, H, W, C), read from pixel (m·row − shift, m·column − shift) on, zero outside
    the maps; ``out`` is (α², N·down·across, C)."""
    b_t = _f32(b_t)
    threads.ranges(lambda t0, t1: _input_tiles(x, b_t, out, shift, down, across, t0, t1), out.shape[1], out.size)


def output_transform(products, a_t, out, *, bias=None, relu: bool = False) -> None:
    """``out``'s m × m output tiles (channels-last (N, H, W, O), the last tiles cut at the
    maps' edge) ``= Aᵀ M_t A`` for the α² products ``products[:α², t]`` of each tile, plus
    ``bias`` (O,), then with ``relu`` max(·, 0)."""
    batch, height, width, channels = out.shape
    m = a_t.shape[0]
    down, across = -(-height // m), -(-width // m)
    bias = np.zeros(channels, np.float32) if bias is None else _f32(bias)
    a_t = _f32(a_t)
    threads.ranges(lambda t0, t1: _output_tiles(products, a_t, bias, relu, out, down, across, t0, t1),
                   batch * down * across, products.size)


def output_adjoint(gy, a_t, out, *, mask=None) -> None:
    """The adjoint of :func:`output_transform`'s tiles: ``out[:, t] = A g_t Aᵀ`` (α², tiles,
    O) for the m × m tiles g_t of ``gy`` (N, H, W, O), zero beyond the maps, gated by
    ``mask > 0`` where given (the ReLU's output)."""
    batch, height, width, channels = gy.shape
    m = a_t.shape[0]
    down, across = -(-height // m), -(-width // m)
    a_t = _f32(a_t)
    gate = gy if mask is None else mask
    threads.ranges(lambda t0, t1: _output_adjoint(gy, gate, mask is not None, a_t, out, down, across, t0, t1),
                   out.shape[1], out.size)


def input_adjoint(grads, b_t, frame) -> None:
    """The adjoint of :func:`input_transform` (shift 1) summed into ``frame`` (N, m·down + 2,
    m·across + 2, C), which it overwrites: each tile's B dV Bᵀ added at its place, so the
    frame's inside ``[:, 1:H + 1, 1:W + 1]`` is the input gradient."""
    batch, rows, cols, channels = frame.shape
    m = len(b_t) - 2
    b_t = _f32(b_t)
    down, across = (rows - 2) // m, (cols - 2) // m
    threads.split(lambda part: part.fill(0), frame, axis=(0, 1))
    threads.ranges(lambda r0, r1: _input_adjoint(grads, b_t, frame, down, across, r0, r1), batch * down,
                   grads.size, alternate=True)

"""The kernels' loops compiled for a CPU (Numba): the Winograd tile transforms and max
pooling, each one pass that reads its inputs once and writes its output once.

The tile transforms replace the NumPy steps' padded copy, strided gather, GEMM by Bᵀ⊗Bᵀ
(α⁴ multiplies per tile and channel, against 2α³ for the two small products here, fewer
still as Bᵀ's zeros are skipped) and scatter, each a pass over memory. Measured on one core
at 200² × 64 channels, F(6): the input transform 9.0 → 5.0 ms, the output transform with
bias and ReLU 6.8 → 4.0 ms (BENCHMARKS.md, issue 26). Max pooling's backward finds each
window's winner in the same pass that routes its gradient (NumPy: thirteen passes).

Maps are channels-last, so each step runs along the channels, which the compiler vectorises
(indexed from 0 in whole arrays: views or offsets inside the loops cost 2–3×). The threads
take ranges of tiles or rows (:func:`dfi.nets.threads.ranges`); the adjoint's overlapping
tiles, summed into one frame, take ranges of tile rows in two alternate rounds, so no two
threads ever add to the same pixel. Tiles are numbered image by image, row by row: tile
``t`` is image ``t // (down·across)``, row ``t // across % down``, column ``t % across``,
as :mod:`dfi.nets.conv`'s (α², tiles, C) matrices order them. Only float32 NumPy arrays
come here; CuPy's path is :mod:`dfi.nets.conv`'s and :mod:`dfi.nets.pool`'s own.
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
def _combine_columns(rows, i, matrix, out, t):  # pragma: no cover (compiled)
    """``out[i·L + l, t] = Σ_j matrix[l, j] · rows[i, j]`` for l < L (``matrix``: (L, J))."""
    points, columns = matrix.shape
    channels = rows.shape[2]
    for l in range(points):
        p = i * points + l
        for c in range(channels):
            out[p, t, c] = 0.0
        for j in range(columns):
            w = matrix[l, j]
            if w != 0.0:
                for c in range(channels):
                    out[p, t, c] += w * rows[i, j, c]


@numba.njit(**_JIT)
def _combine_tile(matrix, tile, rows):  # pragma: no cover
    """``rows[i, j] = Σ_k matrix[i, k] · tile[k, j]`` (``tile``: (K, J, C), ``rows``: (I, J, C))."""
    count, points = matrix.shape
    width, channels = rows.shape[1:]
    for i in range(count):
        for j in range(width):
            for c in range(channels):
                rows[i, j, c] = 0.0
        for k in range(points):
            w = matrix[i, k]
            if w != 0.0:
                for j in range(width):
                    for c in range(channels):
                        rows[i, j, c] += w * tile[k, j, c]


@numba.njit(**_JIT)
def _combine_points(matrix, source, t, rows):  # pragma: no cover
    """``rows[r, l] = Σ_i matrix[r, i] · source[i·L + l, t]`` (``rows``: (R, L, C), the
    left-hand product of tile ``t``'s points, ``source`` (points, tiles, C))."""
    count, points = matrix.shape
    width, channels = rows.shape[1:]
    for r in range(count):
        for l in range(width):
            for c in range(channels):
                rows[r, l, c] = 0.0
        for i in range(points):
            w = matrix[r, i]
            if w != 0.0:
                for l in range(width):
                    p = i * width + l
                    for c in range(channels):
                        rows[r, l, c] += w * source[p, t, c]


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
        _combine_tile(b_t, d, rows)  # rows = Bᵀ d
        for i in range(alpha):  # V = (Bᵀ d) B
            _combine_columns(rows, i, b_t, out, t)


@numba.njit(**_JIT)
def _output_tiles(products, a_t, bias, relu, out, down, across, t0, t1):  # pragma: no cover
    batch, height, width, channels = out.shape
    m, alpha = a_t.shape
    rows = np.empty((m, alpha, channels), np.float32)
    y = np.empty(channels, np.float32)
    for t in range(t0, t1):
        n, ty, tx = t // (down * across), t // across % down, t % across
        _combine_points(a_t, products, t, rows)  # rows = Aᵀ M
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
def _output_adjoint(gy, steps, mask, gated, a_matrix, out, down, across, t0, t1):  # pragma: no cover
    batch, height, width, channels = mask.shape
    step_n, step_y, step_x = steps
    alpha, m = a_matrix.shape  # (A: the transposed Aᵀ)
    g = np.empty((m, m, channels), np.float32)
    rows = np.empty((alpha, m, channels), np.float32)
    for t in range(t0, t1):
        n, ty, tx = t // (down * across), t // across % down, t % across
        for a in range(m):
            for b in range(m):
                yy, xx = m * ty + a, m * tx + b
                if yy < height and xx < width:
                    pixel = n * step_n + yy * step_y + xx * step_x
                    if gated:
                        for c in range(channels):
                            g[a, b, c] = gy[pixel, c] if mask[n, yy, xx, c] > 0.0 else 0.0
                    else:
                        for c in range(channels):
                            g[a, b, c] = gy[pixel, c]
                else:
                    for c in range(channels):
                        g[a, b, c] = 0.0
        _combine_tile(a_matrix, g, rows)  # rows = A g
        for i in range(alpha):  # dM = (A g) Aᵀ
            _combine_columns(rows, i, a_matrix, out, t)


@numba.njit(**_JIT)
def _zero_rows(frame, n, start, stop):  # pragma: no cover
    for yy in range(start, stop):
        for xx in range(frame.shape[2]):
            for c in range(frame.shape[3]):
                frame[n, yy, xx, c] = 0.0


@numba.njit(**_JIT)
def _input_adjoint(grads, b_t, b_matrix, frame, down, across, r0, r1, zero_first, zero_next):  # pragma: no cover
    channels = frame.shape[3]
    alpha = b_t.shape[0]
    m = alpha - 2
    rows = np.empty((alpha, alpha, channels), np.float32)
    for t in range(r0 * across, r1 * across):  # tile rows r0…r1 − 1 of the whole batch
        n, ty, tx = t // (down * across), t // across % down, t % across
        if tx == 0:  # a tile row's frame rows are zeroed as it starts, each once: rows
            # m·ty…m·ty + m − 1 are its own, the first two of them zeroed by the row above
            # (which adds to them; zero_first: it has not run yet; none in the first), the
            # last row's two more rows too; zero_next: the next row's first two, whose
            # range runs later
            last = t // across == r1 - 1
            _zero_rows(frame, n, m * ty + (0 if ty == 0 or t // across == r0 and zero_first else 2), m * ty + m)
            if ty == down - 1:
                _zero_rows(frame, n, m * down, m * down + 2)
            elif not last or zero_next:
                _zero_rows(frame, n, m * ty + m, m * ty + m + 2)
        _combine_points(b_matrix, grads, t, rows)  # rows = B dV
        for r in range(alpha):  # dd = (B dV) Bᵀ, summed into the overlapping frame
            for s in range(alpha):
                yy, xx = m * ty + r, m * tx + s
                for l in range(alpha):
                    b = b_t[l, s]
                    if b != 0.0:
                        for c in range(channels):
                            frame[n, yy, xx, c] += b * rows[r, l, c]


def _pixels(maps):
    """Channels-last ``maps`` (N, H, W, C) as rows of C contiguous values, (pixels, C), and
    the rows' steps per image, row and column: the inside of a frame (a gradient from
    :func:`input_adjoint`) is then read in place, as a C-contiguous array — a strided view
    would compile to loops that do not vectorise (4× slower in a pass). Maps whose strides
    are not whole pixels are copied first."""
    size, channels = maps.itemsize, maps.shape[-1]
    if maps.strides[-1] != size or any(s % (size * channels) for s in maps.strides[:3]) or min(maps.strides) < 0:
        maps = np.ascontiguousarray(maps)
    steps = tuple(s // (size * channels) for s in maps.strides[:3])
    rows = 1 + sum((d - 1) * s for d, s in zip(maps.shape[:3], steps))
    return np.lib.stride_tricks.as_strided(maps, shape=(rows, channels), strides=(size * channels, size)), steps


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
    pixels, steps = _pixels(gy)
    gate = gy if mask is None else mask
    gated, a_matrix = mask is not None, _f32(a_t.T)
    threads.ranges(lambda t0, t1: _output_adjoint(pixels, steps, gate, gated, a_matrix, out, down, across, t0, t1),
                   out.shape[1], out.size)


def input_adjoint(grads, b_t, frame) -> None:
    """The adjoint of :func:`input_transform` (shift 1) summed into ``frame`` (N, m·down + 2,
    m·across + 2, C), which it overwrites (each row zeroed just before the first tile adds to
    it, in cache): each tile's B dV Bᵀ added at its place, so the frame's inside ``[:, 1:H +
    1, 1:W + 1]`` is the input gradient."""
    batch, rows, cols, channels = frame.shape
    m = len(b_t) - 2
    b_t, b_matrix = _f32(b_t), _f32(b_t.T)
    down, across = (rows - 2) // m, (cols - 2) // m

    def job(r0, r1, round_):  # (round 1 zeroes the first rows of round 2's ranges; 0: one call)
        _input_adjoint(grads, b_t, b_matrix, frame, down, across, r0, r1, round_ != 2, round_ == 1)
    threads.ranges(job, batch * down, grads.size, alternate=True)


@numba.njit(**_JIT)
def _max_pool(x, y, r0, r1):  # pragma: no cover (compiled)
    batch, height, width, channels = x.shape
    rows, cols = y.shape[1:3]
    for k in range(r0, r1):  # pooled rows of the whole batch
        n, i = k // rows, k % rows
        for j in range(cols):
            for c in range(channels):
                y[n, i, j, c] = x[n, 2 * i, 2 * j, c]
            for r in range(2):
                for s in range(2):
                    if (r or s) and 2 * i + r < height and 2 * j + s < width:
                        for c in range(channels):
                            v = x[n, 2 * i + r, 2 * j + s, c]
                            # (NumPy's maximum: NaN wins)
                            y[n, i, j, c] = v if v > y[n, i, j, c] or v != v else y[n, i, j, c]


@numba.njit(**_JIT)
def _max_pool_grad(x, y, gy, steps, gx, r0, r1):  # pragma: no cover
    batch, height, width, channels = x.shape
    step_n, step_y, step_x = steps
    rows, cols = y.shape[1:3]
    taken = np.empty(channels, np.bool_)  # the window's gradient given out already
    for k in range(r0, r1):
        n, i = k // rows, k % rows
        for j in range(cols):
            pixel = n * step_n + i * step_y + j * step_x
            for c in range(channels):
                taken[c] = False
            for r in range(2):
                for s in range(2):
                    yy, xx = 2 * i + r, 2 * j + s
                    if yy < height and xx < width:  # the first input equal to the maximum wins
                        for c in range(channels):
                            wins = x[n, yy, xx, c] == y[n, i, j, c] and not taken[c]
                            gx[n, yy, xx, c] = gy[pixel, c] if wins else 0.0
                            taken[c] = taken[c] or wins


def max_pool(x, y) -> None:
    """``y`` (N, ⌈H/2⌉, ⌈W/2⌉, C) = the maximum of each 2 × 2 window of ``x`` (N, H, W, C);
    an odd last row or column is pooled on its own (ceil mode)."""
    threads.ranges(lambda r0, r1: _max_pool(x, y, r0, r1), y.shape[0] * y.shape[1], y.size)


def max_pool_grad(x, y, gy, gx) -> None:
    """``gx`` (as ``x``): each window's gradient ``gy`` at the first of its inputs that
    equals its maximum ``y``, 0 elsewhere."""
    pixels, steps = _pixels(gy)
    threads.ranges(lambda r0, r1: _max_pool_grad(x, y, pixels, steps, gx, r0, r1), y.shape[0] * y.shape[1], x.size)

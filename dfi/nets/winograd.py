"""The plan of dfi's Winograd convolution: the transform matrices, the tile size each layer
gets, the layers' transformed filters (kept, or made during each call), the workspace the
layers share, and what all of it costs in memory (for the estimate checked before a run).

The data path is :mod:`dfi.nets.conv`.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import _compat  # noqa: F401

from ..core.backend import get_array_module


#: interpolation points of each tile size (Toom-Cook, the usual choices)
POINTS = {2: (0.0, 1.0, -1.0), 4: (0.0, 1.0, -1.0, 2.0, -2.0), 6: (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)}
#: the largest tile m whose tile count (over the batch) reaches MIN_TILES[m] is used:
#: fewer tiles make the batched GEMMs too thin to pay for the larger tile's savings
#: (measured layer by layer at batch 1 and 6, BENCHMARKS.md)
MIN_TILES = {6: 1000, 4: 64}
ALPHA2_TO_M = {16: 2, 36: 4, 64: 6}
#: layers with at most this many input channels (forward) or output channels (backward)
#: run as direct GEMMs: too thin for Winograd's transforms to pay
THIN = 8
#: floats per workspace region a convolution may use (64 MiB); a batch that needs more is
#: convolved a group of images at a time
MAX_WORKSPACE = 1 << 24
#: transform points whose filters are made at once when a layer's filters are not kept
POINTS_AT_ONCE = 8
#: bytes of transformed filters kept whatever the batch: VGG-19's to conv5_1 for one image
#: take 113 MB (F(2) from conv4_1 on at 200²); made at every call instead they cost 9 % of
#: a pass (BENCHMARKS.md, issue 26)
MIN_FILTER_BUDGET = 128 << 20


def filter_budget(channels: int, pixels: int) -> int:
    """Bytes of transformed filters a network may keep for an input of ``channels`` ×
    ``pixels`` (all the batch's): half of the (9·channels, pixels) float32 column buffer
    Chainer's own convolution would allocate, and at least :data:`MIN_FILTER_BUDGET`."""
    return max(MIN_FILTER_BUDGET, 9 * channels * pixels * 4 // 2)


@functools.lru_cache(maxsize=None)
def winograd_matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Aᵀ (m, α), G (α, 3), Bᵀ (α, α))`` of F(m, 3), float64, from :data:`POINTS`.

    Aᵀ and G follow from the points (Vandermonde rows; Lagrange weights), and Bᵀ solves
    Σ_j Aᵀ[i,j] G[j,k] Bᵀ[j,l] = [l = i + k], which makes Aᵀ[(G g) ⊙ (Bᵀ d)] the
    correlation of d with g. Bᵀ's entries are whole numbers and quarters (exact in
    float32); the rounding removes the least-squares solver's last-bit noise.
    """
    alpha, points = m + 2, POINTS[m]
    a_t, g = np.zeros((m, alpha)), np.zeros((alpha, 3))
    for j, p in enumerate(points):
        a_t[:, j] = [p ** i for i in range(m)]
        g[j] = [p ** k / np.prod([p - q for q in points if q != p]) for k in range(3)]
    a_t[m - 1, alpha - 1] = g[alpha - 1, 2] = 1.0  # the point at infinity
    system = np.einsum("ij,jk->ikj", a_t, g).reshape(3 * m, alpha)
    b_t = np.stack([np.linalg.lstsq(system, [float(l == i + k) for i in range(m) for k in range(3)],
                                    rcond=None)[0] for l in range(alpha)], axis=1)
    return a_t, g, np.round(b_t, 9)


def tile_grid(m: int, batch: int, height: int, width: int) -> tuple[int, int, int]:
    """m × m output tiles covering ``batch`` maps of height × width: (down, across, in all)."""
    down, across = -(-height // m), -(-width // m)
    return down, across, batch * down * across


def tile_size(batch: int, height: int, width: int) -> int:
    """The Winograd output tile m for maps of this size: 6 (5.06 multiplies fewer than a
    direct convolution), 4 (4×) or 2 (2.25×): see :data:`MIN_TILES`."""
    return next((m for m, least in MIN_TILES.items() if tile_grid(m, batch, height, width)[2] >= least), 2)


def workspace_floats(channels_in: int, channels_out: int, batch: int, height: int,
                     width: int, *, m: int = 0) -> tuple[int, int]:
    """Floats of the two workspace regions one layer needs, forward or backward (whose
    channel counts are swapped), with tile size ``m`` (default :func:`tile_size`'s): see
    :class:`Workspace`."""
    widest, thinnest = max(channels_in, channels_out), min(channels_in, channels_out)
    if thinnest <= THIN:  # direct: 9 shifted copies, or 9 taps, of the thin side
        pixels = batch * (height + 2) * (width + 2)  # the forward's columns (+1: the bias's ones),
        framed = pixels + 2 * (width + 3)             # the backward's taps (with the margins)
        return max((9 * thinnest + 1) * pixels, 9 * thinnest * framed), widest * framed
    m = m or tile_size(batch, height, width)
    alpha, tiles = m + 2, tile_grid(m, batch, height, width)[2]  # (region 0: the products and the bias row)
    return (alpha * alpha + 1) * widest * tiles, max(alpha * alpha * widest * tiles, widest * batch * height * width)


class Workspace:
    """Scratch memory shared by every convolution of a network, on its device.

    Layers run one after the other, so one pair of growing buffers serves them all: region
    0 holds the gathered tiles and then the products, region 1 the padded input, the
    transformed tiles and then the output tiles. It also keeps the transform matrices and
    the layers' transformed filters: those are kept while they take no more than
    :func:`filter_budget` for the largest input batch seen (:attr:`filter_budget`: half the
    column buffer Chainer's own convolution would allocate, and at least 128 MiB, which
    keeps every VGG-19 layer's for one image); the other layers transform their filters
    again at each call (one small GEMM). A batch (a sweep's six images) may keep more of
    them than one image: at 200², batch 6, every layer keeps F(4)'s filters.
    """

    def __init__(self):
        self.buffers: list = [None, None]
        self._kron: dict = {}
        self._filters: dict = {}
        self.filter_budget = 0  # bytes

    def note_input(self, channels: int, pixels: int) -> None:
        """Grow the filter budget to :func:`filter_budget`'s for an input of ``channels``
        maps of ``pixels`` pixels in all (the batch's)."""
        self.filter_budget = max(self.filter_budget, filter_budget(channels, pixels))

    def filters(self, layer: "Conv3x3", m: int) -> "Filters":
        """The layer's transformed filters for F(m), kept whole when the budget allows.
        Filters that cannot be kept are made during each call, a few points at a time, and
        for F(2): making F(4)'s (2.25× as many) at every call would cost more than F(4)
        saves over F(2)."""
        key = (id(layer), m)
        if key in self._filters:
            return self._filters[key][1]
        layouts = filter_layouts(get_array_module(layer.weight))
        if self.filter_bytes() + filter_bytes(m, *layer.channels, layouts=layouts) <= self.filter_budget:
            kept = layer.transform(m)
            kept_t = kept.transpose(0, 2, 1).copy() if layouts == 2 else None
            self._filters[key] = (layer, Filters(layer, m, kept, kept_t))  # (the layer is held,
            return self._filters[key][1]                                   # so its id stays unique)
        return self.filters(layer, 2) if m != 2 else Filters(layer, 2)

    def filter_bytes(self) -> int:
        return sum(f.kept.nbytes + (0 if f.kept_t is None else f.kept_t.nbytes) for _, f in self._filters.values())

    def take(self, region: int, shape: tuple, xp):
        size = int(np.prod(shape))
        buffer = self.buffers[region]
        if buffer is None or buffer.size < size or get_array_module(buffer) is not xp:
            self.buffers[region] = None  # let the old buffer go before the larger one comes
            buffer = self.buffers[region] = xp.empty(size, dtype=xp.float32)
        return buffer[:size].reshape(shape)

    def kron(self, m: int, xp):
        """(Bᵀ⊗Bᵀ (α², α²), Aᵀ⊗Aᵀ (m², α²)) as float32 on ``xp``'s device."""
        if (m, xp) not in self._kron:
            a_t, _, b_t = winograd_matrices(m)
            self._kron[m, xp] = (xp.asarray(np.kron(b_t, b_t).astype(np.float32)),
                                 xp.asarray(np.kron(a_t, a_t).astype(np.float32)))
        return self._kron[m, xp]

    def small(self, m: int):
        """(Aᵀ (m, α), Bᵀ (α, α)) as float32 NumPy arrays, for :mod:`dfi.nets.compiled`."""
        if (m, "small") not in self._kron:
            a_t, _, b_t = winograd_matrices(m)
            self._kron[m, "small"] = (a_t.astype(np.float32), b_t.astype(np.float32))
        return self._kron[m, "small"]

    def kron_bias(self, m: int, xp):
        """Aᵀ⊗Aᵀ with a column of ones appended (m², α² + 1): the output transform of
        products whose last row is the bias."""
        if (m, xp, "bias") not in self._kron:
            kron_a = self.kron(m, xp)[1]
            self._kron[m, xp, "bias"] = xp.concatenate([kron_a, xp.ones((m * m, 1), dtype=xp.float32)], axis=1)
        return self._kron[m, xp, "bias"]

    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buffers if b is not None) + self.filter_bytes()


class Conv3x3:
    """One layer's weights, OIHW, and bias."""

    def __init__(self, weight, bias):
        self.weight, self.bias = weight, bias
        self._taps: dict = {}  # (m, points) -> G⊗G rows on the weights' device (no upload per call)

    @property
    def channels(self) -> tuple[int, int]:
        """(out, in)."""
        return self.weight.shape[0], self.weight.shape[1]

    def transform(self, m: int, points: slice = slice(None)):
        """U = G g Gᵀ of every filter as (α², out, in) (or those ``points`` of the α²),
        float32 on the weights' device: one GEMM, (α², 9) @ (9, out·in), reading the OIHW
        weights in place."""
        xp = get_array_module(self.weight)
        key = (m, points.start, points.stop)
        if key not in self._taps:
            _, g, _ = winograd_matrices(m)
            alpha = m + 2
            taps = np.einsum("jk,il->jikl", g, g).reshape(alpha * alpha, 9)[points]
            self._taps[key] = xp.asarray(taps.astype(np.float32))
        taps = self._taps[key]
        out_channels, channels = self.channels
        u = xp.matmul(taps, self.weight.reshape(out_channels * channels, 9).T)
        return u.reshape(len(taps), out_channels, channels)


class Filters:
    """One layer's transformed filters for F(m), (α², out, in): ``kept`` whole, or made
    :data:`POINTS_AT_ONCE` points at a time while a convolution runs (so a layer whose
    filters are not kept needs only that slice of memory)."""

    def __init__(self, layer: Conv3x3, m: int, kept=None, kept_t=None):
        self.layer, self.m, self.kept, self.kept_t = layer, m, kept, kept_t
        self.shape = ((m + 2) ** 2, *layer.channels)

    def chunks(self, *, transposed: bool = False):
        """(points, U[points]) covering every point, or with ``transposed`` (points,
        U[points]ᵀ) (α'², in, out): the kept transposed copy where there is one
        (:func:`filter_layouts`), else a view."""
        if self.kept is not None:
            yield slice(None), (self.kept if not transposed else self.kept_t if self.kept_t is not None
                                else self.kept.transpose(0, 2, 1))
            return
        for start in range(0, self.shape[0], POINTS_AT_ONCE):
            points = slice(start, min(self.shape[0], start + POINTS_AT_ONCE))
            part = self.layer.transform(self.m, points)
            yield points, part.transpose(0, 2, 1) if transposed else part


def filter_layouts(xp) -> int:
    """How many layouts of a layer's transformed filters are kept: U (α², out, in) serves
    the input gradient and Uᵀ the forward pass. NumPy's matmul hands a transposed view to
    BLAS as it is (1: U alone); CuPy's batched matmul copies a non-C-contiguous operand at
    every call (``_routines_linalg.pyx``), so on CuPy Uᵀ is kept too (2)."""
    return 1 if xp is np else 2



def filter_bytes(m: int, channels_out: int, channels_in: int, *, layouts: int = 1) -> int:
    """Bytes of one layer's transformed filters for F(m), in ``layouts`` layouts."""
    return 4 * (m + 2) ** 2 * channels_out * channels_in * layouts


def plan_filters(layers, budget: int, *, layouts: int = 1) -> list[tuple[int, bool]]:
    """(m, kept) of each layer, as :meth:`Workspace.filters` decides them in this order:
    ``layers`` are (m wanted, channels out, channels in); ``layouts`` as :func:`filter_layouts`."""
    plan, used = [], 0
    for m, channels_out, channels_in in layers:
        for option in ((m, 2) if m != 2 else (2,)):
            size = filter_bytes(option, channels_out, channels_in, layouts=layouts)
            if used + size <= budget:
                used += size
                plan.append((option, True))
                break
        else:
            plan.append((2, False))
    return plan


def kernel_memory(layers, batch: int, *, layouts: int = 1) -> dict[str, int]:
    """Floats of the memory the kernels share over one pass of ``layers`` (each (channels
    in, channels out, height, width), in order) on ``batch`` images: the workspace's two
    regions, the filters it keeps (in ``layouts`` layouts, :func:`filter_layouts`), and the
    largest filter slice made during a call (and its transposed copy on CuPy)."""
    thin = [(c_in, c_out, h, w) for c_in, c_out, h, w in layers if c_in <= THIN]
    winograd = [(batch_group(batch, c_in, c_out, h, w), c_in, c_out, h, w)
                for c_in, c_out, h, w in layers if c_in > THIN]
    budget = max(filter_budget(c_in, batch * h * w) for c_in, _, h, w in layers)  # as Workspace.note_input
    plan = plan_filters([(tile_size(g, h, w), c_out, c_in) for g, c_in, c_out, h, w in winograd], budget,
                        layouts=layouts)
    regions = [workspace_floats(c_in, c_out, batch, h, w) for c_in, c_out, h, w in thin]
    regions += [workspace_floats(c_in, c_out, g, h, w, m=m) for (m, _), (g, c_in, c_out, h, w) in zip(plan, winograd)]
    steps = list(zip(plan, winograd))
    return {"region0": max(r[0] for r in regions), "region1": max(r[1] for r in regions),
            "kept_filters": sum(filter_bytes(m, c_out, c_in, layouts=layouts)
                                for (m, kept), (_, c_in, c_out, _, _) in steps if kept) // 4,
            "made_filters": layouts * max((POINTS_AT_ONCE * c_in * c_out for (_, kept), (_, c_in, c_out, _, _)
                                           in steps if not kept), default=0)}


def batch_group(batch: int, channels_in: int, channels_out: int, height: int, width: int) -> int:
    """How many images a Winograd convolution takes at once: all, unless their workspace
    would pass :data:`MAX_WORKSPACE` floats per region (large maps of a large batch)."""
    per_image = max(workspace_floats(channels_in, channels_out, 1, height, width))
    return max(1, min(batch, MAX_WORKSPACE // per_image))

"""VGG's convolutions as fast Chainer functions: 3×3 (stride 1, pad 1) + bias + ReLU by
Winograd's minimal filtering (pooling: :mod:`dfi.nets.pool`).

Winograd F(m×m, 3×3) (Lavin & Gray, CVPR 2016) turns each (m+2)² input tile d into V = Bᵀ
d B, multiplies V by the transformed filters U = G g Gᵀ point by point, and returns Y = Aᵀ
M A: (m+2)² multiplies per m² outputs instead of 9 m². Here every step is one big BLAS
call: the tiles of all images are gathered into an (α², P·C) matrix (α = m + 2, P tiles),
``V = (Bᵀ⊗Bᵀ) D`` is one GEMM, the α² products ``M_p = V_p U_p`` are one batched GEMM
(OpenBLAS / cuBLAS), ``Y = (Aᵀ⊗Aᵀ) M + b`` is one GEMM (the bias a last row of M, Aᵀ⊗Aᵀ
given a column of ones), and Y is scattered into the output through the ReLU. F(6×6) needs
5× fewer multiplies than a direct convolution, F(4×4) 4×, F(2×2) 2.25×; the smaller tiles
serve small maps, where the larger tiles' batched GEMMs get too thin
(:mod:`dfi.nets.winograd` plans which). Each F(m) is exact in exact arithmetic; in float32
its error grows with m (about 1e-5 of the output's scale for F(6), 1e-6 for F(2)). The
input gradient runs the adjoint of every step with the same filters: output tiles (gated
by the ReLU as they are gathered) through (Aᵀ⊗Aᵀ)ᵀ, products with Uᵀ, (Bᵀ⊗Bᵀ)ᵀ, and the
overlapping input tiles summed back into a frame one pixel wider all round, whose inside
is the gradient (a view: no copy). Only the image needs a gradient: the weights are
constants. Layers with few channels (the image's 3) run as one direct GEMM instead.

On a CPU the tile steps are compiled loops instead (:mod:`dfi.nets.compiled`, Numba): the
gather and Bᵀ⊗Bᵀ become one pass that reads the maps and writes V, the output transform,
bias, ReLU and scatter another, and the adjoint's likewise; only the products stay GEMMs.

Maps are channels-last, (N, H, W, C): the tile gathers and scatters then copy whole channel
vectors, and the batch folds into the GEMMs' long side, so a batch of 6 runs as one pass no
slower per image than a batch of 1. The scratch matrices live in a :class:`Workspace`
reused by every layer and pass; :func:`dfi.nets.winograd.kernel_memory` says how large it
grows (for the memory estimate). On a CPU each convolution is a kernel section
(:mod:`dfi.nets.threads`): BLAS computes on the calling thread and dfi's own threads split
every GEMM and every element-wise move, so no core idles during the moves and no BLAS thread
spins through them. The code is NumPy/CuPy-agnostic: on a GPU it needs neither cuDNN nor
im2col (nor im2col's 32-bit indexes).
"""
from __future__ import annotations

from .. import _compat  # noqa: F401
from chainer import function_node

from ..core.backend import get_array_module
from . import threads
from .winograd import ALPHA2_TO_M, THIN, Conv3x3, Filters, Workspace, batch_group, tile_grid, tile_size


def _tile_view(xp, maps, m: int, rows: tuple[int, int, int, int], cols: tuple[int, int, int, int]):
    """A strided view of channels-last ``maps`` (N, H, W, C; any strides, e.g. the inside of
    a padded frame) as tiles of stride m: ``view[e, f, n, t, u, c] = maps[n, m·(t0 + t) + e0
    + e, m·(u0 + u) + f0 + f, c]`` for ``rows = (t0, t1, e0, e1)`` (tiles t0…t1 − 1, tile
    elements e0…e1 − 1) and ``cols`` alike. Tiles overlap when e1 − e0 > m (reading only);
    one copy or one ufunc then moves every tile at once, a single kernel launch on a GPU."""
    batch, height, width, channels = maps.shape
    (t0, t1, e0, e1), (u0, u1, f0, f1) = rows, cols
    if m * (t1 - 1) + e1 > height or m * (u1 - 1) + f1 > width:  # (as_strided checks nothing)
        raise ValueError(f"tiles {rows} × {cols} of stride {m} pass maps of {height} × {width}")
    n, h, w, c = maps.strides
    return xp.lib.stride_tricks.as_strided(
        maps[:, m * t0 + e0:, m * u0 + f0:], shape=(e1 - e0, f1 - f0, batch, t1 - t0, u1 - u0, channels),
        strides=(h, w, n, m * h, m * w, c))


def _tile_blocks(size: int, m: int):
    """(t0, t1, e0, e1) covering ``size`` map rows by m-row tiles: the whole tiles, then the
    last partial one (its first size mod m rows)."""
    whole, rest = divmod(size, m)
    return [block for block in ((0, whole, 0, m), (whole, whole + 1, 0, rest)) if block[1] > block[0] and block[3]]


def _blocks(height: int, width: int, m: int):
    """Pairs of (rows, cols) blocks that cover an H × W map by m × m tiles (at most four)."""
    return [(rows, cols) for rows in _tile_blocks(height, m) for cols in _tile_blocks(width, m)]


def _padded_copy(xp, x, padded, shift: int) -> None:
    """``padded[:, shift:shift + H, shift:shift + W] = x`` and zeros everywhere else (only
    the borders are written twice: at most five launches)."""
    rows, cols = x.shape[1:3]
    threads.copy(padded[:, shift:shift + rows, shift:shift + cols], x, axis=(0, 1))
    for border in ((slice(None), slice(0, shift)), (slice(None), slice(shift + rows, None)),
                   (slice(None), slice(shift, shift + rows), slice(0, shift)),
                   (slice(None), slice(shift, shift + rows), slice(shift + cols, None))):
        part = padded[border]
        if part.size:
            part[...] = 0


def _gather_tiles(x, gathered, padded, m: int, shift: int = 1) -> None:
    """``gathered[r, s, n, ty, tx, :] = x[n, m·ty + r − shift, m·tx + s − shift, :]``: the
    α×α input tiles (stride m) of ``x`` (N, H, W, C), zero outside the maps (``shift`` 1:
    the maps' one-pixel zero padding; 0: no padding). ``padded`` (N, m·tiles down + 2,
    m·tiles across + 2, C) is scratch: x is copied into it with zeros around, then every
    tile is read from it by one strided copy. Already padded maps (``shift`` 0) that the
    tiles cover exactly are read directly (no copy)."""
    xp = get_array_module(x)
    alpha = m + 2
    tiles_h, tiles_w = gathered.shape[3:5]
    if shift == 0 and x.shape[1:3] == padded.shape[1:3]:
        padded = x
    else:
        _padded_copy(xp, x, padded, shift)
    threads.copy(gathered, _tile_view(xp, padded, m, (0, tiles_h, 0, alpha), (0, tiles_w, 0, alpha)), axis=(3, 0))


def _tiling(alpha2: int, batch: int, height: int, width: int):
    """The output tiling of one F(m×m, 3×3) pass: (m, α, tiles down, tiles across, tiles)."""
    m = ALPHA2_TO_M[alpha2]
    return (m, m + 2, *tile_grid(m, batch, height, width))


def winograd_conv(x, u: Filters, workspace: Workspace, *, bias=None, out=None, valid: bool = False):
    """3×3 / pad 1 correlation of channels-last maps ``x`` (N, H, W, C) with transformed
    filters ``u`` (α², O, C): returns ``out`` or a new array (N, H, W, O); with ``bias``
    (O,), ``max(conv + bias, 0)`` (bias and ReLU fused into the scatter). With ``valid``,
    no padding: x is already padded and the output is (N, H − 2, W − 2, O)."""
    xp = get_array_module(x)
    batch, height, width, channels = x.shape
    if valid:
        height, width = height - 2, width - 2
    alpha2, out_channels, _ = u.shape
    m, alpha, tiles_h, tiles_w, tiles = _tiling(alpha2, batch, height, width)
    if out is None:
        out = xp.empty((batch, height, width, out_channels), dtype=xp.float32)
    compiled = threads.compiled(xp)
    if compiled:  # the same steps, each tile transform one pass
        a_t, b_t = workspace.small(m)
        transformed = workspace.take(1, (alpha2, tiles, channels), xp)
        compiled.input_transform(x, b_t, transformed, shift=0 if valid else 1, down=tiles_h, across=tiles_w)
        products = workspace.take(0, (alpha2, tiles, out_channels), xp)
        for points, part in u.chunks(transposed=True):
            threads.matmul(transformed[points], part, products[points])
        compiled.output_transform(products, a_t, out, bias=bias, relu=bias is not None)
        return out
    kron_b, kron_a = workspace.kron(m, xp)
    gathered = workspace.take(0, (alpha, alpha, batch, tiles_h, tiles_w, channels), xp)
    padded = workspace.take(1, (batch, m * tiles_h + 2, m * tiles_w + 2, channels), xp)  # (before `transformed`)
    _gather_tiles(x, gathered, padded, m, 0 if valid else 1)
    transformed = workspace.take(1, (alpha2, tiles, channels), xp)
    threads.matmul(kron_b, gathered.reshape(alpha2, -1), transformed.reshape(alpha2, -1))
    # the products, and with a bias one more row holding it for every tile: the output
    # transform then adds it (Aᵀ⊗Aᵀ with a column of ones), no pass of its own
    products = workspace.take(0, (alpha2 + (bias is not None), tiles, out_channels), xp)
    for points, part in u.chunks(transposed=True):
        threads.matmul(transformed[points], part, products[:alpha2][points])
    if bias is not None:
        products[alpha2] = bias
        kron_a = workspace.kron_bias(m, xp)
    result = workspace.take(1, (m * m, tiles, out_channels), xp)
    threads.matmul(kron_a, products.reshape(len(products), -1), result.reshape(m * m, -1))
    result = result.reshape(m, m, batch, tiles_h, tiles_w, out_channels)
    move = threads.copy if bias is None else threads.relu
    for rows, cols in _blocks(height, width, m):  # the output tiles into the maps: at most 4 launches
        move(_tile_view(xp, out, m, rows, cols), result[:rows[3], :cols[3], :, rows[0]:rows[1], cols[0]:cols[1]],
             axis=(3, 0))
    return out


def winograd_conv_adjoint(gy, u: Filters, workspace: Workspace, *, mask=None, frame=None):
    """The input gradient of :func:`winograd_conv` for the output gradient ``gy`` (N, H, W, O),
    gated by ``mask > 0`` (the ReLU): the adjoint of each step, with the same filters ``u``
    (α², O, C). Output tiles (m×m, not overlapping) go through (Aᵀ⊗Aᵀ)ᵀ, the products with
    Uᵀ, then (Bᵀ⊗Bᵀ)ᵀ, and the overlapping α×α input tiles are summed into a frame one
    pixel wider all round, (N, m·tiles down + 2, m·tiles across + 2, C): ``frame`` or a new
    one (:func:`adjoint_frame`); its inside ``frame[:, 1:H + 1, 1:W + 1]`` is the gradient."""
    xp = get_array_module(gy)
    batch, height, width, out_channels = gy.shape
    alpha2, _, channels = u.shape
    m, alpha, tiles_h, tiles_w, tiles = _tiling(alpha2, batch, height, width)
    if frame is None:
        frame = adjoint_frame(xp, m, batch, height, width, channels)
    compiled = threads.compiled(xp)
    if compiled:  # the same steps, each tile transform one pass
        a_t, b_t = workspace.small(m)
        grad_products = workspace.take(1, (alpha2, tiles, out_channels), xp)
        compiled.output_adjoint(gy, a_t, grad_products, mask=mask)
        grad_transformed = workspace.take(0, (alpha2, tiles, channels), xp)
        for points, part in u.chunks():
            threads.matmul(grad_products[points], part, grad_transformed[points])
        compiled.input_adjoint(grad_transformed, b_t, frame)
        return frame
    kron_b, kron_a = workspace.kron(m, xp)
    out_tiles = workspace.take(0, (m, m, batch, tiles_h, tiles_w, out_channels), xp)
    rest_h, rest_w = height % m, width % m  # the last partial tiles' elements beyond the maps are 0
    if rest_h:
        out_tiles[rest_h:, :, :, tiles_h - 1] = 0
    if rest_w:
        out_tiles[:, rest_w:, :, :, tiles_w - 1] = 0
    for rows, cols in _blocks(height, width, m):  # gated by the ReLU on the way into the tiles
        tiles_view = out_tiles[:rows[3], :cols[3], :, rows[0]:rows[1], cols[0]:cols[1]]
        if mask is None:
            threads.copy(tiles_view, _tile_view(xp, gy, m, rows, cols), axis=(3, 0))
        else:
            threads.split(lambda o, g, k: xp.multiply(g, k > 0, out=o), tiles_view, _tile_view(xp, gy, m, rows, cols),
                          _tile_view(xp, mask, m, rows, cols), axis=(3, 0))
    grad_products = workspace.take(1, (alpha2, tiles, out_channels), xp)
    threads.matmul(kron_a.T, out_tiles.reshape(m * m, -1), grad_products.reshape(alpha2, -1))
    grad_transformed = workspace.take(0, (alpha2, tiles, channels), xp)
    for points, part in u.chunks():
        threads.matmul(grad_products[points], part, grad_transformed[points])
    grad_tiles = workspace.take(1, (alpha, alpha, batch, tiles_h, tiles_w, channels), xp)
    threads.matmul(kron_b.T, grad_transformed.reshape(alpha2, -1), grad_tiles.reshape(alpha2, -1))
    # the overlapping input tiles summed into the frame by four strided moves (tile rows
    # 0…m−1 and m…m+1 by the same of columns: no two elements of one move land on the same
    # pixel); the first covers all but the frame's last two rows and columns, so it is a
    # copy, those are zeroed, and the other three add
    frame[:, m * tiles_h:] = 0
    frame[:, :m * tiles_h, m * tiles_w:] = 0
    for rows in ((0, m), (m, alpha)):
        for cols in ((0, m), (m, alpha)):
            view = _tile_view(xp, frame, m, (0, tiles_h, *rows), (0, tiles_w, *cols))
            tiles = grad_tiles[rows[0]:rows[1], cols[0]:cols[1]]
            if rows[0] == cols[0] == 0:
                threads.copy(view, tiles, axis=(3, 0))
            else:
                threads.split(lambda o, t: xp.add(o, t, out=o), view, tiles, axis=(3, 0))
    return frame


def adjoint_frame(xp, m: int, batch: int, height: int, width: int, channels: int):
    """The frame :func:`winograd_conv_adjoint` sums its F(m) tiles into (not cleared)."""
    tiles_h, tiles_w, _ = tile_grid(m, 1, height, width)
    return xp.empty((batch, m * tiles_h + 2, m * tiles_w + 2, channels), dtype=xp.float32)


def _flat_frame(x, workspace: Workspace, region: int, mask=None):
    """``x`` (N, H, W, C) zero-padded by one pixel and flattened over its pixels, with a
    margin of one padded row (+1) at both ends: every 3×3 tap of every pixel is then a
    constant offset into the flat pixel axis, ``dy·(W+2) + dx``."""
    xp = get_array_module(x)
    batch, height, width, channels = x.shape
    margin = width + 3
    length = batch * (height + 2) * (width + 2)
    flat = workspace.take(region, (length + 2 * margin, channels), xp)
    flat[:margin] = 0
    flat[margin + length:] = 0
    frame = flat[margin:margin + length].reshape(batch, height + 2, width + 2, channels)
    frame[:, [0, -1]] = 0
    frame[:, :, [0, -1]] = 0
    if mask is None:
        threads.copy(frame[:, 1:-1, 1:-1], x, axis=(0, 1))
    else:
        threads.split(lambda o, g, k: xp.multiply(g, k > 0, out=o), frame[:, 1:-1, 1:-1], x, mask, axis=(0, 1))
    offsets = [dy * (width + 2) + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return flat, margin, length, offsets


def direct_conv(x, weight, workspace: Workspace, *, bias=None):
    """3×3 / pad 1 correlation of a thin input (few channels, e.g. the image) by one GEMM
    over its 9 shifted copies: (pixels, 9C) @ (9C, O). Returns (N, H, W, O); with ``bias``,
    ``max(conv + bias, 0)``, the bias added by the GEMM (a column of ones, a row of bias)."""
    xp = get_array_module(x)
    batch, height, width, channels = x.shape
    flat, margin, length, offsets = _flat_frame(x, workspace, 1)
    extra = bias is not None
    columns = workspace.take(0, (length, 9 * channels + extra), xp)
    # columns[p, 3·ky + kx] = flat[margin + p + (ky − 1)(W + 2) + kx − 1]: one strided copy
    shifted = xp.lib.stride_tricks.as_strided(
        flat.reshape(-1)[(margin + offsets[0]) * channels:], shape=(length, 3, 3, channels),
        strides=tuple(s * flat.itemsize for s in (channels, (width + 2) * channels, channels, 1)))
    threads.copy(columns[:, :9 * channels].reshape(length, 3, 3, channels), shifted)
    stacked = weight.transpose(2, 3, 1, 0).reshape(9 * channels, -1)
    if extra:
        columns[:, -1] = 1
        stacked = xp.concatenate([stacked, bias.reshape(1, -1)])
    framed = xp.empty((length, stacked.shape[1]), dtype=xp.float32)
    threads.matmul(columns, xp.ascontiguousarray(stacked), framed)
    inside = framed.reshape(batch, height + 2, width + 2, -1)[:, 1:-1, 1:-1]
    y = xp.empty(inside.shape, dtype=xp.float32)
    (threads.copy if bias is None else threads.relu)(y, inside, axis=(0, 1))
    return y


def direct_conv_transpose(gy, weight, workspace: Workspace, *, mask=None):
    """The input gradient of a 3×3 / pad 1 correlation onto few channels (the image): one
    GEMM gives each tap's share, (9C, O) @ (O, pixels), then 9 shifted sums of thin rows.
    ``gy`` (N, H, W, O), optionally gated by ``mask > 0``; returns (N, H, W, C)."""
    xp = get_array_module(gy)
    batch, height, width, _ = gy.shape
    channels = weight.shape[1]
    flat, margin, length, offsets = _flat_frame(gy, workspace, 1, mask)
    per_tap = xp.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(9 * channels, weight.shape[0]))
    taps = workspace.take(0, (9, channels, flat.shape[0]), xp)
    threads.matmul(per_tap, flat.T, taps.reshape(9 * channels, -1))
    # gx(p) = Σ_k Wₖᵀ gy(p − offsetₖ) = Σ_k taps[k, :, margin + p − offsetₖ]: nine shifted
    # slices of contiguous rows, (C, pixels) each
    summed = xp.empty((channels, length), dtype=xp.float32)
    for k, offset in enumerate(offsets):
        part = taps[k, :, margin - offset:margin - offset + length]
        if k == 0:
            xp.copyto(summed, part)
        else:
            summed += part
    framed = summed.reshape(channels, batch, height + 2, width + 2)
    return xp.ascontiguousarray(framed[:, :, 1:-1, 1:-1].transpose(1, 2, 3, 0))


def conv3x3(x, layer: Conv3x3, workspace: Workspace, *, backward: bool = False, mask=None):
    """The layer's max(3×3 correlation + bias, 0) of channels-last ``x``, or with
    ``backward`` the correlation's input gradient for the output gradient ``x`` (gated by
    ``mask > 0``)."""
    with threads.kernel_section(get_array_module(x)):
        return _conv3x3(x, layer, workspace, backward=backward, mask=mask)


def _conv3x3(x, layer: Conv3x3, workspace: Workspace, *, backward: bool, mask):
    out_channels, channels = layer.channels
    xp = get_array_module(x)
    batch, height, width = x.shape[:3]
    workspace.note_input(channels, batch * height * width)
    if channels <= THIN:
        if backward:
            return direct_conv_transpose(x, layer.weight, workspace, mask=mask)
        return direct_conv(x, layer.weight, workspace, bias=layer.bias)
    group = batch_group(batch, channels, out_channels, height, width)
    u = workspace.filters(layer, tile_size(group, height, width))
    if backward:  # the gradient is the inside of the frame the tiles are summed into (no copy)
        frame = adjoint_frame(xp, u.m, batch, height, width, channels)
    else:
        out = xp.empty((batch, height, width, out_channels), dtype=xp.float32)
    for start in range(0, batch, group):  # one group unless the batch's workspace would be large
        part = slice(start, start + group)
        if backward:
            winograd_conv_adjoint(x[part], u, workspace, mask=None if mask is None else mask[part], frame=frame[part])
        else:
            winograd_conv(x[part], u, workspace, bias=layer.bias, out=out[part])
    return frame[:, 1:height + 1, 1:width + 1] if backward else out


class Conv3x3ReLU(function_node.FunctionNode):
    """y = max(conv3x3(x) + b, 0) on channels-last maps; the weights are constants."""

    def __init__(self, layer: Conv3x3, workspace: Workspace):
        self.layer, self.workspace = layer, workspace

    def forward(self, inputs):
        x, = inputs
        self.retain_outputs((0,))
        return conv3x3(x, self.layer, self.workspace),

    def backward(self, indexes, grad_outputs):
        y, = self.get_retained_outputs()
        return Conv3x3ReLUGrad(self.layer, self.workspace).apply((y, grad_outputs[0]))[:1]


class Conv3x3ReLUGrad(function_node.FunctionNode):
    """The input gradient of :class:`Conv3x3ReLU`: (y, gy) → conv3x3ᵀ(gy · [y > 0])."""

    def __init__(self, layer: Conv3x3, workspace: Workspace):
        self.layer, self.workspace = layer, workspace

    def forward(self, inputs):
        y, gy = inputs
        return conv3x3(gy, self.layer, self.workspace, backward=True, mask=y),

    def backward(self, indexes, grad_outputs):
        raise NotImplementedError("dfi's fast convolution has no second derivative")


def conv3x3_relu(x, layer: Conv3x3, workspace: Workspace):
    """Apply :class:`Conv3x3ReLU` to a channels-last Variable or array."""
    return Conv3x3ReLU(layer, workspace).apply((x,))[0]

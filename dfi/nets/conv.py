"""VGG's convolutions as fast Chainer functions: 3×3 (stride 1, pad 1) + bias + ReLU by
Winograd's minimal filtering (pooling: :mod:`dfi.nets.pool`).

Winograd F(m×m, 3×3) (Lavin & Gray, CVPR 2016) turns each (m+2)² input tile d into
V = Bᵀ d B, multiplies V by the transformed filters U = G g Gᵀ point by point, and returns
Y = Aᵀ M A: (m+2)² multiplies per m² outputs instead of 9 m². Here every step is one big
BLAS call: the tiles of all images are gathered into an (α², P·C) matrix (α = m + 2, P
tiles), ``V = (Bᵀ⊗Bᵀ) D`` is one GEMM, the α² products ``M_p = V_p U_p`` are one batched
GEMM (OpenBLAS / cuBLAS), ``Y = (Aᵀ⊗Aᵀ) M`` is one GEMM, and Y is scattered into the
output with the bias and the ReLU. F(6×6) needs 5× fewer multiplies than a direct
convolution, F(4×4) 4×, F(2×2) 2.25×; the smaller tiles serve small maps, where the
larger tiles' batched GEMMs get too thin (:mod:`dfi.nets.winograd` plans which). Each F(m)
is exact in exact arithmetic; in float32 its error grows with m (about 1e-5 of the output's
scale for F(6), 1e-6 for F(2)). The input gradient runs the adjoint of every step with the
same filters: output tiles through (Aᵀ⊗Aᵀ)ᵀ, products with Uᵀ, (Bᵀ⊗Bᵀ)ᵀ, and the
overlapping input tiles summed back. Only the image needs a gradient: the weights are
constants. Layers with few channels (the image's 3) run as one direct GEMM instead.

Maps are channels-last, (N, H, W, C): the tile gathers and scatters then copy whole channel
vectors, and the batch folds into the GEMMs' long side, so a batch of 6 runs as one pass no
slower per image than a batch of 1. The scratch matrices live in a :class:`Workspace`
reused by every layer and pass; :func:`dfi.nets.winograd.kernel_memory` says how large it
grows (for the memory estimate). The code is NumPy/CuPy-agnostic: on a GPU it needs neither cuDNN nor
im2col (nor im2col's 32-bit indexes).
"""
from __future__ import annotations

from .. import _compat  # noqa: F401
from chainer import function_node

from ..core.backend import get_array_module
from .winograd import ALPHA2_TO_M, THIN, Conv3x3, Filters, Workspace, batch_group, tile_grid, tile_size


def _span(offset: int, tiles: int, size: int, m: int, shift: int = 1) -> tuple[int, int, int]:
    """For tile element ``offset`` (of α), which reads map index m·t + offset − shift of
    tile t: the first and end tile whose element lies inside the maps, and the map index of
    the first."""
    first = 1 if offset < shift else 0
    end = min(tiles, (size - 1 - offset + shift) // m + 1)
    return first, max(first, end), offset - shift + m * first


def _gather_tiles(x, gathered, m: int, shift: int = 1) -> None:
    """``gathered[r, s, n, ty, tx, :] = x[n, m·ty + r − shift, m·tx + s − shift, :]``: the
    α×α input tiles (stride m) read straight from ``x`` (N, H, W, C); what falls outside the
    maps is 0 (``shift`` 1: the maps' one-pixel zero padding; 0: no padding)."""
    xp = get_array_module(x)
    height, width = x.shape[1:3]
    tiles_h, tiles_w = gathered.shape[3:5]
    for r in range(m + 2):
        row0, row1, src_r = _span(r, tiles_h, height, m, shift)
        for s in range(m + 2):
            col0, col1, src_s = _span(s, tiles_w, width, m, shift)
            tile = gathered[r, s]
            tile[:, :row0] = 0
            tile[:, row1:] = 0
            tile[:, row0:row1, :col0] = 0
            tile[:, row0:row1, col1:] = 0
            xp.copyto(tile[:, row0:row1, col0:col1],
                      x[:, src_r:src_r + m * (row1 - row0):m, src_s:src_s + m * (col1 - col0):m])


def _tiling(alpha2: int, batch: int, height: int, width: int):
    """The output tiling of one F(m×m, 3×3) pass: (m, α, tiles down, tiles across, tiles)."""
    m = ALPHA2_TO_M[alpha2]
    return (m, m + 2, *tile_grid(m, batch, height, width))


def _phases(m: int, height: int, width: int):
    """(i, j, rows, cols) for every output phase: the pixels ``[i::m, j::m]`` of an H × W
    map are position (i, j) of ``rows`` × ``cols`` tiles."""
    for i in range(m):
        for j in range(m):
            yield i, j, -(-(height - i) // m), -(-(width - j) // m)


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
    kron_b, kron_a = workspace.kron(m, xp)
    gathered = workspace.take(0, (alpha, alpha, batch, tiles_h, tiles_w, channels), xp)
    _gather_tiles(x, gathered, m, 0 if valid else 1)
    transformed = workspace.take(1, (alpha2, tiles, channels), xp)
    xp.matmul(kron_b, gathered.reshape(alpha2, -1), out=transformed.reshape(alpha2, -1))
    products = workspace.take(0, (alpha2, tiles, out_channels), xp)
    for points, part in u.chunks():
        xp.matmul(transformed[points], part.transpose(0, 2, 1), out=products[points])
    result = workspace.take(1, (m * m, tiles, out_channels), xp)
    xp.matmul(kron_a, products.reshape(alpha2, -1), out=result.reshape(m * m, -1))
    if bias is not None:
        result += bias
    result = result.reshape(m, m, batch, tiles_h, tiles_w, out_channels)
    if out is None:
        out = xp.empty((batch, height, width, out_channels), dtype=xp.float32)
    for i, j, rows, cols in _phases(m, height, width):
        if bias is None:
            xp.copyto(out[:, i::m, j::m], result[i, j, :, :rows, :cols])
        else:
            xp.maximum(result[i, j, :, :rows, :cols], 0, out=out[:, i::m, j::m])
    return out


def winograd_conv_adjoint(gy, u: Filters, workspace: Workspace, *, mask=None, out=None):
    """The input gradient of :func:`winograd_conv` for the output gradient ``gy`` (N, H, W, O),
    gated by ``mask > 0`` (the ReLU): the adjoint of each step, with the same filters ``u``
    (α², O, C). Output tiles (m×m, not overlapping) go through (Aᵀ⊗Aᵀ)ᵀ, the products with
    Uᵀ, then (Bᵀ⊗Bᵀ)ᵀ, and the overlapping α×α input tiles are summed into the maps."""
    xp = get_array_module(gy)
    batch, height, width, out_channels = gy.shape
    alpha2, _, channels = u.shape
    m, alpha, tiles_h, tiles_w, tiles = _tiling(alpha2, batch, height, width)
    kron_b, kron_a = workspace.kron(m, xp)
    if mask is not None:
        gated = workspace.take(1, gy.shape, xp)
        xp.multiply(gy, mask > 0, out=gated)
        gy = gated
    out_tiles = workspace.take(0, (m, m, batch, tiles_h, tiles_w, out_channels), xp)
    for i, j, rows, cols in _phases(m, height, width):
        tile = out_tiles[i, j]
        tile[:, rows:] = 0
        tile[:, :rows, cols:] = 0
        xp.copyto(tile[:, :rows, :cols], gy[:, i::m, j::m])
    grad_products = workspace.take(1, (alpha2, tiles, out_channels), xp)  # (the gated input is done)
    xp.matmul(kron_a.T, out_tiles.reshape(m * m, -1), out=grad_products.reshape(alpha2, -1))
    grad_transformed = workspace.take(0, (alpha2, tiles, channels), xp)
    for points, part in u.chunks():
        xp.matmul(grad_products[points], part, out=grad_transformed[points])
    grad_tiles = workspace.take(1, (alpha, alpha, batch, tiles_h, tiles_w, channels), xp)
    xp.matmul(kron_b.T, grad_transformed.reshape(alpha2, -1), out=grad_tiles.reshape(alpha2, -1))
    if out is None:
        gx = xp.zeros((batch, height, width, channels), dtype=xp.float32)
    else:
        gx = out
        gx[...] = 0
    for r in range(alpha):
        row0, row1, dst_r = _span(r, tiles_h, height, m)
        for s in range(alpha):
            col0, col1, dst_s = _span(s, tiles_w, width, m)
            gx[:, dst_r:dst_r + m * (row1 - row0):m, dst_s:dst_s + m * (col1 - col0):m] += \
                grad_tiles[r, s, :, row0:row1, col0:col1]
    return gx


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
        xp.copyto(frame[:, 1:-1, 1:-1], x)
    else:
        xp.multiply(x, mask > 0, out=frame[:, 1:-1, 1:-1])
    offsets = [dy * (width + 2) + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return flat, margin, length, offsets


def direct_conv(x, weight, workspace: Workspace):
    """3×3 / pad 1 correlation of a thin input (few channels, e.g. the image) by one GEMM
    over its 9 shifted copies: (pixels, 9C) @ (9C, O). Returns (N, H, W, O)."""
    xp = get_array_module(x)
    batch, height, width, channels = x.shape
    flat, margin, length, offsets = _flat_frame(x, workspace, 1)
    columns = workspace.take(0, (length, 9, channels), xp)
    for k, offset in enumerate(offsets):
        xp.copyto(columns[:, k], flat[margin + offset:margin + offset + length])
    stacked = xp.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(9 * channels, -1))
    framed = xp.matmul(columns.reshape(length, 9 * channels), stacked)
    framed = framed.reshape(batch, height + 2, width + 2, -1)
    return xp.ascontiguousarray(framed[:, 1:-1, 1:-1])


def direct_conv_transpose(gy, weight, workspace: Workspace, *, mask=None):
    """The input gradient of a 3×3 / pad 1 correlation onto few channels (the image): one
    GEMM gives each tap's share, (pixels, O) @ (O, 9C), then 9 shifted sums of thin maps.
    ``gy`` (N, H, W, O), optionally gated by ``mask > 0``; returns (N, H, W, C)."""
    xp = get_array_module(gy)
    batch, height, width, _ = gy.shape
    channels = weight.shape[1]
    flat, margin, length, offsets = _flat_frame(gy, workspace, 1, mask)
    per_tap = xp.ascontiguousarray(weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], 9 * channels))
    taps = workspace.take(0, (flat.shape[0], 9, channels), xp)
    xp.matmul(flat, per_tap, out=taps.reshape(flat.shape[0], -1))
    summed = xp.zeros((length, channels), dtype=xp.float32)
    for k, offset in enumerate(offsets):  # gx(p) = Σ_k Wₖᵀ gy(p − offsetₖ)
        summed += taps[margin - offset:margin - offset + length, k]
    framed = summed.reshape(batch, height + 2, width + 2, channels)
    return xp.ascontiguousarray(framed[:, 1:-1, 1:-1])


def conv3x3(x, layer: Conv3x3, workspace: Workspace, *, backward: bool = False, mask=None):
    """The layer's max(3×3 correlation + bias, 0) of channels-last ``x``, or with
    ``backward`` the correlation's input gradient for the output gradient ``x`` (gated by
    ``mask > 0``)."""
    out_channels, channels = layer.channels
    xp = get_array_module(x)
    batch, height, width = x.shape[:3]
    workspace.note_input(channels, batch * height * width)
    if channels <= THIN:
        if backward:
            return direct_conv_transpose(x, layer.weight, workspace, mask=mask)
        y = direct_conv(x, layer.weight, workspace)
        y += layer.bias
        return xp.maximum(y, 0, out=y)
    group = batch_group(batch, channels, out_channels, height, width)
    u = workspace.filters(layer, tile_size(group, height, width))
    out = xp.empty((batch, height, width, channels if backward else out_channels), dtype=xp.float32)
    for start in range(0, batch, group):  # one group unless the batch's workspace would be large
        part = slice(start, start + group)
        if backward:
            winograd_conv_adjoint(x[part], u, workspace, mask=None if mask is None else mask[part], out=out[part])
        else:
            winograd_conv(x[part], u, workspace, bias=layer.bias, out=out[part])
    return out


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

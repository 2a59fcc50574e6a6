"""The feed-forward stylizer's forward pass on dfi's own kernels, for stylising (no graph):
reflection padding, Winograd 3×3 convolutions, GEMM convolutions by bands for the thin 9×9
and the stride-2 layers, nearest ×2 upsampling fused with its convolution, in-place
instance normalisation. :class:`FastTransform` equals :meth:`TransformNet.forward`
(:mod:`dfi.nets.stylizer`, which trains through Chainer's graph) to float32 precision."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .. import _compat  # noqa: F401

from ..core.backend import get_array_module

from .stylizer import LAYERS, TransformNet
def _reflect(x, pad: int):
    """Reflection padding of channels-last maps (N, H, W, C), as numpy's ``reflect``: the
    interior is copied once, then the border rows and columns."""
    if not pad:
        return x
    xp = get_array_module(x)
    batch, height, width, channels = x.shape
    if pad >= min(height, width):  # tiny maps: numpy reflects repeatedly
        return xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = xp.empty((batch, height + 2 * pad, width + 2 * pad, channels), dtype=x.dtype)
    out[:, pad:pad + height, pad:pad + width] = x
    for k in range(1, pad + 1):
        out[:, pad - k] = out[:, pad + k]
        out[:, pad + height - 1 + k] = out[:, pad + height - 1 - k]
    for k in range(1, pad + 1):
        out[:, :, pad - k] = out[:, :, pad + k]
        out[:, :, pad + width - 1 + k] = out[:, :, pad + width - 1 - k]
    return out


def _columns_conv(padded, weight, stride: int):
    """Valid correlation of (N, H', W', C) with OIHW ``weight`` by a GEMM over the k²
    shifted (strided) copies, per band of output rows: for the stride-2 layers."""
    xp = get_array_module(padded)
    out_channels, channels, kernel, _ = weight.shape
    batch = padded.shape[0]
    height, width = (padded.shape[1] - kernel) // stride + 1, (padded.shape[2] - kernel) // stride + 1
    stacked = xp.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(-1, out_channels))
    out = xp.empty((batch, height, width, out_channels), dtype=xp.float32)
    for n in range(batch):
        for top, bottom in _bands(height, kernel * kernel * channels * width):
            columns = xp.empty((bottom - top, width, kernel * kernel, channels), dtype=xp.float32)
            for i in range(kernel):
                for j in range(kernel):
                    first = stride * top + i
                    columns[:, :, i * kernel + j] = padded[n, first:first + stride * (bottom - top):stride,
                                                           j:j + stride * width:stride]
            xp.matmul(columns.reshape(-1, kernel * kernel * channels), stacked,
                      out=out[n, top:bottom].reshape(-1, out_channels))
    return out


#: floats in one band's buffer of the thin-layer convolutions below (bands bound their memory)
BAND_FLOATS = 2 ** 20


def _bands(rows: int, floats_per_row: int):
    """Row ranges [start, stop) of the output that keep a buffer under :data:`BAND_FLOATS`."""
    step = max(1, BAND_FLOATS // max(1, floats_per_row))
    return [(start, min(rows, start + step)) for start in range(0, rows, step)]


def _few_inputs_conv(padded, weight):
    """Valid correlation (stride 1) of (N, H', W', C) from few input channels (the 9×9 first
    layer): columns built channels-first, where each of the C·k² copies is a run of whole
    rows, then one GEMM per band of output rows."""
    xp = get_array_module(padded)
    out_channels, channels, kernel, _ = weight.shape
    batch, height, width = padded.shape[0], padded.shape[1] - kernel + 1, padded.shape[2] - kernel + 1
    stacked = weight.reshape(out_channels, -1)  # (O, C·k²) in (c, i, j) order, as the columns
    out = xp.empty((batch, height, width, out_channels), dtype=xp.float32)
    for n in range(batch):
        planes = xp.ascontiguousarray(padded[n].transpose(2, 0, 1))
        for top, bottom in _bands(height, channels * kernel * kernel * width):
            columns = xp.empty((channels, kernel, kernel, bottom - top, width), dtype=xp.float32)
            for i in range(kernel):
                for j in range(kernel):
                    columns[:, i, j] = planes[:, top + i:bottom + i, j:j + width]
            # (O, K) @ (K, pixels): the long side last is BLAS's fast layout here; then transposed
            out[n, top:bottom] = xp.matmul(stacked, columns.reshape(channels * kernel * kernel, -1)).T.reshape(
                bottom - top, width, out_channels)
    return out


def _few_outputs_conv(padded, weight):
    """Valid correlation (stride 1) onto few output channels (the 9×9 last layer): one GEMM
    gives every tap's share channels-first, (k²·O, C) @ (C, pixels), then k² shifted sums of
    whole-row runs; by bands of output rows."""
    xp = get_array_module(padded)
    out_channels, channels, kernel, _ = weight.shape
    batch, rows, cols = padded.shape[:3]
    height, width = rows - kernel + 1, cols - kernel + 1
    per_tap = xp.ascontiguousarray(weight.transpose(2, 3, 0, 1).reshape(-1, channels))  # (k²·O, C)
    out = xp.empty((batch, height, width, out_channels), dtype=xp.float32)
    for n in range(batch):
        for top, bottom in _bands(height, kernel * kernel * out_channels * cols):
            band = padded[n, top:bottom + kernel - 1].reshape(-1, channels)
            taps = xp.matmul(per_tap, band.T).reshape(kernel * kernel, out_channels, -1, cols)
            total = xp.zeros((out_channels, bottom - top, width), dtype=xp.float32)
            for i in range(kernel):
                for j in range(kernel):
                    total += taps[i * kernel + j, :, i:i + bottom - top, j:j + width]
            out[n, top:bottom] = total.transpose(1, 2, 0)
    return out


def _winograd_reflect(x, layer, workspace):
    """3×3 / stride 1 correlation after reflection padding, on dfi's Winograd kernel (valid
    mode: the padding is the reflection's), in batch groups that keep the workspace small."""
    from .conv import winograd_conv
    from .winograd import batch_group, tile_size

    xp = get_array_module(x)
    padded = _reflect(x, 1)
    batch, height, width, channels = padded.shape
    out_channels = layer.channels[0]
    workspace.note_input(channels, batch * height * width)
    group = batch_group(batch, channels, out_channels, height, width)
    filters = workspace.filters(layer, tile_size(group, height, width))
    out = xp.empty((batch, height - 2, width - 2, out_channels), dtype=xp.float32)
    for start in range(0, batch, group):
        part = slice(start, start + group)
        winograd_conv(padded[part], filters, workspace, out=out[part], valid=True)
    return out


def _instance_norm_inplace(h, gamma, beta, eps: float = 1e-5):
    """:func:`instance_norm` of channels-last maps, in place: centred first (no
    cancellation in the variance), the variance without a temporary, then scale and shift."""
    xp = get_array_module(h)
    batch, height, width, channels = h.shape
    flat = h.reshape(batch, height * width, channels)
    flat -= flat.mean(axis=1, keepdims=True)
    variance = xp.einsum("npc,npc->nc", flat, flat) / (height * width)
    flat *= (gamma.reshape(1, -1) / xp.sqrt(variance + eps))[:, None]
    flat += beta.reshape(1, 1, -1)
    return h


#: nearest ×2 upsampling then a reflection-padded 3×3 convolution, per output phase (a, b):
#: the edge-padded low-resolution rows (offset, kernel rows summed onto it) each phase reads
_PHASE_ROWS = (((0, (0,)), (1, (1, 2))), ((1, (0, 1)), (2, (2,))))


def _phase_weights(weight):
    """{(a, b): (offsets, (4·C, O) weights)} of :func:`_upsample_conv` from OIHW 3×3 ``weight``."""
    xp = get_array_module(weight)
    phases = {}
    for a in (0, 1):
        for b in (0, 1):
            offsets, parts = [], []
            for dy, rows in _PHASE_ROWS[a]:
                for dx, cols in _PHASE_ROWS[b]:
                    offsets.append((dy, dx))
                    parts.append(weight[:, :, list(rows)][:, :, :, list(cols)].sum(axis=(2, 3)).T)
            phases[a, b] = (tuple(offsets), xp.ascontiguousarray(xp.concatenate(parts, axis=0)))
    return phases


def _upsample_conv(h, phases):
    """Nearest-neighbour ×2 upsampling, reflection padding and a 3×3 correlation in one, on
    the low-resolution maps: the upsampled map's reflected border is the low-resolution
    map's edge, and each output phase (a, b) (rows 2y + a, columns 2x + b) sees only two
    low-resolution rows and columns, so it is a 2×2 correlation with summed weights. One
    GEMM per phase and band, 16/36 of the direct convolution's multiplies; no upsampled map."""
    xp = get_array_module(h)
    batch, height, width, channels = h.shape
    out_channels = phases[0, 0][1].shape[1]
    padded = xp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    out = xp.empty((batch, 2 * height, 2 * width, out_channels), dtype=xp.float32)
    for n in range(batch):
        for top, bottom in _bands(height, 4 * channels * width):
            rows = bottom - top
            columns = xp.empty((rows, width, 4, channels), dtype=xp.float32)
            for (a, b), (offsets, weights) in phases.items():
                for k, (dy, dx) in enumerate(offsets):
                    columns[:, :, k] = padded[n, top + dy:bottom + dy, dx:dx + width]
                out[n, 2 * top + a:2 * bottom:2, b::2] = xp.matmul(
                    columns.reshape(-1, 4 * channels), weights).reshape(rows, width, out_channels)
    return out


#: bytes of transformed filters :class:`FastTransform` keeps (all of the published network's)
FILTER_BUDGET = 64 * 2 ** 20


class FastTransform:
    """The network's forward pass on plain arrays and dfi's kernels (no graph; the fast path
    for stylising), NCHW RGB [0, 255] in and out as :meth:`TransformNet.forward`.

    The layers are prepared from the weights when this is made (transformed filters are
    kept in ``workspace``, up to :data:`FILTER_BUDGET`): make a new one after training
    changes them. The normalised
    layers' biases are left out, exactly: instance normalisation subtracts them again.
    """

    def __init__(self, net: TransformNet, workspace=None):
        from .winograd import THIN, Conv3x3, Workspace

        self.net, self.workspace = net, workspace or Workspace()
        # keep every layer's transformed filters (about 40 MB at width 1): they are few
        self.workspace.filter_budget = max(self.workspace.filter_budget, FILTER_BUDGET)
        self.layers = {}
        for name, kernel, stride, _, upsample, normalise, _ in LAYERS:
            link = getattr(net, name)
            weight, bias = link.W.array, (None if normalise else link.b.array)
            if upsample:
                self.layers[name] = (_upsample_conv, _phase_weights(weight))
            elif kernel == 3 and stride == 1:
                self.layers[name] = (self._winograd, Conv3x3(weight, link.b.array))
            elif stride == 1 and weight.shape[1] <= THIN:
                self.layers[name] = (_few_inputs_conv, weight)
            elif stride == 1 and weight.shape[0] <= THIN:
                self.layers[name] = (_few_outputs_conv, weight)
            else:
                self.layers[name] = (_columns_conv, weight, stride)
            pad = 0 if upsample or (kernel == 3 and stride == 1) else kernel // 2  # (the others pad themselves)
            self.layers[name] += (pad, bias)

    def _winograd(self, h, layer):
        return _winograd_reflect(h, layer, self.workspace)

    def __call__(self, x, mix: Mapping[int, float]):
        net = self.net
        mix = net.check_mix(mix)
        xp = get_array_module(x)
        h = xp.ascontiguousarray(x.transpose(0, 2, 3, 1)) * np.float32(1.0 / 255.0)
        skip = None
        for name, _, _, _, _, normalise, relu in LAYERS:
            conv, *arguments, pad, bias = self.layers[name]
            if name.startswith("r") and name.endswith("1"):
                skip = h
            h = conv(_reflect(h, pad), *arguments)
            if bias is not None:
                h += bias
            if normalise:
                tables = [(net.styles[s], w) for s, w in mix.items()]
                _instance_norm_inplace(h, sum(w * getattr(t, f"{name}_gamma").array for t, w in tables),
                                       sum(w * getattr(t, f"{name}_beta").array for t, w in tables))
            if relu:
                xp.maximum(h, 0, out=h)
            if name.startswith("r") and name.endswith("2"):
                h += skip
        out = 255.0 / (1.0 + xp.exp(-h))
        return xp.ascontiguousarray(out.transpose(0, 3, 1, 2)).astype(xp.float32)


def run(net: TransformNet, x, mix: Mapping[int, float], workspace=None):
    """``FastTransform(net, workspace)(x, mix)``: one stylisation on dfi's kernels."""
    return FastTransform(net, workspace)(x, mix)

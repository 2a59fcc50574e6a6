"""The feed-forward stylizer's forward pass on dfi's own kernels, for stylising (no graph):
reflection padding, Winograd 3×3 convolutions, GEMM convolutions by bands for the thin 9×9
and the stride-2 layers, nearest ×2 upsampling fused with its convolution, in-place
instance normalisation with its ReLU. The pass is a kernel section (:mod:`.threads`): the
bands run on all the threads at once. :class:`FastTransform` equals :meth:`TransformNet.forward`
(:mod:`dfi.nets.stylizer`, which trains through Chainer's graph) to float32 precision."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .. import _compat  # noqa: F401

from ..core.backend import get_array_module, sum_of_products
from . import threads

from .stylizer import TransformNet
def _reflect(x, pad: int):
    """Reflection padding of channels-last maps (N, H, W, C), as numpy's ``reflect``: the
    interior is copied once, then each border from reversed rows or columns (five copies
    whatever the padding)."""
    if not pad:
        return x
    xp = get_array_module(x)
    batch, height, width, channels = x.shape
    if pad >= min(height, width):  # tiny maps: numpy reflects repeatedly
        return xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = xp.empty((batch, height + 2 * pad, width + 2 * pad, channels), dtype=x.dtype)
    threads.copy(out[:, pad:pad + height, pad:pad + width], x, axis=(0, 1))
    # row pad − k is row pad + k, row pad + H − 1 + k is row pad + H − 1 − k (k = 1…pad)
    out[:, :pad, pad:pad + width] = out[:, 2 * pad:pad:-1, pad:pad + width]
    out[:, pad + height:, pad:pad + width] = out[:, pad + height - 2:height - 2:-1, pad:pad + width]
    out[:, :, :pad] = out[:, :, 2 * pad:pad:-1]
    out[:, :, pad + width:] = out[:, :, pad + width - 2:width - 2:-1]
    return out


def _windows(xp, maps, kernel: tuple[int, int], *, top: int = 0, rows: int, width: int,
             stride: int = 1, offset: tuple[int, int] = (0, 0), across: int | None = None):
    """A strided view of C-contiguous ``maps`` (N, H, W, C) as every output pixel's window:
    ``view[n, y, x, i, j, c] = maps[n, stride·(top + y) + dy + i, s·x + dx + j, c]``
    for y < ``rows``, x < ``width``, (i, j) in ``kernel``, ``offset`` (dy, dx), ``s`` the
    step ``across`` (default ``stride``). Copying it builds an im2col matrix in one launch."""
    batch, height, map_width, channels = maps.shape
    start = ((stride * top + offset[0]) * map_width + offset[1]) * channels
    strides = (height * map_width * channels, stride * map_width * channels, (across or stride) * channels,
               map_width * channels, channels, 1)
    return xp.lib.stride_tricks.as_strided(
        maps.reshape(-1)[start:], shape=(batch, rows, width, *kernel, channels),
        strides=tuple(s * maps.itemsize for s in strides))


def _columns_conv(padded, stacked, kernel: int, stride: int, fold: int = 1):
    """Valid correlation of (N, H', W', C) with ``stacked`` weights (:func:`column_weights`)
    by one GEMM over the windows, per chunk of images or band of output rows
    (:func:`_chunks`), the chunks on all the threads at once (:func:`threads.each`): for the
    stride-2 layers and the 9×9 first layer. With ``fold`` F (stride 1, an output width that
    F divides; else F is 1) each GEMM row is F neighbouring output pixels: their windows'
    rows are one run of (k + F − 1)·C contiguous floats, so the columns are (k + F − 1) /
    (F·k) as large and the product F·O wide (the 9×9 layer onto 32 channels: 115 GFLOP/s on
    a core at F 1, 139 at F 2); its (rows, W / F, F·O) output is the maps' own layout."""
    xp = get_array_module(padded)
    batch = padded.shape[0]
    height, width = (padded.shape[1] - kernel) // stride + 1, (padded.shape[2] - kernel) // stride + 1
    if fold > 1 and stride != 1:
        raise ValueError(f"folded columns need stride 1, not {stride}")
    span = kernel + fold - 1
    channels, out_channels = stacked.shape[0] // (kernel * span), stacked.shape[1] // fold
    if fold > 1 and width % fold:  # F does not divide the width: the unfolded weights (their f = 0 part)
        stacked = xp.ascontiguousarray(stacked.reshape(kernel, span, channels, fold, out_channels)[:, :kernel, :, 0]
                                       .reshape(-1, out_channels))
        fold, span = 1, kernel
    out = xp.empty((batch, height, width, out_channels), dtype=xp.float32)

    def band(images, top, bottom):
        columns = xp.ascontiguousarray(_windows(xp, padded[images], (kernel, span), top=top, rows=bottom - top,
                                                width=width // fold, stride=stride, across=stride * fold))
        threads.matmul(columns.reshape(-1, kernel * span * channels), stacked,
                       out[images, top:bottom].reshape(-1, fold * out_channels))  # (a band of whole rows: a view)
    with threads.kernel_section(xp):
        threads.each(band, _chunks(xp, batch, height, kernel * span * channels * width // fold), xp=xp)
    return out


def column_weights(weight, fold: int = 1):
    """OIHW weights as :func:`_columns_conv` takes them with ``fold`` F: (k·(k + F − 1)·C,
    F·O), row (i, j, c) and column (f, o) holding ``weight[o, c, i, j − f]`` (0 where j − f
    is outside the kernel)."""
    xp = get_array_module(weight)
    out_channels, channels, kernel = weight.shape[:3]
    hwio = weight.transpose(2, 3, 1, 0)
    stacked = xp.zeros((kernel, kernel + fold - 1, channels, fold, out_channels), dtype=weight.dtype)
    for f in range(fold):
        stacked[:, f:f + kernel, :, f] = hwio
    return stacked.reshape(-1, fold * out_channels)


#: output pixels per GEMM row of a stride-1 :func:`_columns_conv` (the 9×9 first layer)
COLUMNS_FOLD = 2

#: floats in one band's buffer of the thin-layer convolutions below (bands bound their memory):
#: on NumPy one core's L2 cache (1 MiB; the bands run on all threads at once: 2 × 4 MiB bands
#: made the upsampling layers 1.7 × slower); elsewhere (a GPU, where every band costs kernel
#: launches and memory is plentiful) large enough for whole images, several at a time
BAND_FLOATS = 2 ** 18
DEVICE_BAND_FLOATS = 2 ** 27
#: the same for the 9×9 last layer's tap products, whose bands each recompute k − 1 rows:
#: 16 rows of 256 at this size (1 MiB bands made it 1.6 × slower)
TAPS_BAND_FLOATS = 2 ** 20


def _chunks(xp, batch: int, rows: int, floats_per_row: int, limit: int | None = None):
    """(images, start, stop): the work of a thin-layer convolution on ``batch`` images of
    ``rows`` output rows, in pieces whose buffer stays under ``limit`` floats (NumPy;
    default :data:`BAND_FLOATS`) or
    :data:`DEVICE_BAND_FLOATS`: groups of whole images where one fits, else bands of rows
    of one image at a time."""
    limit = (limit or BAND_FLOATS) if xp is np else DEVICE_BAND_FLOATS
    per_image = rows * max(1, floats_per_row)
    if per_image <= limit:
        group = max(1, limit // per_image)
        return [(slice(n, min(batch, n + group)), 0, rows) for n in range(0, batch, group)]
    step = max(1, limit // max(1, floats_per_row))
    return [(slice(n, n + 1), start, min(rows, start + step)) for n in range(batch) for start in range(0, rows, step)]


def _few_outputs_conv(padded, per_tap, kernel: int):
    """Valid correlation (stride 1) onto few output channels (the stylizer's 9×9 last layer,
    the decoders' 3×3 RGB layer), with
    ``per_tap`` (k²·O, C) weights: one GEMM gives every tap's share channels-first,
    (k²·O, C) @ (C, pixels), then the k² shifted shares are one strided view summed by one
    reduction, per chunk (:func:`_chunks`), the chunks on all the threads at once."""
    xp = get_array_module(padded)
    channels = per_tap.shape[1]
    out_channels = per_tap.shape[0] // (kernel * kernel)
    batch, rows_in, cols = padded.shape[:3]
    height, width = rows_in - kernel + 1, cols - kernel + 1
    out = xp.empty((batch, height, width, out_channels), dtype=xp.float32)

    def band(images, top, bottom):
        count, rows = images.stop - images.start, bottom - top
        span = rows + kernel - 1
        taps = xp.empty((per_tap.shape[0], count * span * cols), dtype=xp.float32)  # (k²·O, count·span·cols)
        threads.matmul(per_tap, padded[images, top:bottom + kernel - 1].reshape(-1, channels).T, taps)
        # total[o, n, y, x] = Σ_ij taps[(i·k + j)·O + o, n, y + i, x + j]
        plane = count * span * cols
        shares = xp.lib.stride_tricks.as_strided(
            taps, shape=(out_channels, count, rows, width, kernel, kernel),
            strides=tuple(s * taps.itemsize for s in (plane, span * cols, cols, 1, kernel * out_channels * plane + cols,
                                                      out_channels * plane + 1)))
        out[images, top:bottom] = shares.sum(axis=(4, 5)).transpose(1, 2, 3, 0)
    with threads.kernel_section(xp):
        threads.each(band, _chunks(xp, batch, height, kernel * kernel * out_channels * cols, TAPS_BAND_FLOATS), xp=xp)
    return out


def tap_weights(weight):
    """OIHW weights as :func:`_few_outputs_conv` takes them: (k²·O, C), one row per tap and
    output channel."""
    xp = get_array_module(weight)
    return xp.ascontiguousarray(weight.transpose(2, 3, 0, 1).reshape(-1, weight.shape[1]))


def _pad(x, pad: int, padding: str):
    """Channels-last maps padded by ``pad`` pixels: ``padding`` "reflect" or "zero"."""
    if padding == "reflect":
        return _reflect(x, pad)
    return get_array_module(x).pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x


def few_outputs_reflect(x, per_tap, kernel: int, padding: str = "reflect"):
    """Reflection (or zero) padding then :func:`_few_outputs_conv` (stride 1, odd
    ``kernel``): for layers onto few channels, such as a decoder's RGB layer, where
    Winograd's products would be (3 × C) thin GEMMs (2.4–3 × slower at 256²)."""
    return _few_outputs_conv(_pad(x, kernel // 2, padding), per_tap, kernel)


def winograd_reflect(x, layer, workspace, *, relu: bool = False, padding: str = "reflect"):
    """3×3 / stride 1 correlation after reflection (or zero) padding, on dfi's Winograd
    kernel (valid mode: the padding is done here), in batch groups that keep the workspace
    small. With ``relu``, ``max(conv + layer.bias, 0)``, fused into the kernel's scatter
    (no passes of their own)."""
    from .conv import winograd_conv
    from .winograd import batch_group, tile_size

    xp = get_array_module(x)
    padded = _pad(x, 1, padding)
    batch, height, width, channels = padded.shape
    out_channels = layer.channels[0]
    workspace.note_input(channels, batch * height * width)
    group = batch_group(batch, channels, out_channels, height, width)
    filters = workspace.filters(layer, tile_size(group, height, width))
    out = xp.empty((batch, height - 2, width - 2, out_channels), dtype=xp.float32)
    for start in range(0, batch, group):
        part = slice(start, start + group)
        winograd_conv(padded[part], filters, workspace, out=out[part], valid=True, bias=layer.bias if relu else None)
    return out


#: elements of one piece of the instance normalisation's passes on maps larger than one
#: core's L2 cache (they stay in cache between its steps; 512 KiB); maps of up to
#: :data:`NORM_WHOLE` elements are one piece on the calling thread (handing pieces of a
#: 64² × 128 map to the other core made its normalisation twice as slow)
NORM_PIECE = 2 ** 17
NORM_WHOLE = 2 ** 19


def instance_norm_inplace(h, gamma, beta, eps: float = 1e-5, relu: bool = False):
    """:func:`instance_norm` of channels-last maps, in place, then ReLU if ``relu``: the
    variance from centred values (no cancellation). On NumPy in three passes over memory,
    each on a piece while it is in cache — the sums; centring and the squares; scale, shift
    and ReLU — with the maps viewed as rows of up to 1,024 values (channels repeated: NumPy's
    loops over 32-value rows cost twice as much), the pieces of large maps on all the threads
    (one pass of sums of the values less a pilot value instead, E[d²] − E[d]², measured no
    faster: 64² maps 25 % slower). Elsewhere (a GPU: every step a kernel launch, each
    reduction one kernel) the whole maps at once, in eight launches."""
    xp = get_array_module(h)
    batch, height, width, channels = h.shape
    count = height * width
    if xp is not np:
        flat = h.reshape(batch, count, channels)
        flat -= flat.mean(axis=1, keepdims=True)
        flat *= (gamma.reshape(1, -1) / xp.sqrt(sum_of_products(flat, flat, axis=1) / count + eps))[:, None]
        flat += beta.reshape(1, 1, -1)
        if relu:
            xp.maximum(flat, 0, out=flat)
        return h
    repeat = 1  # pixels per row of the view
    while count % (2 * repeat) == 0 and 2 * repeat * channels <= 1024:
        repeat *= 2
    rows = h.reshape(batch, count // repeat, repeat * channels)
    step = max(1, NORM_PIECE // (batch * rows.shape[2])) if h.size > NORM_WHOLE else rows.shape[1]
    pieces = [(k, slice(start, start + step)) for k, start in enumerate(range(0, rows.shape[1], step))]
    partial = np.empty((len(pieces), batch, rows.shape[2]), dtype=np.float32)

    def per_channel(partial):  # (pieces, N, repeat·C) partial sums → (N, 1, repeat·C) totals
        total = partial.sum(axis=0).reshape(batch, repeat, channels).sum(axis=1)
        return np.tile(total, (1, repeat))[:, None]

    def sums(k, part):
        partial[k] = np.einsum("abc->ac", rows[:, part])

    def squares(k, part):  # centred in place: no temporary
        piece = rows[:, part]
        piece -= mean
        partial[k] = sum_of_products(piece, piece, axis=1)

    def normalise(k, part):
        piece = rows[:, part]
        piece *= scale
        piece += shift
        if relu:
            np.maximum(piece, 0, out=piece)
    with threads.kernel_section(np):
        threads.each(sums, pieces)
        mean = per_channel(partial) / np.float32(count)
        threads.each(squares, pieces)
        scale = np.tile(gamma.reshape(1, -1), (1, repeat))[:, None] / np.sqrt(per_channel(partial) / count + eps)
        shift = np.tile(beta.reshape(1, -1), (1, repeat))[:, None]
        threads.each(normalise, pieces)
    return h


#: nearest ×2 upsampling then a reflection-padded 3×3 convolution, per output phase (a, b):
#: the edge-padded low-resolution rows (offset, kernel rows summed onto it) each phase reads
_PHASE_ROWS = (((0, (0,)), (1, (1, 2))), ((1, (0, 1)), (2, (2,))))


def phase_weights(weight):
    """{(a, b): (offsets, (4·C, O) weights)} of :func:`upsample_conv` from OIHW 3×3 ``weight``."""
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


def upsample_conv(h, phases, *, bias=None, relu: bool = False, padding: str = "reflect"):
    """Nearest-neighbour ×2 upsampling, reflection (or zero) padding and a 3×3 correlation in
    one, on the low-resolution maps: the upsampled map's reflected border is the
    low-resolution map's edge (its zero border a zero one), and each output phase (a, b)
    (rows 2y + a, columns 2x + b) sees only two low-resolution rows and columns, so it is a
    2×2 correlation with summed weights. One
    window copy and one GEMM per phase and chunk (:func:`_chunks`; the chunks on all the
    threads at once), 16/36 of the direct convolution's multiplies; no upsampled map.
    ``bias`` is added and ``relu`` applied to each product while it is in cache."""
    xp = get_array_module(h)
    batch, height, width, channels = h.shape
    out_channels = phases[0, 0][1].shape[1]
    padded = xp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge" if padding == "reflect" else "constant")
    out = xp.empty((batch, 2 * height, 2 * width, out_channels), dtype=xp.float32)

    def band(images, top, bottom):
        rows = bottom - top
        for (a, b), (_, weights) in phases.items():  # phase (a, b) reads rows a, a + 1 and columns b, b + 1
            columns = xp.ascontiguousarray(_windows(xp, padded[images], (2, 2), top=top, rows=rows, width=width,
                                                    offset=(a, b)))
            product = xp.empty((columns.size // (4 * channels), out_channels), dtype=xp.float32)
            threads.matmul(columns.reshape(-1, 4 * channels), weights, product)
            if bias is not None:
                product += bias
            if relu:
                xp.maximum(product, 0, out=product)
            out[images, 2 * top + a:2 * bottom:2, b::2] = product.reshape(-1, rows, width, out_channels)
    with threads.kernel_section(xp):
        threads.each(band, _chunks(xp, batch, height, 4 * channels * width), xp=xp)
    return out


def image_out(h, output: str, top: float):
    """A network's channels-last float32 output ``h`` (overwritten) as the NCHW image in
    [0, 255]: 255·σ(h) for ``output`` "sigmoid", else clip(h, 0, ``top``) · 255 / ``top``,
    in place, then one transposing copy."""
    xp = get_array_module(h)
    if output == "sigmoid":
        xp.negative(h, out=h)
        xp.exp(h, out=h)
        h += 1.0
        xp.divide(np.float32(255.0), h, out=h)
    else:
        xp.clip(h, 0.0, top, out=h)
        if top != 255.0:
            h *= np.float32(255.0 / top)
    return xp.ascontiguousarray(h.transpose(0, 3, 1, 2))


#: bytes of transformed filters :class:`FastTransform` keeps (all of the published network's)
FILTER_BUDGET = 128 * 2 ** 20


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
        # keep every layer's transformed filters (about 40 MB at width 1, twice that on CuPy,
        # winograd.filter_layouts): they are few
        self.workspace.filter_budget = max(self.workspace.filter_budget, FILTER_BUDGET)
        self.layers = {}
        for name, kernel, stride, _, upsample, normalise, _ in net.layers:
            link = getattr(net, name)
            weight = link.W.array
            xp = get_array_module(weight)
            bias = None if normalise or link.b is None else link.b.array
            conv_bias = xp.zeros(weight.shape[0], weight.dtype) if link.b is None else link.b.array
            out_channels, channels = weight.shape[:2]
            if upsample:
                self.layers[name] = (upsample_conv, phase_weights(weight))
            elif kernel == 3 and stride == 1:
                self.layers[name] = (self._winograd, Conv3x3(weight, conv_bias))
            elif stride == 1 and out_channels <= THIN:
                self.layers[name] = (_few_outputs_conv, tap_weights(weight), kernel)
            else:
                fold = COLUMNS_FOLD if stride == 1 else 1
                self.layers[name] = (_columns_conv, column_weights(weight, fold), kernel, stride, fold)
            pad = 0 if upsample or (kernel == 3 and stride == 1) else kernel // 2  # (the others pad themselves)
            self.layers[name] += (pad, bias)

    def _winograd(self, h, layer):
        return winograd_reflect(h, layer, self.workspace)

    def __call__(self, x, mix: Mapping[int, float]):
        with threads.kernel_section(get_array_module(x)):
            return self._forward(x, mix)

    def _forward(self, x, mix: Mapping[int, float]):
        net = self.net
        mix = net.check_mix(mix)
        xp = get_array_module(x)
        h = xp.ascontiguousarray(x.transpose(0, 2, 3, 1)) * np.float32(net.variant.input_scale)
        skip = None
        for name, _, _, _, _, normalise, relu in net.layers:
            conv, *arguments, pad, bias = self.layers[name]
            if name.startswith("r") and name.endswith("1"):
                skip = h
            h = conv(_reflect(h, pad), *arguments)
            if bias is not None:
                h += bias
            if normalise:
                tables = [(net.styles[s], w) for s, w in mix.items()]
                instance_norm_inplace(h, sum(w * getattr(t, f"{name}_gamma").array for t, w in tables),
                                      sum(w * getattr(t, f"{name}_beta").array for t, w in tables), relu=relu)
            elif relu:
                xp.maximum(h, 0, out=h)
            if name.startswith("r") and name.endswith("2"):
                h += skip
        return image_out(h, net.variant.output, 255.0)


def run(net: TransformNet, x, mix: Mapping[int, float], workspace=None):
    """``FastTransform(net, workspace)(x, mix)``: one stylisation on dfi's kernels."""
    return FastTransform(net, workspace)(x, mix)

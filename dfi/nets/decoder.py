"""Feature decoders: VGG-19 features back to the image, one builder for every variant.

A decoder is a sequence of operations read from an architecture record (stored in its
model file), starting from the deepest of its VGG layers:

- ``("conv", C, relu)``: padding of 1 and a 3×3 convolution to C channels, then (when
  ``relu``) the normalisation, if any, and a ReLU;
- ``("up",)``: ×2 upsampling (nearest-neighbour: run fused with the convolution after it);
- ``("join", layer)``: the features of a shallower VGG layer concatenated to the channels.

The record's ``padding`` ("reflect", the default, or "zero"), ``upsample`` ("nearest",
default, or "bilinear": half-pixel centres, edges repeated, PyTorch's ``align_corners=False``)
and ``norm`` ("none", default, or "instance": each image's channels normalised over its
pixels, then a learned γ, β — no running statistics, so training and inference agree)
apply to every layer; BENCHMARKS.md measures them.

The output is RGB [0, 255]: ``"sigmoid"`` (255·σ(h)) or ``"unit"`` (255·h clamped to
[0, 1], as AdaIN's decoder, which outputs [0, 1] images). :func:`dfi_spec` gives DFI's
multi-layer decoder (conv5_1 decoded upwards, joined with conv4_1 and conv3_1, as the
official DFI code's never-released ``ReconModel``, without its batch norm);
:func:`adain_spec` AdaIN's published conv4_1 decoder. :class:`Decoder` is the Chainer
graph (training); :class:`FastDecoder` runs the same weights on dfi's kernels (Winograd
3×3, the stylizer's fused upsampling convolution, channels-last) for inference.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Mapping, Sequence

import numpy as np

from .. import _compat  # noqa: F401
import chainer
import chainer.functions as F
import chainer.links as L

from ..core.backend import get_array_module, using_device
from ..core.errors import FileFormatError, SettingError
from .names import NORMS, PADDINGS, UPSAMPLINGS, vgg19_layer_names
from .stylizer import instance_norm, reflection_pad
from .threads import each, kernel_section

OUTPUTS = ("sigmoid", "unit")


def layer_stride(layer: str) -> int:
    """How many input pixels a feature of ``layer`` (``convB_i``) spans: 2^(B−1)."""
    if layer not in vgg19_layer_names() or not layer.startswith("conv"):
        raise SettingError(f"decoder layer {layer!r} is not a VGG-19 convolution; "
                           f"valid: {', '.join(n for n in vgg19_layer_names() if n.startswith('conv'))}")
    return 2 ** (int(layer[4]) - 1)


@dataclass(frozen=True)
class DecoderSpec:
    """The architecture record: ``inputs`` {layer: channels} (deepest first), ``ops`` and
    the ``output`` kind (see the module's docstring)."""

    inputs: tuple[tuple[str, int], ...]
    ops: tuple[tuple, ...]
    output: str = "sigmoid"
    #: each input layer's features are divided by its scale (their RMS on the training
    #: faces: an untrained VGG's conv5_1 is orders of magnitude above its conv3_1)
    scales: tuple[float, ...] = ()
    padding: str = PADDINGS[0]
    upsample: str = UPSAMPLINGS[0]
    norm: str = NORMS[0]

    def __post_init__(self):
        if self.scales and (len(self.scales) != len(self.inputs) or not all(s > 0 for s in self.scales)):
            raise SettingError(f"decoder scales {self.scales}: one positive number per input layer")
        for what, value, allowed in (("output", self.output, OUTPUTS), ("padding", self.padding, PADDINGS),
                                     ("upsampling", self.upsample, UPSAMPLINGS), ("normalisation", self.norm, NORMS)):
            if value not in allowed:
                raise SettingError(f"decoder {what} {value!r} is not one of {', '.join(allowed)}")
        layers = [name for name, _ in self.inputs]
        strides = [layer_stride(name) for name in layers]
        if strides != sorted(strides, reverse=True) or len(set(layers)) != len(layers):
            raise SettingError(f"decoder layers {', '.join(layers)}: give distinct layers, deepest first")
        stride, joined = strides[0], [layers[0]]
        for op in self.ops:
            if op[0] == "up":
                stride //= 2
            elif op[0] == "join":
                if op[1] not in layers or op[1] in joined or layer_stride(op[1]) != stride:
                    raise SettingError(f"decoder: cannot join {op[1]!r} at stride {stride}")
                joined.append(op[1])
            elif op[0] != "conv":
                raise SettingError(f"decoder operation {op[0]!r} is not conv, up or join")
        if stride != 1 or sorted(joined) != sorted(layers) or self.ops[-1][:2] != ("conv", 3):
            raise SettingError("decoder: the operations must join every layer, return to stride 1 "
                               "and end with a convolution to 3 channels")

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.inputs)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of the deepest layer's stride."""
        return layer_stride(self.inputs[0][0])

    def scale_of(self, layer: str) -> float:
        return dict(zip(self.layers, self.scales)).get(layer, 1.0)

    def record(self) -> dict:
        return {"inputs": [list(i) for i in self.inputs], "ops": [list(op) for op in self.ops],
                "output": self.output, "scales": list(self.scales), "padding": self.padding,
                "upsample": self.upsample, "norm": self.norm}

    @classmethod
    def from_record(cls, record: Mapping) -> "DecoderSpec":
        return cls(tuple((str(n), int(c)) for n, c in record["inputs"]),
                   tuple(tuple(op) for op in record["ops"]), str(record.get("output", "sigmoid")),
                   tuple(float(s) for s in record.get("scales", ())), str(record.get("padding", PADDINGS[0])),
                   str(record.get("upsample", UPSAMPLINGS[0])), str(record.get("norm", NORMS[0])))


def dfi_spec(channels: Mapping[str, int], *, layers: Sequence[str] = ("conv5_1", "conv4_1", "conv3_1"),
             width: float = 1.0, scales: Mapping[str, float] | None = None, **kinds) -> DecoderSpec:
    """DFI's decoder for ``layers`` (their channel counts in ``channels``, from the VGG; the
    features' ``scales``, default 1): two convolutions per level, a ×2 upsampling between
    levels, each shallower layer joined where its stride is reached, then convolutions up
    to the full resolution. ``kinds``: the record's ``padding``, ``upsample``, ``norm``."""
    ordered = sorted(layers, key=layer_stride, reverse=True)
    stride = layer_stride(ordered[0])

    def c(n):
        return max(1, int(round(n * width)))
    ops, joins = [], {layer_stride(name): name for name in ordered[1:]}
    level_width = {16: 512, 8: 256, 4: 128, 2: 64, 1: 32}
    while True:
        ops += [("conv", c(level_width[stride]), True)] * 2
        if stride == 1:
            break
        ops.append(("up",))
        stride //= 2
        if stride in joins:
            ops.append(("join", joins[stride]))
    ops.append(("conv", 3, False))
    return DecoderSpec(tuple((name, int(channels[name])) for name in ordered), tuple(ops), "sigmoid",
                       tuple(float(scales[name]) for name in ordered) if scales else (), **kinds)


def adain_spec(width: float = 1.0, channels: int | None = None) -> DecoderSpec:
    """AdaIN's published decoder (pytorch-AdaIN ``decoder.pth``): conv4_1 → image.
    ``width`` scales its channels; ``channels``: its input's, the encoder's conv4_1 (default
    512 scaled by ``width``)."""
    def c(n):
        return max(1, int(round(n * width)))
    ops = [("conv", c(256), True), ("up",), *[("conv", c(256), True)] * 3, ("conv", c(128), True), ("up",),
           ("conv", c(128), True), ("conv", c(64), True), ("up",), ("conv", c(64), True), ("conv", 3, False)]
    return DecoderSpec((("conv4_1", channels or c(512)),), tuple(ops), "unit")


#: what :func:`bilinear_up2` needs of an array library, for Chainer Variables
_CHAINER_ARRAYS = SimpleNamespace(concatenate=F.concat, stack=F.stack)


def bilinear_up2(h, axes: Sequence[int], lib):
    """Bilinear ×2 upsampling of ``h`` along ``axes`` (half-pixel centres, edges repeated):
    output 2i is ¾·h[i] + ¼·h[i − 1], output 2i + 1 is ¾·h[i] + ¼·h[i + 1]. ``lib``:
    NumPy, CuPy, or Chainer's functions (its ``concatenate`` and ``stack``)."""
    for axis in axes:
        n = h.shape[axis]

        def part(start, stop):
            return h[(slice(None),) * axis + (slice(start, stop),)]
        before = lib.concatenate([part(0, 1), part(0, n - 1)], axis)
        after = lib.concatenate([part(1, n), part(n - 1, n)], axis)
        shape = list(h.shape)
        shape[axis] *= 2
        h = lib.stack([0.75 * h + 0.25 * before, 0.75 * h + 0.25 * after], axis + 1).reshape(shape)
    return h


def conv_channels(spec: DecoderSpec):
    """(index, in channels, out channels, relu, fused) of every convolution; ``fused``: it
    comes right after a nearest-neighbour upsampling, which the kernels then run with it."""
    inputs = dict(spec.inputs)
    channels, out = inputs[spec.layers[0]], []
    for previous, op in zip((None, *spec.ops), spec.ops):
        if op[0] == "join":
            channels += inputs[op[1]]
        elif op[0] == "conv":
            out.append((len(out), channels, int(op[1]), bool(op[2]), previous == ("up",)
                        and spec.upsample == "nearest"))
            channels = int(op[1])
    return out


def column_elements(spec: DecoderSpec, size: int, batch: int) -> dict[str, int]:
    """{convolution: elements of the column buffer Chainer's convolution makes} when
    ``batch`` images of ``size``² are decoded in training (im2col / col2im, no cuDNN):
    9 · its input channels · its pixels, per image."""
    side, convs, out = -(-size // spec.multiple), iter(conv_channels(spec)), {}
    for op in spec.ops:
        if op[0] == "up":
            side *= 2
        elif op[0] == "conv":
            index, c_in, *_ = next(convs)
            out[f"conv{index}"] = batch * 9 * c_in * side * side
    return out


class Decoder(chainer.Chain):
    """The decoder of ``spec`` as a Chainer graph (training); call it with
    ``{layer: (N, C, h, w)}`` features, get NCHW RGB [0, 255]."""

    #: the model file's record (layers, VGG, training settings) of a loaded decoder, else None
    record = None

    def __init__(self, spec: DecoderSpec, *, seed: int = 0):
        super().__init__()
        self.spec = spec
        rng = np.random.default_rng(seed)
        with self.init_scope():
            for index, c_in, c_out, relu, _ in conv_channels(spec):
                weight = (rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2.0 / (9 * c_in))).astype(np.float32)
                setattr(self, f"conv{index}", L.Convolution2D(c_in, c_out, 3, initialW=weight, initial_bias=0.0))
                if relu and spec.norm == "instance":
                    setattr(self, f"gamma{index}", chainer.Parameter(np.ones(c_out, np.float32)))
                    setattr(self, f"beta{index}", chainer.Parameter(np.zeros(c_out, np.float32)))

    @classmethod
    def load(cls, path, device="@numpy") -> "Decoder":
        """A trained decoder from its model file (``dfi train-decoder``) on ``device`` (a
        Chainer device specifier), its record in :attr:`record`."""
        net, record = load_decoder(path)
        net.record = record
        device = chainer.get_device(device)
        with device.create_context():
            net.to_device(device)
        return net

    def decode(self, feats: Mapping[str, object], size=None):
        """``{layer: (N, C, h, w)}`` arrays → NCHW RGB [0, 255] of ``size`` on dfi's kernels
        (no graph), with the weights as they are now: each call prepares the layers again
        (~35 ms at 200² on 2 cores); a :class:`FastDecoder` keeps them for many calls."""
        return FastDecoder(self)(feats, size)

    def forward(self, feats: Mapping[str, object], size=None, *, clip: bool = True):
        """``size`` (H, W): the image's (default: the deepest layer's × its stride). VGG's
        pooling rounds up, so an upsampled map can be a row longer than the layer it joins
        (or than the image): it is cropped to it. Without ``clip``, a ``unit`` output is
        255·h unclamped: what training scores (pytorch-AdaIN's train.py clamps only the
        images it saves; a clamp in training gives the pixels beyond [0, 1] no gradient, and
        such a decoder went all one colour in 300 steps)."""
        spec = self.spec
        h, index = feats[spec.layers[0]] * (1.0 / spec.scale_of(spec.layers[0])), 0
        for op in spec.ops:
            if op[0] == "up":
                h = (F.unpooling_2d(h, 2, stride=2, cover_all=False) if spec.upsample == "nearest"
                     else bilinear_up2(h, (2, 3), _CHAINER_ARRAYS))
            elif op[0] == "join":
                joined = feats[op[1]] * (1.0 / spec.scale_of(op[1]))
                h = F.concat([h[:, :, :joined.shape[2], :joined.shape[3]], joined], axis=1)
            else:
                padded = (reflection_pad(h, 1) if spec.padding == "reflect"
                          else F.pad(h, ((0, 0), (0, 0), (1, 1), (1, 1)), "constant"))
                h = getattr(self, f"conv{index}")(padded)
                if op[2] and spec.norm == "instance":
                    h = instance_norm(h, getattr(self, f"gamma{index}"), getattr(self, f"beta{index}"))
                h = F.relu(h) if op[2] else h
                index += 1
        if size is not None:
            h = h[:, :, :size[0], :size[1]]
        if spec.output == "sigmoid":
            return 255.0 * F.sigmoid(h)
        return 255.0 * (F.clip(h, 0.0, 1.0) if clip else h)


#: channels per job when NCHW features are moved channels-last: a block's rows are read
#: whole and its columns written while they are in cache (a join of conv3_1 at 256²: 1.96 →
#: 1.15 ms; of conv4_1 1.43 → 0.60, on both threads)
MOVE_CHANNELS = 32


def _channels_last(x, scale, before=None):
    """``scale`` · NCHW ``x`` as channels-last (N, h, w, C), after the channels of ``before``
    (N, ≥ h, ≥ w, C') cropped to h × w when it is given (a decoder's join): one new array.
    On NumPy by blocks of :data:`MOVE_CHANNELS` channels on all the threads (a strided read
    of every channel for each pixel is twice as slow); elsewhere in two launches."""
    xp = get_array_module(x)
    batch, channels, height, width = x.shape
    first = 0 if before is None else before.shape[3]
    out = xp.empty((batch, height, width, first + channels), dtype=xp.float32)
    if xp is not np:
        if before is not None:
            out[..., :first] = before[:, :height, :width]
        xp.multiply(x.transpose(0, 2, 3, 1), scale, out=out[..., first:])
        return out

    def move(n: int, start: int) -> None:
        if start < 0:  # the channels before
            np.copyto(out[n, :, :, :first], before[n, :height, :width])
            return
        stop = min(channels, start + MOVE_CHANNELS)
        np.multiply(x[n, start:stop].reshape(stop - start, -1).T, scale,
                    out=out[n].reshape(height * width, -1)[:, first + start:first + stop])
    starts = ([-1] if first else []) + list(range(0, channels, MOVE_CHANNELS))
    each(move, [(n, start) for n in range(batch) for start in starts])
    return out


class FastDecoder:
    """:class:`Decoder`'s forward pass on plain arrays and dfi's kernels (no graph), the
    layers prepared once from its weights: make a new one after training changes them.
    Both run with the decoder's device current, whichever thread calls."""

    def __init__(self, net: Decoder, workspace=None):
        with using_device(net.device):
            self._prepare(net, workspace)

    def _prepare(self, net: Decoder, workspace) -> None:
        from .stylizer_kernels import FILTER_BUDGET, phase_weights, tap_weights
        from .winograd import THIN, Conv3x3, Workspace

        self.net, self.spec = net, net.spec
        self.workspace = workspace or Workspace()
        self.workspace.filter_budget = max(self.workspace.filter_budget, FILTER_BUDGET)
        self.convs = []  # (kind, prepared weights, bias, relu)
        self.norms = {}  # index: (γ, β) of a normalised convolution
        for index, _, c_out, relu, fused in conv_channels(self.spec):
            link = getattr(net, f"conv{index}")
            weight, bias = link.W.array, link.b.array
            if relu and self.spec.norm == "instance":
                self.norms[index] = (getattr(net, f"gamma{index}").array, getattr(net, f"beta{index}").array)
            if fused:
                self.convs.append(("upsample", phase_weights(weight), bias, relu))
            elif c_out <= THIN:  # onto few channels (the RGB layer): each tap's GEMM, not Winograd's
                self.convs.append(("taps", tap_weights(weight), bias, relu))
            else:
                self.convs.append(("winograd", Conv3x3(weight, bias), bias, relu))

    def __call__(self, feats: Mapping[str, object], size=None):
        """``{layer: (N, C, h, w)}`` arrays → NCHW RGB [0, 255] float32 of ``size`` (H, W)
        (as :meth:`Decoder.forward`), on their device."""
        with using_device(self.net.device), kernel_section(get_array_module(feats[self.spec.layers[0]])):
            return self._forward(feats, size)

    def _forward(self, feats, size):
        from .stylizer_kernels import (few_outputs_reflect, image_out, instance_norm_inplace, upsample_conv,
                                       winograd_reflect)

        spec, padding = self.spec, self.spec.padding
        first = feats[spec.layers[0]]
        xp = get_array_module(first)
        h, index = _channels_last(first, np.float32(1.0 / spec.scale_of(spec.layers[0]))), 0
        for op, following in zip(self.spec.ops, (*self.spec.ops[1:], None)):
            if op[0] == "up":
                if spec.upsample == "bilinear":
                    h = bilinear_up2(h, (1, 2), xp)
                elif following[0] != "conv":  # else fused with that convolution
                    h = xp.repeat(xp.repeat(h, 2, axis=1), 2, axis=2)
                continue
            if op[0] == "join":
                h = _channels_last(feats[op[1]], np.float32(1.0 / spec.scale_of(op[1])), before=h)
                continue
            kind, layer, bias, relu = self.convs[index]
            norm = self.norms.get(index)  # (γ, β); it takes the bias away, so none is added
            if kind == "upsample":
                h = upsample_conv(h, layer, bias=bias if norm is None else None, relu=relu and norm is None,
                                  padding=padding)
            elif kind == "winograd" and relu and norm is None:  # bias and ReLU fused into the kernel
                h = winograd_reflect(h, layer, self.workspace, relu=True, padding=padding)
            else:
                h = (few_outputs_reflect(h, layer, 3, padding) if kind == "taps"
                     else winograd_reflect(h, layer, self.workspace, padding=padding))
                if norm is None:
                    h += bias
                    if relu:
                        xp.maximum(h, 0, out=h)
            if norm is not None:
                h = instance_norm_inplace(h, *norm, relu=relu)
            index += 1
        if size is not None:
            h = h[:, :size[0], :size[1]]
        return image_out(h, self.spec.output, 1.0)


RECORD = "__dfi_decoder__"


def save_decoder(path, net: Decoder, *, vgg_identity: str, convention: str, settings: Mapping) -> None:
    """The decoder's parameters and its record (architecture, the VGG it decodes — name,
    pooling and weights hash — its input convention, the training settings, dfi's
    version), atomically."""
    import json

    from data_tools.fsutil import atomic_path

    from .. import __version__
    from ..core.backend import to_cpu

    arrays = {name: to_cpu(param.array) for name, param in net.namedparams()}
    arrays[RECORD] = np.array(json.dumps({"format": "dfi-decoder", "version": 1, "dfi": __version__,
                                          "architecture": net.spec.record(), "vgg": vgg_identity,
                                          "convention": convention, "training": dict(settings)}, default=str))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_decoder(path) -> tuple[Decoder, dict]:
    """A decoder and its record from a model file; one-line errors for a missing, foreign
    or damaged file (a dfi decoder is an .npz with a ``__dfi_decoder__`` record)."""
    import json
    import zipfile
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--decoder {path}: no such file")
    foreign = f"--decoder {path}: not a dfi decoder (an .npz with a {RECORD} record, from dfi train-decoder)"
    if not zipfile.is_zipfile(path):
        raise FileFormatError(foreign)
    try:
        with np.load(path, allow_pickle=False) as data:
            if RECORD not in data.files:
                raise FileFormatError(foreign)
            record = json.loads(str(data[RECORD]))
            if record.get("format") != "dfi-decoder":
                raise FileFormatError(foreign)
            net = Decoder(DecoderSpec.from_record(record["architecture"]))
            for name, param in net.namedparams():
                if name not in data.files or data[name].shape != param.shape:
                    raise FileFormatError(f"--decoder {path}: parameter {name} is missing or of another shape")
                param.array[...] = data[name]
    except (OSError, KeyError, TypeError, json.JSONDecodeError, zipfile.BadZipFile) as exc:
        raise FileFormatError(f"{foreign} ({type(exc).__name__})") from None
    return net, record


def check_decoder_vgg(record: Mapping, vgg_identity: str, layers: Sequence[str], path="--decoder") -> None:
    """Refuse a decoder trained on another VGG (name, pooling, weights) or for other layers."""
    if record.get("vgg") != vgg_identity:
        raise SettingError(f"{path} decodes the features of VGG {record.get('vgg')!r}, not of {vgg_identity!r} "
                           "(train one for these weights with dfi train-decoder)")
    check_decoder_layers([name for name, _ in record["architecture"]["inputs"]], layers, path)


def check_decoder_layers(ours: Sequence[str], layers: Sequence[str], path="--decoder") -> None:
    """Refuse a decoder of the layers ``ours`` for edits of other ``layers``."""
    if sorted(ours) != sorted(layers):
        raise SettingError(f"{path} decodes layers {', '.join(sorted(ours))}, not {', '.join(sorted(layers))}")

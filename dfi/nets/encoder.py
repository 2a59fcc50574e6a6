"""AdaIN's encoder: the normalised VGG-19 as pytorch-AdaIN runs it (``vgg_normalised.pth``).

Its layers are VGG-19's, with two differences from :class:`dfi.nets.vgg.VGG19`: every 3×3
convolution is preceded by reflection padding (not zeros), and a 1×1 convolution first maps
RGB in [0, 1] to the Caffe convention (BGR × 255 − mean). That 1×1 convolution is folded
exactly into conv1_1 here (a per-pixel affine map commutes with reflection padding, which
only copies pixels), so the encoder takes RGB [0, 255] as every dfi network does. Pooling
is max, 2×2, ceil mode. Layer ``convB_i`` is the ReLU output (AdaIN's ``reluB_i``).

:meth:`Encoder.features` runs on dfi's kernels without a graph (the reflection-padded
Winograd convolution the stylizer uses); :meth:`Encoder.pick` builds Chainer's graph (for
training a decoder through it, and as the kernels' reference).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .. import _compat  # noqa: F401
import chainer
import chainer.functions as F

from ..core.backend import get_array_module
from ..core.errors import FileFormatError, SettingError
from .names import vgg19_layer_names

#: the layers AdaIN reads: relu1_1 … relu4_1 (the content and style of the paper)
ADAIN_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1")
#: what a decoder converted from pytorch-AdaIN's ``decoder.pth`` decodes
ADAIN_IDENTITY = "adain:vgg_normalised"
RECORD = "__dfi_encoder__"


def fold_input_conv(weight, bias, first_weight, first_bias, scale: float = 1.0 / 255.0):
    """conv1_1 after a 1×1 convolution (``first_weight`` (3, 3, 1, 1), ``first_bias``) of
    the input times ``scale``, as one convolution: W'[o, c] = Σ_k W[o, k]·A[k, c]·scale,
    b' = b + Σ W[o, k, i, j]·a[k]."""
    mix = np.asarray(first_weight, np.float64).reshape(3, 3)
    w = np.asarray(weight, np.float64)
    folded = np.einsum("okij,kc->ocij", w, mix) * scale
    shifted = np.asarray(bias, np.float64) + np.einsum("okij,k->o", w, np.asarray(first_bias, np.float64))
    return folded.astype(np.float32), shifted.astype(np.float32)


class Encoder:
    """A reflection-padded VGG-19 trunk (``params`` {"conv1_1": (W, b), …}, conv1_1 taking
    RGB [0, 255]) up to its deepest given layer."""

    def __init__(self, params: Mapping[str, tuple], *, identity: str = ADAIN_IDENTITY, name: str = "adain"):
        names = [n for n in vgg19_layer_names()]
        convs = [n for n in names if n.startswith("conv")]
        present = [n for n in convs if n in params]
        if not present or present != convs[:len(present)]:
            raise SettingError(f"encoder weights must be VGG-19's first convolutions in order, not {present[:3]}…")
        self.layer_names = names[:names.index(present[-1]) + 1]
        self.params = {n: (np.asarray(params[n][0], np.float32), np.asarray(params[n][1], np.float32)) for n in present}
        channels = 3
        for n in present:  # each a 3×3 convolution of the last one's channels, its bias as long
            weight, bias = self.params[n]
            if weight.ndim != 4 or weight.shape[1:] != (channels, 3, 3) or bias.shape != weight.shape[:1]:
                raise FileFormatError(f"encoder layer {n}: weights {weight.shape}, bias {bias.shape}; a 3×3 "
                                      f"convolution of {channels} channels is needed")
            channels = weight.shape[0]
        self.identity, self.name = identity, name
        self.device = chainer.get_device("@numpy")
        self._prepare()

    def _prepare(self):
        from .winograd import Conv3x3, Workspace

        self.workspace = Workspace()
        self._convs = {n: Conv3x3(w, b) for n, (w, b) in self.params.items()}

    def to_device(self, device) -> "Encoder":
        device = chainer.get_device(device)
        self.params = {n: (device.send(w), device.send(b)) for n, (w, b) in self.params.items()}
        self.device = device
        self._prepare()
        return self

    def check_layers(self, layers: Iterable[str]) -> list[str]:
        layers = list(layers)
        unknown = [n for n in layers if n not in self.layer_names]
        if unknown or not layers:
            raise SettingError(f"encoder layer {unknown[0] if unknown else None!r}; it has "
                               f"{', '.join(self.layer_names)}")
        return layers

    def column_elements(self, size: int, batch: int, layers: Iterable[str]) -> dict[str, int]:
        """{convolution: elements of the column buffer Chainer's convolution makes} in
        :meth:`pick` of ``batch`` images of ``size``² up to the deepest of ``layers``."""
        last = max(self.layer_names.index(n) for n in self.check_layers(layers))
        side, out = size, {}
        for name in self.layer_names[:last + 1]:
            if name.startswith("conv"):
                out[name] = batch * 9 * self.params[name][0].shape[1] * side * side
            else:
                side = -(-side // 2)  # ceil mode
        return out

    def features(self, images, layers: Iterable[str]) -> dict:
        """{layer: (N, C, h, w) array} of NCHW RGB [0, 255] ``images`` (on the encoder's
        device), on dfi's kernels, no graph."""
        from .pool import pool2x2
        from .stylizer_kernels import winograd_reflect

        wanted = set(self.check_layers(layers))
        last = max(self.layer_names.index(n) for n in wanted)
        xp = get_array_module(images)
        h, out = xp.ascontiguousarray(images.transpose(0, 2, 3, 1)), {}
        with chainer.no_backprop_mode():
            for name in self.layer_names[:last + 1]:
                if name.startswith("conv"):
                    h = winograd_reflect(h, self._convs[name], self.workspace)
                    h += self.params[name][1]
                    xp.maximum(h, 0, out=h)
                else:
                    h = pool2x2(h, "max").array
                if name in wanted:
                    out[name] = xp.ascontiguousarray(h.transpose(0, 3, 1, 2))
        return out

    def pick(self, x, layers: Iterable[str]) -> dict:
        """{layer: Variable} of NCHW RGB [0, 255] ``x`` through Chainer's graph."""
        from .stylizer import reflection_pad

        wanted = set(self.check_layers(layers))
        last = max(self.layer_names.index(n) for n in wanted)
        out, h = {}, x
        for name in self.layer_names[:last + 1]:
            if name.startswith("conv"):
                weight, bias = self.params[name]
                h = F.relu(F.convolution_2d(reflection_pad(h, 1), weight, bias))
            else:
                h = F.max_pooling_2d(h, 2, stride=2, cover_all=True)
            if name in wanted:
                out[name] = h
        return out


def save_encoder(path, encoder: Encoder, *, source: str) -> None:
    """The encoder's weights and its record (identity, kind, source), atomically."""
    from data_tools.fsutil import atomic_path

    from .. import __version__
    from ..core.backend import to_cpu

    arrays = {f"{n}/{p}": to_cpu(v) for n, (w, b) in encoder.params.items() for p, v in (("W", w), ("b", b))}
    arrays[RECORD] = np.array(json.dumps({"format": "dfi-encoder", "version": 1, "dfi": __version__,
                                          "kind": "adain", "identity": encoder.identity, "source": source,
                                          "padding": "reflect", "input": "RGB [0, 255]"}))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_encoder(path) -> Encoder:
    """An encoder from its file (``dfi weights convert vgg_normalised.pth``); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--weights {path}: no such file")
    foreign = (f"--weights {path}: not an AdaIN encoder (convert pytorch-AdaIN's vgg_normalised.pth with "
               "dfi weights convert)")
    if not zipfile.is_zipfile(path):
        raise FileFormatError(foreign)
    with np.load(path, allow_pickle=False) as data:
        if RECORD not in data.files:
            raise FileFormatError(foreign)
        record = json.loads(str(data[RECORD]))
        params = {}
        for key in data.files:
            if key.endswith("/W"):
                name = key[:-2]
                params[name] = (data[key], data[f"{name}/b"])
    return Encoder(params, identity=record["identity"], name=str(path))


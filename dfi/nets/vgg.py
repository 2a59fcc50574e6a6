"""VGG-19 (Simonyan & Zisserman, 2015) as a feature extractor with a ``pick`` API.

Weights are plain arrays, not :class:`chainer.Parameter` s: reconstruction needs the
gradient with respect to the image only, and leaving the weights out of the graph saves
their gradient computation (about a third of the backward pass).

Layer names: ``conv1_1`` … ``conv5_4`` are the ReLU outputs of those convolutions;
``pool1`` … ``pool5`` the pooled maps. Pooling is Caffe's (ceil mode), like the weights
were trained with.

The layers run on dfi's own kernels (:mod:`dfi.nets.conv`: Winograd convolution with bias
and ReLU, pooling without im2col) on channels-last maps; ``kernel="chainer"`` runs
Chainer's ``convolution_2d`` / ``max_pooling_2d`` instead (the reference the kernels are
tested against).
"""
from __future__ import annotations

import hashlib

from typing import Iterable, Mapping

import numpy as np

from .. import _compat  # noqa: F401
import chainer
import chainer.functions as F

from ..core.errors import SettingError
from ..core.image import CAFFE, InputConvention
from ..core.memory import COLUMN_LIMIT
from .conv import conv3x3_relu
from .names import VGG19_BLOCKS, vgg19_layer_names  # noqa: F401  (their home is names)
from .pool import pool2x2
from .winograd import Conv3x3, Workspace

def vgg19_shapes(width: float = 1.0) -> dict[str, tuple[int, int, int, int]]:
    """OIHW weight shape of every convolution; ``width`` scales the channel counts."""
    shapes, in_channels = {}, 3
    for block, convs, channels in VGG19_BLOCKS:
        out = max(1, int(round(channels * width)))
        for i in range(1, convs + 1):
            shapes[f"conv{block}_{i}"] = (out, in_channels, 3, 3)
            in_channels = out
    return shapes


def he_init(shapes: Mapping[str, tuple[int, ...]], *, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """He-normal weights (std √(2/fan_in)) and zero biases, seeded, float32."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        weight = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        params[name] = (weight, np.zeros(shape[0], dtype=np.float32))
    return params


class VGG19:
    """VGG-19 convolutional trunk with weights held as plain (NumPy or CuPy) arrays.

    Args:
        params: ``{"conv1_1": (W, b), …}``, W OIHW float32; the 16 convolutions.
        convention: how inputs are encoded (see :mod:`dfi.core.image`).
        pooling: ``"max"`` (standard) or ``"average"`` (Gatys et al. for synthesis).
        name: a label for logs and records (``"caffe"``, ``"untrained"``, a path).
        kernel: ``"winograd"`` (dfi's kernels, default) or ``"chainer"``.
    """

    KERNELS = ("winograd", "chainer")

    def __init__(self, params: Mapping[str, tuple], *, convention: InputConvention = CAFFE,
                 pooling: str = "max", name: str = "vgg19", kernel: str = "winograd"):
        self.layer_names = vgg19_layer_names()
        missing = [n for n in self.layer_names if n.startswith("conv") and n not in params]
        if missing:
            raise ValueError(f"weights lack layers {', '.join(missing)}")
        if pooling not in ("max", "average"):
            raise SettingError(f"pooling {pooling!r} is not 'max' or 'average'")
        if kernel not in self.KERNELS:
            raise SettingError(f"kernel {kernel!r} is not one of {', '.join(self.KERNELS)}")
        self.params = {n: (params[n][0], params[n][1]) for n in self.layer_names if n.startswith("conv")}
        self.convention = convention
        self.pooling = pooling
        self.name = name
        self.kernel = kernel
        self.device = chainer.get_device("@numpy")
        first = np.ascontiguousarray(np.asarray(params["conv1_1"][0], dtype=np.float32))
        #: names these exact weights and pooling (stored features are reused only when it matches)
        self.identity = f"{name}:{pooling}:{hashlib.sha1(first.tobytes()).hexdigest()[:12]}"
        self._reset_kernels()

    def _reset_kernels(self) -> None:
        self.workspace = Workspace()
        self._convs = {n: Conv3x3(w, b) for n, (w, b) in self.params.items()}

    def to_device(self, device) -> "VGG19":
        """Move the weights to ``device`` (a chainer Device or spec); returns self."""
        device = chainer.get_device(device)
        self.params = {n: (device.send(w), device.send(b)) for n, (w, b) in self.params.items()}
        self.device = device
        self._reset_kernels()
        return self

    def check_layers(self, layers: Iterable[str]) -> list[str]:
        layers = list(layers)
        unknown = [name for name in layers if name not in self.layer_names]
        if unknown:
            raise SettingError(f"unknown layer {unknown[0]!r}; valid: {', '.join(self.layer_names)}")
        if not layers:
            raise SettingError("pick at least one layer")
        return layers

    def pick(self, x, layers: Iterable[str]) -> dict[str, chainer.Variable]:
        """Run the network on preprocessed ``x`` (NCHW) up to the deepest layer asked for.

        Returns:
            ``{name: Variable}`` for each requested layer, on ``x``'s device.
        """
        wanted = set(self.check_layers(layers))
        last = max(self.layer_names.index(name) for name in wanted)
        if self.kernel == "chainer":
            return self._pick_chainer(x, wanted, last)
        out, h = {}, F.transpose(x, (0, 2, 3, 1))  # channels-last (N, H, W, C) for the kernels
        for name in self.layer_names[:last + 1]:
            if name.startswith("conv"):
                h = conv3x3_relu(h, self._convs[name], self.workspace)
            else:
                h = pool2x2(h, self.pooling)
            if name in wanted:
                out[name] = F.transpose(h, (0, 3, 1, 2))
        return out

    def _pick_chainer(self, x, wanted: set, last: int) -> dict:
        """``pick`` on Chainer's own functions (the reference for dfi's kernels).

        Without cuDNN (CuPy 14 has none) Chainer convolves through im2col on a GPU too, and
        its ``col2im_gpu`` indexes with 32-bit ints: a column buffer of 2³¹ elements or more
        would overflow, so such a size is refused (dfi's own kernel has no such limit).
        """
        if self.device.xp is not np:
            batch, _, height, width = x.shape
            worst = max((9 * c_in * batch * h * w, name)
                        for name, c_in, _, h, w in self.layer_shapes((height, width), [self.layer_names[last]])
                        if name.startswith("conv"))
            if worst[0] >= COLUMN_LIMIT:
                raise SettingError(f"kernel 'chainer' on a GPU: {worst[1]} would need a column buffer of "
                                   f"{worst[0]:,} elements, past the 2^31 that Chainer's col2im_gpu can "
                                   "index; use the default kernel or a smaller size or batch")
        out, h = {}, x
        for name in self.layer_names[:last + 1]:
            if name.startswith("conv"):
                weight, bias = self.params[name]
                h = F.relu(F.convolution_2d(h, weight, bias, pad=1))
            elif self.pooling == "max":
                h = F.max_pooling_2d(h, 2, stride=2, cover_all=True)
            else:
                h = F.average_pooling_2d(h, 2, stride=2)
            if name in wanted:
                out[name] = h
        return out

    def __call__(self, x, layers: Iterable[str]) -> dict[str, chainer.Variable]:
        return self.pick(x, layers)

    def layer_shapes(self, shape: tuple[int, int], layers: Iterable[str]) -> list[tuple]:
        """(name, in channels, out channels, h, w) of every layer up to the deepest of
        ``layers``, for an input of ``shape`` (H, W); h, w are the layer's input size."""
        deepest = max(self.layer_names.index(n) for n in self.check_layers(layers))
        (height, width), channels, out = shape, 3, []
        for name in self.layer_names[:deepest + 1]:
            if name.startswith("conv"):
                out_channels = self.params[name][0].shape[0]
                out.append((name, channels, out_channels, height, width))
                channels = out_channels
            else:
                out.append((name, channels, channels, height, width))
                if self.pooling == "max":
                    height, width = -(-height // 2), -(-width // 2)  # ceil mode
                else:
                    height, width = height // 2, width // 2
        return out

    def pass_bytes(self, shape: tuple[int, int], layers: Iterable[str], *, batch: int = 1) -> int:
        """Bytes one forward + input-gradient backward of ``batch`` images of ``shape``
        needs beyond the weights (float32), as this network's kernel allocates them.

        dfi's kernels: every ReLU output is kept for the backward pass; the largest layer's
        output gradient and input gradient are live together; the workspace's two regions
        grow to the largest layer's need; the transformed filters are kept up to the
        workspace's budget (:func:`dfi.nets.winograd.filter_budget`), the others' are made
        a few points at a time; max pooling keeps its output; a large batch is convolved a
        group of images at a time, so the workspace stays within ``MAX_WORKSPACE``
        (:func:`dfi.nets.winograd.kernel_memory`). Chainer's: the ReLU and pooled outputs are
        kept (pooling also keeps its argmax, int32 on a GPU, int64 on a CPU), and the
        largest ``9·C_in·h·w`` column buffer is live with that layer's gradients.
        """
        from .winograd import filter_layouts, kernel_memory

        maps = self.layer_shapes(shape, layers)
        convs = [m for m in maps if m[0].startswith("conv")]
        gradients = max(batch * (c_in + c_out) * h * w for _, c_in, c_out, h, w in convs)
        if self.kernel == "chainer":
            index_floats = 2 if self.device.xp is np else 1
            kept = sum(batch * c_out * h * w if name.startswith("conv")
                       else batch * c_out * -(-h // 2) * -(-w // 2) * (1 + index_floats)
                       for name, _, c_out, h, w in maps)
            columns = max(batch * 9 * c_in * h * w for _, c_in, _, h, w in convs)
            return 4 * (kept + columns + gradients)
        activations = sum(batch * c_out * h * w for _, _, c_out, h, w in convs)
        if self.pooling == "max":  # max pooling keeps its output too
            activations += sum(batch * c * -(-h // 2) * -(-w // 2) for name, _, c, h, w in maps if name.startswith("pool"))
        shared = kernel_memory([shape[1:] for shape in convs], batch, layouts=filter_layouts(self.device.xp))
        return 4 * (activations + gradients + sum(shared.values()))


def untrained_vgg19(*, seed: int = 0, width: float = 1.0, pooling: str = "max") -> VGG19:
    """A seeded He-initialised VGG-19 (``width`` < 1 makes a narrow one for tests).

    Random-weight deep features still reconstruct and interpolate images
    (He, Wang & Hopcroft, NIPS 2016), which makes this usable offline.
    """
    return VGG19(he_init(vgg19_shapes(width), seed=seed), convention=CAFFE, pooling=pooling,
                 name="untrained" if width == 1.0 else f"untrained-w{width:g}")

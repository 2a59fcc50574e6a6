"""VGG-19 (Simonyan & Zisserman, 2015) as a feature extractor with a ``pick`` API.

Weights are plain arrays, not :class:`chainer.Parameter` s: reconstruction needs the
gradient with respect to the image only, and leaving the weights out of the graph saves
their gradient computation (about a third of the backward pass).

Layer names: ``conv1_1`` … ``conv5_4`` are the ReLU outputs of those convolutions;
``pool1`` … ``pool5`` the pooled maps. Pooling is Caffe's (ceil mode), like the weights
were trained with.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from .. import _compat  # noqa: F401
import chainer
import chainer.functions as F

from ..core.errors import SettingError
from ..core.image import CAFFE, InputConvention

#: (block, convolutions per block, output channels) of VGG-19.
VGG19_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))


def vgg19_layer_names() -> tuple[str, ...]:
    names = []
    for block, convs, _ in VGG19_BLOCKS:
        names += [f"conv{block}_{i}" for i in range(1, convs + 1)] + [f"pool{block}"]
    return tuple(names)


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
    """

    def __init__(self, params: Mapping[str, tuple], *, convention: InputConvention = CAFFE,
                 pooling: str = "max", name: str = "vgg19"):
        self.layer_names = vgg19_layer_names()
        missing = [n for n in self.layer_names if n.startswith("conv") and n not in params]
        if missing:
            raise ValueError(f"weights lack layers {', '.join(missing)}")
        if pooling not in ("max", "average"):
            raise SettingError(f"pooling {pooling!r} is not 'max' or 'average'")
        self.params = {n: (params[n][0], params[n][1]) for n in self.layer_names if n.startswith("conv")}
        self.convention = convention
        self.pooling = pooling
        self.name = name
        self.device = chainer.get_device("@numpy")

    def to_device(self, device) -> "VGG19":
        """Move the weights to ``device`` (a chainer Device or spec); returns self."""
        device = chainer.get_device(device)
        self.params = {n: (device.send(w), device.send(b)) for n, (w, b) in self.params.items()}
        self.device = device
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


def untrained_vgg19(*, seed: int = 0, width: float = 1.0, pooling: str = "max") -> VGG19:
    """A seeded He-initialised VGG-19 (``width`` < 1 makes a narrow one for tests).

    Random-weight deep features still reconstruct and interpolate images
    (He, Wang & Hopcroft, NIPS 2016), which makes this usable offline.
    """
    return VGG19(he_init(vgg19_shapes(width), seed=seed), convention=CAFFE, pooling=pooling,
                 name="untrained" if width == 1.0 else f"untrained-w{width:g}")

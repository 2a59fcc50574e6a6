"""The feed-forward stylizer: Johnson et al.'s (ECCV 2016) image transformer with conditional
instance normalisation (Dumoulin, Shlens & Kudlur, ICLR 2017), so one network holds many styles.

Layers (``width`` scales every channel count; 1 is the published network):
c9s1-32 → d64 → d128 → 5 residual blocks of 128 → u64 → u32 → c9s1-3, each convolution
after reflection padding and followed by conditional instance normalisation and a ReLU (the
residual blocks' second convolution has no ReLU, the last layer no normalisation; the
published networks of this family differ in details a :class:`Variant` records: biases,
the last layer's normalisation, the output and input scaling);
``d`` is a 3×3 convolution of stride 2, ``u`` a nearest-neighbour ×2 upsampling and a 3×3
convolution (no transposed-convolution checkerboard). The output is 255·sigmoid: RGB in
[0, 255]. Every normalisation has one (γ, β) pair per style, in a :class:`StyleTable` of its
own, so a training step on style k gives gradients to style k's pairs only; a mix of styles
uses Σ wₛ γₛ and Σ wₛ βₛ (the weights need not sum to 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .. import _compat  # noqa: F401
import chainer
import chainer.functions as F
import chainer.links as L
from chainer import function_node

from ..core.backend import get_array_module

from ..core.errors import SettingError

#: (name, kernel, stride, channels at width 1, upsample first, normalise, relu)
LAYERS = (("c1", 9, 1, 32, False, True, True), ("d1", 3, 2, 64, False, True, True),
          ("d2", 3, 2, 128, False, True, True),
          *[(f"r{b}{i}", 3, 1, 128, False, True, i == 1) for b in range(1, 6) for i in (1, 2)],
          ("u1", 3, 1, 64, True, True, True), ("u2", 3, 1, 32, True, True, True),
          ("c2", 9, 1, 3, False, False, False))


@dataclass(frozen=True)
class Variant:
    """How a published network of this family differs from dfi's own (the defaults):
    ``bias``: its convolutions have biases (Magenta's have none, a normalisation follows
    each); ``last_norm``: the 9×9 output convolution is normalised too (Magenta);
    ``output``: ``"sigmoid"`` 255·σ(h) or ``"clamp"`` h clamped to [0, 255] (pytorch/examples);
    ``input_scale``: what RGB [0, 255] is multiplied by first (1/255, or 1 for pytorch/examples)."""

    bias: bool = True
    last_norm: bool = False
    output: str = "sigmoid"
    input_scale: float = 1.0 / 255.0


#: the variants by name: dfi's trainer makes "dfi"; the converters the published ones
VARIANTS = {"dfi": Variant(), "magenta": Variant(bias=False, last_norm=True),
            "fast-neural-style": Variant(output="clamp", input_scale=1.0)}


def variant_layers(variant: Variant) -> tuple:
    """:data:`LAYERS` with the output layer normalised where the variant says so."""
    return tuple((*layer[:5], True, False) if layer[0] == "c2" and variant.last_norm else layer for layer in LAYERS)


#: the largest weight of one style in a mix (beyond it the network's sigmoid only saturates)
MIX_LIMIT = 10.0


class ReflectionPad2D(function_node.FunctionNode):
    """Pad NCHW by reflection (numpy's ``reflect``: the edge is not repeated), with the
    gradient folded back onto the pixels it was copied from (``F.pad`` only slices)."""

    def __init__(self, pad: int):
        self.pad = pad

    def forward(self, inputs):
        x, = inputs
        xp = get_array_module(x)
        p = self.pad
        return xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect"),

    def backward(self, indexes, grad_outputs):
        return ReflectionPad2DGrad(self.pad).apply(grad_outputs)


class ReflectionPad2DGrad(function_node.FunctionNode):
    def __init__(self, pad: int):
        self.pad = pad

    def forward(self, inputs):
        gy, = inputs
        p = self.pad
        g = gy.copy()
        for axis in (3, 2):
            size = g.shape[axis] - 2 * p

            def at(index):
                return (slice(None),) * axis + (index,)
            for k in range(1, p + 1):
                g[at(p + k)] += g[at(p - k)]
                g[at(p + size - 1 - k)] += g[at(p + size - 1 + k)]
            g = g[(slice(None),) * axis + (slice(p, p + size),)]
        return g,

    def backward(self, indexes, grad_outputs):
        return ReflectionPad2D(self.pad).apply(grad_outputs)


def reflection_pad(x, pad: int):
    return ReflectionPad2D(pad).apply((x,))[0] if pad else x


def instance_norm(x, gamma, beta, eps: float = 1e-5):
    """Normalise each image's each channel over its pixels, then γ·x̂ + β; γ, β (1, C)."""
    mean = F.mean(x, axis=(2, 3), keepdims=True)
    centred = x - F.broadcast_to(mean, x.shape)
    variance = F.mean(centred * centred, axis=(2, 3), keepdims=True)
    normalised = centred * F.broadcast_to(F.rsqrt(variance + eps), x.shape)
    shape = (1, x.shape[1], 1, 1)
    return (normalised * F.broadcast_to(F.reshape(gamma, shape), x.shape)
            + F.broadcast_to(F.reshape(beta, shape), x.shape))


class StyleTable(chainer.Chain):
    """One style's (γ, β) for every normalised layer."""

    def __init__(self, channels: Mapping[str, int]):
        super().__init__()
        with self.init_scope():
            for name, count in channels.items():
                setattr(self, f"{name}_gamma", chainer.Parameter(np.ones((1, count), np.float32)))
                setattr(self, f"{name}_beta", chainer.Parameter(np.zeros((1, count), np.float32)))


class TransformNet(chainer.Chain):
    """The image transformer; call it with NCHW RGB [0, 255] images and a style mix.

    Args:
        n_styles: how many styles the normalisation tables hold.
        width: scales the channel counts (tests use narrow networks).
        seed: initial weights.
    """

    def __init__(self, n_styles: int, *, width: float = 1.0, seed: int = 0, variant: str = "dfi"):
        super().__init__()
        if n_styles < 1:
            raise SettingError(f"a stylizer needs at least one style, not {n_styles}")
        if variant not in VARIANTS:
            raise SettingError(f"stylizer variant {variant!r} is not one of {', '.join(VARIANTS)}")
        self.width, self.variant_name, self.variant = width, variant, VARIANTS[variant]
        self.layers = variant_layers(self.variant)
        rng = np.random.default_rng(seed)
        self.channels, channels = {}, 3
        with self.init_scope():
            for name, kernel, stride, count, _, normalise, _ in self.layers:
                out = count if name == "c2" else max(1, int(round(count * width)))
                fan_in = channels * kernel * kernel
                weight = (rng.standard_normal((out, channels, kernel, kernel)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
                setattr(self, name, L.Convolution2D(channels, out, kernel, stride=stride, initialW=weight,
                                                    initial_bias=0.0, nobias=not self.variant.bias))
                if normalise:
                    self.channels[name] = out
                channels = out
            self.styles = chainer.ChainList(*[StyleTable(self.channels) for _ in range(n_styles)])

    @property
    def n_styles(self) -> int:
        return len(self.styles)

    def add_styles(self, count: int) -> list[int]:
        """Append ``count`` new styles (γ = 1, β = 0); returns their numbers."""
        start = self.n_styles
        for _ in range(count):
            table = StyleTable(self.channels)
            table.to_device(self.device)
            self.styles.append(table)
        return list(range(start, self.n_styles))

    def check_mix(self, mix: Mapping[int, float]) -> dict[int, float]:
        """Validate a style mix ``{style number: weight}``: each weight finite and within
        ±:data:`MIX_LIMIT`, not all zero. The normalisation uses Σ wₛγₛ and Σ wₛβₛ as given
        (as Magenta's network does, dfi does not normalise a mix): weights summing to 1
        blend the styles, a larger sum exaggerates them, a negative weight moves away from
        a style."""
        if not mix:
            raise SettingError("give a style (--style K) or a mix (--mix K:W,…)")
        for style, weight in mix.items():
            if not 0 <= int(style) < self.n_styles:
                raise SettingError(f"style {style} is not in this model; it has styles 0–{self.n_styles - 1}")
            if not np.isfinite(weight):
                raise SettingError(f"style {style}: weight {weight} is not a finite number")
            if abs(weight) > MIX_LIMIT:
                raise SettingError(f"style {style}: weight {weight:g} is outside -{MIX_LIMIT:g}…{MIX_LIMIT:g} "
                                   "(weights summing to 1 blend the styles)")
        if not any(mix.values()):
            raise SettingError("a mix whose weights are all 0 has no style (it gives a flat grey picture)")
        return {int(s): float(w) for s, w in mix.items()}

    def _gamma_beta(self, name: str, mix: Mapping[int, float]):
        gamma = beta = None
        for style, weight in mix.items():
            table = self.styles[style]
            g, b = getattr(table, f"{name}_gamma"), getattr(table, f"{name}_beta")
            if weight != 1.0:
                g, b = g * weight, b * weight
            gamma = g if gamma is None else gamma + g
            beta = b if beta is None else beta + b
        return gamma, beta

    def forward(self, x, mix: Mapping[int, float]):
        """NCHW RGB [0, 255] (sides multiples of :data:`dfi.nets.names.MULTIPLE`) → stylised, same shape."""
        mix = self.check_mix(mix)
        h = x * self.variant.input_scale
        skip = None
        for name, kernel, _, _, upsample, normalise, relu in self.layers:
            if name.startswith("r") and name.endswith("1"):
                skip = h
            if upsample:
                h = F.unpooling_2d(h, 2, stride=2, cover_all=False)
            h = getattr(self, name)(reflection_pad(h, kernel // 2))
            if normalise:
                h = instance_norm(h, *self._gamma_beta(name, mix))
            if relu:
                h = F.relu(h)
            if name.startswith("r") and name.endswith("2"):
                h = h + skip
        return 255.0 * F.sigmoid(h) if self.variant.output == "sigmoid" else F.clip(h, 0.0, 255.0)

    def architecture(self) -> dict:
        return {"name": "johnson-cin", "width": self.width, "n_styles": self.n_styles, "variant": self.variant_name,
                "layers": [list(layer) for layer in self.layers],
                "output": "255*sigmoid" if self.variant.output == "sigmoid" else "clamp 0-255"}


def column_elements(net: TransformNet, size: int, batch: int) -> dict[str, int]:
    """Elements of the column buffer Chainer's convolution makes for each layer when
    ``net`` trains on ``batch`` images of ``size``² (without cuDNN: im2col for the forward
    pass and the weights' gradient, col2im for the input gradient): C_in·k²·out pixels per
    image, 2,592 per pixel for the 9×9 output layer at width 1."""
    side, columns = size, {}
    for name, kernel, stride, _, upsample, _, _ in net.layers:
        side = side * 2 if upsample else side // stride
        columns[name] = batch * getattr(net, name).W.shape[1] * kernel * kernel * side * side
    return columns


def check_columns(net: TransformNet, size: int, batch: int) -> None:
    """Refuse training settings whose column buffers pass Chainer's 32-bit GPU offsets
    (:func:`dfi.core.memory.check_columns`), naming what fits."""
    from ..core.memory import check_columns as refuse_past_limit
    from .names import MULTIPLE

    refuse_past_limit(lambda s, b: column_elements(net, s, b), size, batch, MULTIPLE)

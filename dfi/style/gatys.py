"""Style-loss reconstruction (Gatys, Ecker & Bethge, CVPR 2016): style transfer, texture
synthesis and feature inversion, on the reconstruction loop DFI uses.

Loss, per image z (content c, styles s_i with blend weights b_i):

    L = a · Σ_l u_l · mean((φ_l(z) − φ_l(c))²) / mean(φ_l(c)²)
      + β · Σ_l v_l · mean((G_l(z) − Ĝ_l)²) / mean(Ĝ_l²)
      + λ · TV(z),          Ĝ_l = Σ_i b_i G_l(s_i),   G = F Fᵀ / (h·w)

Why this normalisation: every term is an average (over positions, Gram entries or
pixels), so it does not grow with the image size, and each feature term is relative to
the energy of its target, so it does not depend on the scale of a layer's activations
(trained or untrained weights, Caffe or torchvision input). The same ``--style-weight``
(β) and ``--content-weight`` (a) therefore give the same balance at 256² and 1024², and
the layer weights u_l, v_l (normalised to sum to 1) mean what they say. TV is in pixel
units, exactly as in ``dfi edit``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np

from .. import _compat  # noqa: F401
import chainer

from ..core.backend import available_memory, to_cpu
from ..core.color import combine_luminance, grey, match_histogram, match_luminance
from ..core.errors import SettingError
from ..core.image import resize
from ..core.losses import feature_loss, gram_matrix, style_loss
from ..core.memory import estimate_bytes, format_bytes, largest_fitting, resident_bytes
from ..core.reconstruct import Progress, final, reconstruct
from ..nets import threads
from ..nets.features import extract
from ..nets.vgg import VGG19
from .settings import MIN_SIZE, StyleConfig


@dataclass
class StyleProgress:
    """One iteration of :func:`stylize`: the stage (0-based), its output size, the loop's record."""

    stage: int
    shape: tuple[int, int]
    progress: Progress


def long_side_shape(shape: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(H, W) with the aspect of ``shape`` and the longer side ``long_side``."""
    height, width = shape
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Resize a CHW image so that its longer side is ``long_side`` (aspect kept)."""
    return resize(image, long_side_shape(image.shape[1:], long_side))


def blend_weights(config: StyleConfig, count: int) -> np.ndarray:
    if config.style_blend is None:
        return np.full(count, 1.0 / count)
    if len(config.style_blend) != count:
        raise SettingError(f"--style-blend has {len(config.style_blend)} weights for {count} style images")
    blend = np.asarray(config.style_blend, dtype=np.float64)
    return blend / blend.sum()


def prepare_inputs(content: Optional[np.ndarray], styles: Sequence[np.ndarray],
                   config: StyleConfig) -> tuple[Optional[np.ndarray], list[np.ndarray]]:
    """Colour preservation before the transfer: grey images (luminance) or the styles'
    colours matched to the content (histogram)."""
    mode = config.preserve_color
    if mode == "none":
        return content, list(styles)
    if content is None:
        raise SettingError(f"--preserve-color {mode} needs a content image")
    if mode == "luminance":
        return grey(content), [match_luminance(s, content) for s in styles]
    if mode == "histogram":
        return content, [match_histogram(s, content) for s in styles]
    return content, list(styles)  # yuv: only after the transfer


def finish(image: np.ndarray, content: Optional[np.ndarray], config: StyleConfig) -> np.ndarray:
    """Colour preservation after the transfer (luminance, yuv); clip to [0, 255]."""
    if config.preserve_color in ("luminance", "yuv") and content is not None:
        reference = resize(content, image.shape[1:])
        space = "yiq" if config.preserve_color == "luminance" else "yuv"
        image = combine_luminance(grey(image), reference, space)
    return np.clip(image, 0, 255).astype(np.float32)


def initial_image(config: StyleConfig, content, styles, shape: tuple[int, int]) -> np.ndarray:
    if config.init == "content" and content is not None:
        return resize(content, shape)
    if config.init == "style" and styles:
        return resize(styles[0], shape)
    rng = np.random.default_rng(config.seed)
    return np.clip(rng.normal(127.5, 40.0, (3, *shape)), 0, 255).astype(np.float32)


def targets(net: VGG19, content, styles, blend, config: StyleConfig, long_side: int):
    """Content features and blended Gram matrices at one stage, on ``net``'s device."""
    device, xp = net.device, net.device.xp
    content_t = {}
    if content is not None and config.content_layers and config.content_weight > 0:
        feats = extract(net, device.send(content[None]), list(config.content_layers))
        content_t = {n: (v, float(xp.mean(v * v))) for n, v in feats.items()}
    grams = {}
    if styles and config.style_layers and config.style_weight > 0:
        side = max(MIN_SIZE, round(long_side * config.style_scale))
        for weight, style in zip(blend, styles):
            feats = extract(net, device.send(fit_long_side(style, side)[None]), list(config.style_layers))
            with chainer.no_backprop_mode():
                for name, value in feats.items():
                    g = gram_matrix(value).array * xp.float32(weight)
                    grams[name] = g if name not in grams else grams[name] + g
        grams = {n: (g, float(xp.mean(g * g))) for n, g in grams.items()}
    return content_t, grams


def make_loss(content_t: Mapping, grams: Mapping, config: StyleConfig):
    """The data terms ``{"content", "style"}`` of the module's loss, as a reconstruct LossFn."""
    content_targets = {n: target for n, (target, _) in content_t.items()}
    content_weights = {n: config.content_layers[n] / max(e, 1e-12) for n, (_, e) in content_t.items()}
    style_targets = {n: target for n, (target, _) in grams.items()}
    style_weights = {n: config.style_layers[n] / max(e, 1e-12) for n, (_, e) in grams.items()}

    def loss_fn(feats, rows):
        terms = {}
        if content_targets:
            terms["content"] = config.content_weight * feature_loss(
                {n: feats[n] for n in content_targets}, content_targets, content_weights)
        if style_targets:
            terms["style"] = config.style_weight * style_loss(
                {n: feats[n] for n in style_targets}, style_targets, style_weights)
        return terms
    return loss_fn


def stage_shapes(content: Optional[np.ndarray], styles: Sequence[np.ndarray],
                 config: StyleConfig) -> list[tuple[int, int]]:
    """Output (H, W) at each stage: the content's aspect (else the first style's)."""
    reference = content if content is not None else styles[0]
    return [long_side_shape(reference.shape[1:], s) for s in config.scales]


def stylize(net: VGG19, content: Optional[np.ndarray], styles: Sequence[np.ndarray],
            config: StyleConfig, *, start: Optional[np.ndarray] = None) -> Iterator[StyleProgress]:
    """Optimise an image against the style loss, stage by stage (coarse to fine).

    Args:
        net: the network, on the device to use.
        content: CHW RGB [0, 255] on the CPU, or None (texture synthesis).
        styles: CHW images; empty for feature inversion (content only).
        config: settings.
        start: the first stage's start (CHW, resized to it) instead of ``config.init``'s,
            e.g. a one-pass AdaIN result (``dfi style --init adain``).

    Yields:
        :class:`StyleProgress` after every iteration; the last one's images are the result
        before :func:`finish`.
    """
    if content is None and not styles:
        raise ValueError("give a content image, a style image, or both")
    if content is None and config.content_weight > 0:
        config = replace(config, content_weight=0.0)
    if not styles and config.style_weight > 0:
        config = replace(config, style_weight=0.0)
    blend = blend_weights(config, len(styles)) if styles else np.zeros(0)
    content, styles = prepare_inputs(content, styles, config)
    shapes = stage_shapes(content, styles, config)
    layers = [n for n in config.layers
              if (n in config.content_layers and config.content_weight > 0 and content is not None)
              or (n in config.style_layers and config.style_weight > 0 and styles)]
    if not layers:
        raise SettingError("nothing to optimise: the content and style weights are both 0")
    device = net.device
    image = initial_image(config, content, styles, shapes[0]) if start is None else np.asarray(start, np.float32)
    for stage, (shape, long_side) in enumerate(zip(shapes, config.scales)):
        staged = resize(content, shape) if content is not None else None
        content_t, grams = targets(net, staged, styles, blend, config, long_side)
        start = device.send(resize(image, shape)[None])
        last = None
        for last in reconstruct(net, start, make_loss(content_t, grams, config), layers,
                                config.reconstruct):
            yield StyleProgress(stage, shape, last)
        image = to_cpu(last.images[0])


def check_memory(net: VGG19, content: Optional[np.ndarray], styles: Sequence[np.ndarray],
                 config: StyleConfig, *, micro_batch: int = 1) -> int:
    """Estimated peak bytes of the largest stage; raises MemoryError, naming the largest
    size that fits, when the device has less free memory than that."""
    on_gpu = net.device.xp is not np
    if not on_gpu:  # the kernels' compiled loops (Numba's LLVM, ~100 MB) loaded first: counted below
        threads.compiled(np)
    baseline = 0 if on_gpu else resident_bytes()
    reference = (content if content is not None else styles[0]).shape[1:]
    rec = config.reconstruct

    def need(long_side: int) -> int:
        sides = [long_side] + ([round(long_side * config.style_scale)] if styles else [])
        return max(estimate_bytes(net, long_side_shape(reference, side), config.layers,
                                  batch=max(1, micro_batch), optimizer=rec.optimizer,
                                  history=rec.history, baseline=baseline) for side in sides)

    size = config.scales[-1]
    needed, available = need(size), available_memory(net.device)
    if needed > available:
        best = largest_fitting(lambda n: need(n) <= available, MIN_SIZE, size)
        hint = f"the largest size that fits is about {best} px" if best else "no size fits"
        raise MemoryError(f"size {size} px needs about {format_bytes(needed)} on {net.device}, but only "
                          f"{format_bytes(available)} is free; {hint}")
    return needed


def style_transfer(net: VGG19, content: Optional[np.ndarray], styles: Sequence[np.ndarray],
                   config: StyleConfig = StyleConfig()) -> np.ndarray:
    """Run :func:`stylize` to the end and apply colour preservation; CHW on the CPU."""
    last = final(stylize(net, content, styles, config))
    return finish(to_cpu(last.progress.images[0]), content, config)


def synthesize_texture(net: VGG19, styles: Sequence[np.ndarray],
                       config: StyleConfig = StyleConfig()) -> np.ndarray:
    """Texture synthesis: style loss only, from noise."""
    return style_transfer(net, None, styles, replace(config, init="noise", content_weight=0.0))


def invert_features(net: VGG19, image: np.ndarray, layer: str = "conv4_2",
                    config: StyleConfig = StyleConfig()) -> np.ndarray:
    """Feature inversion (Mahendran & Vedaldi 2015): rebuild an image from one layer's
    features, from noise, with the TV prior."""
    config = replace(config, content_layers={layer: 1.0}, init="noise", style_weight=0.0,
                     preserve_color="none")
    return style_transfer(net, image, [], config)

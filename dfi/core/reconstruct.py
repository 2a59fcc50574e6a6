"""The reconstruction loop shared by DFI and style: optimise images against a loss.

``reconstruct`` works in the network's input space (so no preprocessing inside the
loop), keeps pixels within [0, 255] by box bounds, and yields after every iteration;
callers (the CLI, scripts) decide what to show or write.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Optional, Protocol, Sequence, TypeVar, Union

import numpy as np

from .. import _compat  # noqa: F401
import chainer
import chainer.functions as F

from .backend import device_of, get_array_module, using_device
from .image import InputConvention, deprocess, preprocess
from .losses import total_variation
from .optimize import adam, lbfgs
from .settings import ReconstructConfig  # noqa: F401  (its home is settings; callers find it here)

T = TypeVar("T")


class FeatureNet(Protocol):
    """What the core needs of a feature network (:class:`dfi.nets.vgg.VGG19` is one): its
    input convention, a layer check, ``pick``, its weights and what a pass costs in memory.
    The core never imports a network."""

    convention: InputConvention
    layer_names: Sequence[str]
    params: Mapping[str, tuple]

    def check_layers(self, layers) -> list[str]: ...

    def pick(self, x, layers) -> Mapping[str, chainer.Variable]: ...

    def pass_bytes(self, shape: tuple[int, int], layers: Sequence[str], *, batch: int = 1) -> int: ...


#: ``loss_fn(feats, rows) -> Variable (n,)`` or ``{term: Variable (n,)}``: the data term(s)
#: for the rows being evaluated; a plain Variable is recorded as the term ``"feature"``.
#: ``image_loss(z, rows) -> {term: Variable (n,)}``: terms on the image itself, z (n, 3, H, W)
#: in the network's input space (see :func:`pixel_scale` for pixel units), already weighted.
ImageLossFn = Callable[[chainer.Variable, object], Mapping[str, chainer.Variable]]
LossFn = Callable[[Mapping[str, chainer.Variable], object],
                  Union[chainer.Variable, Mapping[str, chainer.Variable]]]


@dataclass
class Progress:
    """One iteration of :func:`reconstruct`; arrays on the working device, except ``active``.

    Nothing here waits for the device: ``images`` is made from the iterate when first read
    (a caller that only wants the last one pays for one); ``loss_host`` came with the
    optimiser's one transfer per iteration, while reading ``loss`` or ``terms`` as numbers
    waits for the device.
    """

    iteration: int
    x: object                 # (N, D) the iterate, in the network's input space
    loss: object              # (N,) total loss per image
    loss_host: Optional[np.ndarray] = None  # (N,) ``loss`` on the host: read with no extra wait
    terms: dict = field(default_factory=dict)  # {"feature": (N,), "tv": (N,)…}, last evaluated
    active: object = None     # (N,) bool, on the host
    evaluations: int = 0      # image forward+backward passes so far
    shape: tuple = ()         # (N, 3, H, W)
    convention: Optional[InputConvention] = None
    #: per image, the share of a warm start's change it began from (0: the plain start); empty
    #: when the caller made no warm start
    start_shares: tuple = ()

    @functools.cached_property
    def images(self):
        """(N, 3, H, W) RGB [0, 255] on the working device."""
        return deprocess(self.x.reshape(self.shape), self.convention)


def _bounds(net: FeatureNet, xp, shape):
    """Per-element box bounds in input space for pixels in [0, 255]."""
    lo = preprocess(xp.zeros((1, 3, 1, 1), dtype=xp.float32), net.convention)
    hi = preprocess(xp.full((1, 3, 1, 1), 255.0, dtype=xp.float32), net.convention)
    lower, upper = xp.minimum(lo, hi), xp.maximum(lo, hi)
    full = (1, 3) + tuple(shape[2:])
    return (xp.broadcast_to(lower, full).reshape(1, -1).copy(),
            xp.broadcast_to(upper, full).reshape(1, -1).copy())


def pixel_scale(convention: InputConvention, xp):
    """Pixels per input unit for each input channel (1, 3, 1, 1), in the input's order."""
    std = xp.asarray(convention.std, dtype=xp.float32).reshape(1, 3, 1, 1)
    return std * xp.float32(255.0 / convention.scale)


def reconstruct(net: FeatureNet, init_images, loss_fn: LossFn, layers: Sequence[str],
                config: ReconstructConfig, *, image_loss: Optional[ImageLossFn] = None,
                evaluate_only: bool = False) -> Iterator[Progress]:
    """Minimise ``loss_fn(φ(z)) + λ·TV(z)`` over images z, starting from ``init_images``
    (with ``evaluate_only``, one record of the start: :func:`evaluate`).

    Args:
        net: the feature network, on the images' device.
        init_images: (N, 3, H, W) RGB [0, 255] float32 start.
        loss_fn: data term per image (see :data:`LossFn`).
        image_loss: more terms on the image itself (see :data:`ImageLossFn`), e.g. the
            temporal consistency of a video frame.
        layers: the layers ``loss_fn`` reads.
        config: optimisation settings.

    Yields:
        :class:`Progress` after every iteration.
    """
    layers = net.check_layers(layers)
    xp = get_array_module(init_images)
    device = device_of(init_images)  # current while this loop works (CuPy makes arrays there)
    shape = init_images.shape
    with using_device(device):
        x0 = preprocess(init_images, net.convention).reshape(shape[0], -1)
        lower, upper = _bounds(net, xp, shape)
        scale = pixel_scale(net.convention, xp)
    terms: dict = {}  # {term: (N,)} unweighted by tv_weight, from the last evaluation
    chunk = config.micro_batch or shape[0]

    def objective(x_rows, rows, gradient=True):
        values, grads = [], []
        for start in range(0, x_rows.shape[0], chunk):
            part = rows[start:start + chunk]
            xv = chainer.Variable(x_rows[start:start + chunk].reshape((-1,) + shape[1:]))
            with chainer.using_config("train", False), chainer.using_config("enable_backprop", gradient):
                data = loss_fn(net.pick(xv, layers), part)
                parts = dict(data) if isinstance(data, Mapping) else {"feature": data}
                if image_loss is not None:
                    parts.update(image_loss(xv, part))
                parts["tv"] = total_variation(xv, scale)
                loss = sum(value for name, value in parts.items() if name != "tv")
                loss = loss + config.tv_weight * parts["tv"]
                if gradient:
                    F.sum(loss).backward()
            for name, value in parts.items():
                if name not in terms:
                    terms[name] = xp.zeros(shape[0], xp.float32)
                terms[name][part] = value.array
            values.append(loss.array)
            if gradient:
                grads.append(xv.grad.reshape(xv.shape[0], -1))
        if len(values) == 1:
            return values[0], grads[0] if grads else None
        return xp.concatenate(values), xp.concatenate(grads) if grads else None

    if evaluate_only:
        with using_device(device):
            start = xp.clip(x0, lower, upper)
            f, _ = objective(start, xp.arange(shape[0]), gradient=False)  # (no backward pass)
            progress = Progress(0, start, f, np.asarray(f.tolist()), {k: v.copy() for k, v in terms.items()},
                                np.zeros(shape[0], dtype=bool), shape[0], shape, net.convention)
        yield progress
        return
    if config.optimizer == "lbfgs":
        steps = lbfgs(objective, x0, max_iter=config.iterations, history=config.history,
                      ftol=config.ftol, lower=lower, upper=upper)
    else:
        pixels_per_unit = max(net.convention.std) * 255.0 / net.convention.scale
        steps = adam(objective, x0, max_iter=config.iterations, lr=config.lr / pixels_per_unit,
                     lower=lower, upper=upper)
    while True:
        with using_device(device):  # each iteration, not across the yield (the caller's thread may differ)
            step = next(steps, None)
            if step is None:
                return
            progress = Progress(step.iteration, step.x, step.f, step.f_host,
                                {k: v.copy() for k, v in terms.items()}, step.active, step.evaluations,
                                shape, net.convention)
        yield progress
        if not step.active.any():
            return


def evaluate(net: FeatureNet, images, loss_fn: LossFn, layers: Sequence[str],
             config: ReconstructConfig) -> Progress:
    """The :class:`Progress` of ``images`` as they are (iteration 0, no optimisation): the
    loss terms :func:`reconstruct` would start from (a one-pass result's record)."""
    return next(reconstruct(net, images, loss_fn, layers, config, evaluate_only=True))


def final(progress: Iterator[T]) -> Optional[T]:
    """Run a reconstruction (or a staged one, :func:`dfi.style.gatys.stylize`) to the end and
    return its last progress record."""
    last = None
    for last in progress:
        pass
    return last

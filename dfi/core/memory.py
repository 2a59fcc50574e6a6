"""Memory needed by one reconstruction, estimated before running it.

The model counts float32 arrays, per image, from the network's layer shapes:

* forward activations kept for the backward pass: every ReLU output up to the deepest
  layer, every pooled map (plus, on the CPU, max pooling's int64 argmax indexes);
* the largest transient buffer: on the CPU Chainer convolves through im2col, so the
  biggest ``C_in·9·h·w`` column matrix (conv1_2 at full size) is live together with the
  output gradient and the input gradient of that layer; on a GPU cuDNN needs no columns;
* the optimiser: L-BFGS keeps ``2·history`` image-sized vectors plus about 16 more (the
  iterate, gradient, direction, trial point, bounds, temporaries); Adam about 8;
* the weights, and on the CPU the process's current resident size (Python, libraries).

``scripts/bench_style.py memory`` compares the estimate with measured peaks.
"""
from __future__ import annotations

import os
from typing import Sequence

from .reconstruct import FeatureNet

FLOAT = 4
#: image-sized vectors the optimisers hold besides the L-BFGS history
OPTIMIZER_VECTORS = {"lbfgs": 16, "adam": 8}


def _layer_maps(net: FeatureNet, shape: tuple[int, int], layers: Sequence[str]):
    """(name, channels, h, w, in_channels) of every layer up to the deepest asked for."""
    deepest = max(net.layer_names.index(n) for n in layers)
    height, width = shape
    channels, out = 3, []
    for name in net.layer_names[:deepest + 1]:
        if name.startswith("conv"):
            in_channels, channels = channels, net.params[name][0].shape[0]
            out.append((name, channels, height, width, in_channels))
        else:
            height, width = -(-height // 2), -(-width // 2)  # ceil pooling
            out.append((name, channels, height, width, channels))
    return out


def estimate_bytes(net: FeatureNet, shape: tuple[int, int], layers: Sequence[str], *, batch: int = 1,
                   on_gpu: bool = False, optimizer: str = "lbfgs", history: int = 10,
                   baseline: int = 0) -> int:
    """Estimated peak bytes of a reconstruction of ``batch`` images of ``shape`` (H, W).

    ``batch`` is the number of images evaluated in one pass (the micro-batch); the
    optimiser state is counted for ``batch`` images too. ``baseline`` is added as is.
    """
    maps = _layer_maps(net, shape, layers)
    kept = 0
    for name, channels, h, w, _ in maps:
        kept += channels * h * w * (1 if name.startswith("conv") or on_gpu else 3)
    transient = 0
    for name, channels, h, w, in_channels in maps:
        if name.startswith("conv"):
            columns = 0 if on_gpu else in_channels * 9 * h * w
            transient = max(transient, columns + channels * h * w + in_channels * h * w)
    pixels = 3 * shape[0] * shape[1]
    vectors = OPTIMIZER_VECTORS[optimizer] + (2 * history if optimizer == "lbfgs" else 0)
    weights = sum(w.size + b.size for w, b in net.params.values())
    return baseline + FLOAT * (batch * (kept + transient + vectors * pixels) + weights)


def resident_bytes() -> int:
    """This process's current resident memory (Linux; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def largest_fitting(fits, low: int, high: int) -> int:
    """Largest n in [low, high] with ``fits(n)`` (monotone), or 0 if none."""
    if not fits(low):
        return 0
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def format_bytes(count: float) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"

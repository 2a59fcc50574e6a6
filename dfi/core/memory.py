"""Memory needed by one reconstruction, estimated before running it.

The estimate adds, in bytes:

* what one forward + backward pass of the network needs beyond its weights, from the
  network itself (``net.pass_bytes``: it knows its kernels' buffers; see
  :meth:`dfi.nets.vgg.VGG19.pass_bytes`);
* the optimiser: L-BFGS keeps ``2·history`` image-sized vectors plus about 16 more (the
  iterate, gradient, direction, trial point, bounds, temporaries); Adam about 8;
* the weights, and on the CPU the process's current resident size (Python, libraries).

``scripts/bench_style.py memory`` and ``scripts/bench_core.py memory`` compare the
estimate with measured peaks.
"""
from __future__ import annotations

import os
from typing import Sequence

from .reconstruct import FeatureNet

FLOAT = 4
#: image-sized vectors the optimisers hold besides the L-BFGS history
OPTIMIZER_VECTORS = {"lbfgs": 16, "adam": 8}


def estimate_bytes(net: FeatureNet, shape: tuple[int, int], layers: Sequence[str], *, batch: int = 1,
                   optimizer: str = "lbfgs", history: int = 10, baseline: int = 0) -> int:
    """Estimated peak bytes of a reconstruction of ``batch`` images of ``shape`` (H, W).

    ``batch`` is the number of images evaluated in one pass (the micro-batch); the
    optimiser state is counted for ``batch`` images too. ``baseline`` is added as is.
    """
    pixels = 3 * shape[0] * shape[1]
    vectors = OPTIMIZER_VECTORS[optimizer] + (2 * history if optimizer == "lbfgs" else 0)
    weights = sum(w.size + b.size for w, b in net.params.values())
    return (baseline + net.pass_bytes(shape, layers, batch=batch)
            + FLOAT * (batch * vectors * pixels + weights))


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

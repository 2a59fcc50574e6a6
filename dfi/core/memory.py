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

And how the process keeps the memory it frees (:func:`keep_freed_memory`, which dfi's
command line and batch workers call), and the one limit of buffer *sizes* rather than
bytes: Chainer's GPU convolution indexes its column buffers with 32-bit ints
(:func:`check_columns`, for every network trained through Chainer's graph on a GPU).
"""
from __future__ import annotations

import ctypes
import os
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # (the command line imports this module before any network: no Chainer here)
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


#: the elements Chainer's GPU im2col / col2im can index (32-bit offsets in ``chainer/utils/conv.py``)
COLUMN_LIMIT = 2 ** 31


def check_columns(columns_at, size: int, batch: int, multiple: int) -> None:
    """Refuse training at ``size``² with ``batch`` images when a convolution's column buffer
    reaches :data:`COLUMN_LIMIT`: without cuDNN (CuPy 14 has none) Chainer convolves on a
    GPU through im2col, and its ``col2im_gpu`` (the input gradient) indexes with 32-bit ints,
    so it would write out of bounds. ``columns_at(size, batch)``: {layer: elements}, linear in
    the batch; sizes are tried in steps of ``multiple``. The error names what fits."""
    from .errors import SettingError

    name, worst = max(columns_at(size, batch).items(), key=lambda item: item[1])
    if worst < COLUMN_LIMIT:
        return
    largest_batch = (COLUMN_LIMIT - 1) // -(-worst // batch)
    largest_size = next((s for s in range(size - multiple, 0, -multiple)
                         if max(columns_at(s, batch).values()) < COLUMN_LIMIT), None)
    fits = [f"--batch-size {largest_batch} at --size {size}"] if largest_batch else []
    fits += [f"--size {largest_size} at --batch-size {batch}"] if largest_size else []
    raise SettingError(f"training on a GPU at --size {size} with --batch-size {batch}: layer {name}'s column "
                       f"buffer would hold {worst:,} elements, past the 2^31 that Chainer's col2im_gpu can index; "
                       f"the largest that fit: {' or '.join(fits) or 'none'}")


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


#: glibc's ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: arrays up to this size come from the heap, which keeps up to :data:`KEEP_FREED` free
MMAP_THRESHOLD = 256 * 2 ** 20
KEEP_FREED = 2 ** 30


def keep_freed_memory() -> bool:
    """Make this process reuse the memory it frees rather than give it back to the system.

    By default glibc hands large freed blocks back (``munmap``, or trimming the heap) and
    the next pass faults the same pages in again, zeroed, one 4 KiB page at a time: a
    stylizer pass at 256² made 3,700 page faults, a batch-6 VGG pass at 200² 10,000, and ran
    11 % and up to 26 % faster without them (BENCHMARKS.md). With this, arrays up to
    :data:`MMAP_THRESHOLD` come from the heap and up to :data:`KEEP_FREED` of free heap is
    kept: the resident size stays near the largest pass's peak instead of dropping after
    each one (the peak itself is unchanged). Only on glibc, and not where the user set
    ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_MMAP_THRESHOLD_`` (their choice stands).
    Returns whether it was set."""
    if any(os.environ.get(name) for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # (Windows)
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc: macOS, or musl (whose mallopt does nothing)
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREED))

"""Devices: parse ``--device``, make it current, move arrays. The only module that imports CuPy.

CuPy makes new arrays and launches kernels on the *current* device, which is per thread and
is GPU 0 until something makes another one current; Chainer makes a device current only
while it copies an array to it. So whoever chooses a device also makes it current for the
whole run, in every thread that works on the device (:func:`use_device` for the rest of a
thread's life, :func:`using_device` for a block): the command line once it has parsed
``--device``, a batch worker at the start of every task (Dask runs tasks in threads of its
own), the :class:`~dfi.style.feedforward.Stylizer`'s and ``Trainer``'s calls, feature
extraction, a sweep's setup and the reconstruction loop (so a page's worker threads and a
library user's need nothing more). The threads dfi starts itself (images decoded ahead,
optical flow) work on host arrays only.

Chainer is imported when first needed, not with this module: reading and writing images
(:mod:`dfi.core.image`) and the command line's checks then run without loading it."""
from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import numpy as np

from .. import _compat  # noqa: F401  (before chainer)
from .errors import SettingError

if TYPE_CHECKING:
    import chainer


def _chainer():
    import chainer
    return chainer


def gpu_count() -> int:
    """Number of CUDA devices Chainer can use: 0 without CuPy, without a driver, or when
    Chainer's CUDA backend did not load (``chainer.backends.cuda.available``: e.g. no cuBLAS)."""
    cuda = _chainer().backends.cuda
    if not cuda.available:
        return 0
    try:
        return int(cuda.cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device
        return 0


def parse_device(spec: str | None = "auto") -> chainer.backend.Device:
    """``auto`` (GPU 0 if CuPy sees one, else CPU), ``cpu``, ``gpu`` or ``gpu:N``."""
    chainer = _chainer()
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return chainer.get_device("@cupy:0" if gpu_count() > 0 else "@numpy")
    if spec == "cpu":
        return chainer.get_device("@numpy")
    match = re.fullmatch(r"gpu(?::(\d+))?", spec)
    if not match:
        raise SettingError(f"--device {spec!r} is not one of auto, cpu, gpu, gpu:N")
    index = int(match.group(1) or 0)
    count = gpu_count()
    if index >= count:
        have = "no GPU is visible (is CuPy installed? pip install '.[gpu]')" if count == 0 \
            else f"only {count} GPU(s) are visible"
        raise SettingError(f"--device {spec!r}: {have}")
    return chainer.get_device(f"@cupy:{index}")


def use_device(device: chainer.backend.Device) -> chainer.backend.Device:
    """Make ``device`` current in the calling thread from now on (nothing on the CPU);
    returns it."""
    device.use()
    return device


def using_device(device: chainer.backend.Device):
    """A context manager in which ``device`` is current in the calling thread (the one
    current before comes back after it)."""
    return device.create_context()


def device_of(x) -> chainer.backend.Device:
    """The device that holds the array or Variable ``x``."""
    return _chainer().backend.get_device_from_array(getattr(x, "array", x))


def get_array_module(x):
    """NumPy or CuPy, whichever holds ``x`` (a Variable or an array); an array type may
    name its own module as ``array_module`` (:mod:`dfi.core.launches`' stand-in device
    arrays do)."""
    module = getattr(type(getattr(x, "array", x)), "array_module", None)
    return module if module is not None else _chainer().backend.get_array_module(x)


def sum_of_products(a, b, *, axis: int):
    """Σ a·b over ``axis`` (same shapes). On NumPy by einsum, in one pass without a
    temporary of a's size; elsewhere (CuPy) by a product and a sum, two kernels: CuPy's
    einsum copies both operands transposed and runs a batched GEMM of 1×1 outputs
    (``linalg/_einsum.py``)."""
    xp = get_array_module(a)
    if xp is np:
        letters = "abcdefgh"[:a.ndim]
        return np.einsum(f"{letters},{letters}->{letters.replace(letters[axis], '')}", a, b)
    return (a * b).sum(axis=axis)


def to_cpu(x) -> np.ndarray:
    """A NumPy copy (or view) of an array or Variable on any device."""
    chainer = _chainer()
    if isinstance(x, chainer.Variable):
        x = x.array
    return chainer.backend.CpuDevice().send(x)


def to_device(x, device: chainer.backend.Device):
    """Send an array to ``device`` (no copy when it is already there)."""
    return device.send(x)


def synchronize(device: chainer.backend.Device) -> None:
    """Wait for queued GPU work (for timing); nothing on the CPU."""
    if device.xp is not np:
        device.device.synchronize()


def _cpu_available() -> int:
    """Bytes this process could still allocate: MemAvailable, capped by a cgroup limit."""
    available = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/sys/fs/cgroup/memory.max") as limit, open("/sys/fs/cgroup/memory.current") as used:
            text = limit.read().strip()
            if text != "max":
                available = min(available, int(text) - int(used.read()))
    except (OSError, ValueError):
        pass
    return max(0, available)


def available_memory(device: chainer.backend.Device) -> int:
    """Free bytes on ``device``: host memory for the CPU, free + pooled memory on a GPU."""
    if device.xp is np:
        return _cpu_available()
    cupy = device.xp
    with cupy.cuda.Device(device.device.id):  # a chainer Device is no context manager
        free, _ = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())

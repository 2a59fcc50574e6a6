"""The CPU's cores for the kernels: their element-wise passes (tile gathers and scatters,
gating, pooling) and their GEMMs split over a pool of threads of dfi's own.

BLAS runs a GEMM on every core, but a NumPy ufunc or copy runs on one: on a 2-core machine
half the time of a VGG pass was such passes, on one core. NumPy lets go of the GIL inside
them, so :func:`split` cuts an operation's output and inputs into slabs along one axis —
one large job per thread and a few small ones, taken one at a time, so a thread that starts
late or is preempted holds up little (:func:`_shares`) — and runs them on all the threads:
the same arithmetic on the same elements, so results are identical to the bit. Splitting
only the element-wise passes is not enough: OpenBLAS's threads keep spinning for about 0.1
s after each GEMM and take the cores those passes would use. So while a kernel runs
(:func:`kernel_section`) BLAS is held at one thread per call and :func:`matmul` splits each
GEMM over dfi's threads instead (a batched GEMM by its batch, a plain one by its longer
side), with no thread left spinning. Independent pieces of work (the bands of a thin
convolution, each writing its own rows) go to :func:`each`, which runs them on all the
threads at once, whole: one thread's copies then overlap the other's products; compiled
loops (:mod:`dfi.nets.compiled`) take ranges of their rows or tiles (:func:`ranges`). Small
operations, operations outside a kernel section, and arrays on a GPU (one kernel launch
each), run as one call in the calling thread. VGG's convolutions and pooling, the decoders'
and the stylizer's passes are sections.

The thread count is the BLAS's: ``DFI_WORKER_THREADS`` (a batch worker's share),
``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, else the cores this process may use. When the
threads are as many as this process's CPUs, each is pinned to one of them (the calling thread
only while a section lasts: :func:`pinned_cpus`).
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..core.backend import get_array_module

#: elements of the output below which an operation runs in one call
MIN_ELEMENTS = 1 << 16
#: elements of the output an operation that makes temporaries (a comparison's mask) works on
#: at once: its temporaries then stay in cache and come from the allocator's free lists, not
#: from fresh pages (max pooling's backward: a pass at batch 6 0.190 → 0.169 s per image; not
#: for the ReLU gates of the tile views, whose many small strided pieces cost more: 0.171 →
#: 0.253 s)
PIECE_ELEMENTS = 1 << 17
#: output elements below which a split operation is not cut finer than one job per thread
#: (:func:`_shares`)
MIN_JOB_ELEMENTS = 1 << 16

_pool: ThreadPoolExecutor | None = None
_pool_threads = 0  # the thread count _pool serves (it holds one thread fewer: the caller works too)
_lock = threading.Lock()
#: numbers the pool's threads in the order they start (each pinned to a CPU of its own)
_workers = itertools.count()
_section = {"depth": 0, "saved": None, "blas": None}
#: ``alone`` is set while the thread runs one of :func:`each`'s jobs: its operations then run
#: unsplit (the other threads are busy with jobs of their own)
_local = threading.local()


@functools.lru_cache(maxsize=None)
def thread_count() -> int:
    """Threads for the kernels: the BLAS's thread count, see the module docstring (read
    once per process: ``thread_count.cache_clear()`` reads it again)."""
    for name in ("DFI_WORKER_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pinned_cpus(threads: int) -> list[int]:
    """The CPUs the kernels' threads are pinned to, the calling thread on the first: this
    process's CPUs when it uses them all (``threads`` of them); else none (a batch worker
    sharing the machine with others, which would all pin to the same ones). Unpinned, Linux
    often wakes a pool thread on the CPU of the thread that woke it, and after a pause the
    two share one core for the first ~20 ms of a pass (measured: a pass 12 % slower after
    0.2 s idle; pinned, 3 %). A forked child pins nothing."""
    cpus = _allowed_cpus()
    return list(cpus) if threads > 1 and len(cpus) == threads and not _section.get("forked") else []


@functools.lru_cache(maxsize=None)
def _allowed_cpus() -> tuple[int, ...]:
    """This process's CPUs, read once, before any thread is pinned (a thread made by a
    pinned one inherits its single CPU)."""
    return tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()


def _pin_worker(cpus: list[int]) -> None:
    _set_cpus({cpus[1 + next(_workers) % (len(cpus) - 1)]})


def _set_cpus(cpus) -> bool:
    """Pin the calling thread to ``cpus``; False where the system refuses (a container's
    policy): the kernels then run unpinned."""
    try:
        os.sched_setaffinity(0, cpus)
        return True
    except OSError:
        return False


def _after_fork() -> None:
    """A forked child (one of a process pool) has none of the parent's threads: its kernels
    start a pool of their own, BLAS's setting is the child's, and nothing is pinned (its
    siblings share the same CPUs)."""
    global _pool
    _pool = None
    _section.update(depth=0, saved=None, blas=None, forked=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _executor(threads: int) -> ThreadPoolExecutor:
    """The pool for work split ``threads`` ways: ``threads`` − 1 threads beside the caller."""
    global _pool, _pool_threads
    with _lock:
        if _pool is None or _pool_threads != threads:
            cpus = pinned_cpus(threads)
            _pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="dfi-kernels",
                                       initializer=_pin_worker if cpus else None, initargs=(cpus,) if cpus else ())
            _pool_threads = threads
        return _pool


def _bounds(size: int, parts: int) -> list[slice]:
    """``parts`` slices covering range(size), their lengths differing by one at most."""
    return [slice(size * k // parts, size * (k + 1) // parts) for k in range(parts)]


class _Jobs:
    """Jobs taken one at a time by whichever thread asks first; the first failure stops the
    handing out, and :meth:`wait` raises it once no job runs any more."""

    def __init__(self, fn, jobs):
        self.fn, self.jobs, self.next, self.running, self.error = fn, jobs, 0, 0, None
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)

    def work(self) -> None:
        while True:
            with self.lock:
                if self.error is not None or self.next == len(self.jobs):
                    return
                job = self.jobs[self.next]
                self.next += 1
                self.running += 1
            try:
                self.fn(*job)
            except BaseException as error:  # (kept for the caller: a helper's would be lost)
                with self.lock:
                    self.error = self.error or error
            finally:
                with self.lock:
                    self.running -= 1
                    if not self.running:
                        self.idle.notify_all()

    def wait(self) -> None:
        with self.lock:
            while self.running:
                self.idle.wait()
        if self.error is not None:
            raise self.error


def _run(threads: int, fn, jobs) -> None:
    """``fn(*job)`` for every job, taken one at a time by the calling thread and up to
    ``threads`` − 1 of the pool's; the caller then waits only for the jobs still running.
    A helper that starts late (woken on a virtual CPU that had halted: 90–200 µs on the
    build machines) or is preempted costs at most the job it holds: the caller does the
    rest (see :func:`_shares`)."""
    if len(jobs) == 1:
        fn(*jobs[0])
        return
    state = _Jobs(fn, jobs)
    pool = _executor(threads)
    for _ in range(min(threads, len(jobs)) - 1):
        pool.submit(state.work)
    state.work()
    state.wait()


def _shares(size: int, threads: int, elements: int) -> list[slice]:
    """The jobs of an operation of ``elements`` output elements cut along an axis of
    ``size``: one per thread of three quarters of an equal share, then the last quarter in
    two smaller jobs per thread, all taken one at a time. A thread that starts late or is
    preempted (on a 2-vCPU VM a helper's wake-up takes 90–200 µs and the host may take a
    vCPU away for milliseconds) then holds up at most the job it has, and there are few jobs
    (each costs a few µs of Python); an operation too small or too short an axis for that
    gets ``threads`` equal ones."""
    if size < 4 * threads or elements < 4 * threads * MIN_JOB_ELEMENTS:
        return _bounds(size, min(size, threads))
    big = size * 3 // (4 * threads)
    cuts = [big * k for k in range(threads + 1)]
    rest, small = size - cuts[-1], 2 * threads
    cuts += [cuts[threads] + rest * k // small for k in range(1, small + 1)]
    return [slice(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _imbalance(size: int, threads: int) -> float:
    """How much longer the largest of ``threads`` slabs of ``size`` is than an equal share
    (a thread with nothing to do counts as a whole share lost)."""
    return min(threads, size) and -(-size // min(threads, size)) * threads / size


def _cut(array, out, axis: int, start: int, stop: int):
    """``array``'s part [start, stop) along the axis that broadcasts against ``out``'s
    ``axis`` (``array`` whole if it has no such axis or is of size 1 there)."""
    aligned = axis - out.ndim + getattr(array, "ndim", 0)
    if aligned < 0 or array.shape[aligned] != out.shape[axis]:
        return array
    index = [slice(None)] * array.ndim
    index[aligned] = slice(start, stop)
    return array[tuple(index)]


def _in_pieces(op, out, *inputs, skip: int = -1) -> None:
    """``op`` on pieces of at most about :data:`PIECE_ELEMENTS` output elements, cut along
    the longest axis other than ``skip``."""
    axes = [a for a in range(out.ndim) if a != skip]
    if out.size <= PIECE_ELEMENTS or not axes:
        op(out, *inputs)
        return
    axis = max(axes, key=lambda a: out.shape[a])
    size = out.shape[axis]
    step = max(1, size * PIECE_ELEMENTS // out.size)
    for start in range(0, size, step):
        stop = min(size, start + step)
        op(_cut(out, out, axis, start, stop), *(_cut(x, out, axis, start, stop) for x in inputs))


def split(op, out, *inputs, axis=0, temporaries: bool = False) -> None:
    """``op(out, *inputs)`` as slabs along ``axis`` (:func:`_shares`): ``out`` and every
    input are cut the same way along the axis that broadcasts against it (an input of
    size 1 there, or without that axis, such as a scalar, is passed whole). ``axis`` may be
    a tuple: the one of those axes that shares out most evenly is cut (the first of
    equals). ``op`` may write
    only into the slabs it is given (several outputs may be passed as inputs), and each
    element it writes may depend only on the slabs' elements at the same index. Outside a
    :func:`kernel_section` it is one call: BLAS's own threads may be spinning there. With
    ``temporaries`` (``op`` makes arrays of its operands' size), each slab is worked on in
    pieces of :data:`PIECE_ELEMENTS` (on NumPy, with or without threads)."""
    threads = thread_count()
    axes = axis if isinstance(axis, tuple) else (axis,)
    numpy = type(out) is np.ndarray
    run = (lambda *job, skip=-1: _in_pieces(op, *job, skip=skip)) if temporaries and numpy else \
        (lambda *job, skip=-1: op(*job))
    if not numpy or threads < 2 or out.size < MIN_ELEMENTS or _section["depth"] == 0 or _alone():
        run(out, *inputs)
        return
    axis = min(axes, key=lambda a: (_imbalance(out.shape[a], threads), axes.index(a)))
    size = out.shape[axis]
    if size < 2:
        run(out, *inputs)
        return
    jobs = [(_cut(out, out, axis, part.start, part.stop), *(_cut(x, out, axis, part.start, part.stop) for x in inputs))
            for part in _shares(size, threads, out.size)]
    _run(threads, lambda *job: run(*job, skip=axis), jobs)


def _alone() -> bool:
    """Whether the calling thread must not hand work to the pool: it is one of the pool's
    threads, or it runs one of :func:`each`'s jobs."""
    return getattr(_local, "alone", False) or threading.current_thread().name.startswith("dfi-kernels")


def each(fn, jobs, *, xp=np) -> None:
    """``fn(*job)`` for every job, inside a :func:`kernel_section` on all the threads at once,
    each taking the next job when it is done with one (their operations, GEMMs included, then
    run unsplit on that thread); elsewhere (no section, one thread, a GPU) in order on the
    calling thread. For independent pieces of work, such as the bands of a convolution each
    writing its own rows: one thread's copies then overlap the other's products."""
    jobs = list(jobs)
    threads = min(thread_count(), len(jobs))
    if xp is not np or threads < 2 or _section["depth"] == 0 or _alone():
        for job in jobs:
            fn(*job)
        return

    def alone(*job) -> None:  # (its operations run unsplit: the other threads have jobs of their own)
        _local.alone = True
        try:
            fn(*job)
        finally:
            _local.alone = False
    _run(thread_count(), alone, jobs)


def ranges(fn, size: int, elements: int, *, alternate: bool = False) -> None:
    """``fn(start, stop)`` for ranges that cover range(``size``), on all the threads in a
    :func:`kernel_section` (:func:`_shares`' jobs; ``elements``: the operation's output
    size), elsewhere as one call ``fn(0, size)``. For compiled loops over an operation's
    rows or tiles (:mod:`dfi.nets.compiled`). With ``alternate`` (ranges whose writes spill
    into the next range's first rows, as overlapping tiles summed into a map do), equal
    ranges run in two rounds, every other one in each, so neighbours never run at once, and
    ``fn`` is told the round: ``fn(start, stop, round)``, 1 or 2 (0: the only call)."""
    threads = thread_count()
    if threads < 2 or size < 2 or elements < MIN_ELEMENTS or _section["depth"] == 0 or _alone():
        fn(0, size, 0) if alternate else fn(0, size)
        return
    if not alternate:
        _run(threads, fn, [(part.start, part.stop) for part in _shares(size, threads, elements)])
        return
    parts = [(part.start, part.stop) for part in _bounds(size, min(size, 2 * threads))]
    for round_ in (1, 2):
        _run(threads, fn, [(*part, round_) for part in parts[round_ - 1::2]])


def copy(out, source, *, axis=0) -> None:
    """``out[...] = source`` by :func:`split` (NumPy or CuPy)."""
    xp = get_array_module(out)
    split(lambda o, s: xp.copyto(o, s), out, source, axis=axis)


def relu(out, source, *, axis=0) -> None:
    """``out = max(source, 0)`` by :func:`split` (NumPy or CuPy)."""
    xp = get_array_module(out)
    split(lambda o, s: xp.maximum(s, 0, out=o), out, source, axis=axis)


#: on NumPy the kernels' element-wise steps run as :mod:`dfi.nets.compiled`'s loops where
#: Numba is installed (False: as NumPy calls, the steps CuPy runs; the tests' reference)
COMPILED = True


@functools.lru_cache(maxsize=None)
def _compiled_module():
    try:
        from . import compiled
    except ImportError:  # (a GPU machine needs no Numba: CuPy runs the other steps)
        return None
    return compiled


def compiled(xp):
    """:mod:`dfi.nets.compiled` for arrays of ``xp`` — NumPy, where Numba is installed and
    :data:`COMPILED` — else None: the NumPy/CuPy steps. Imported on first use (Numba
    takes ~0.3 s to load)."""
    return _compiled_module() if xp is np and COMPILED else None


def _blas_libraries() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded (found once)."""
    if _section["blas"] is None:
        try:
            from threadpoolctl import ThreadpoolController
            _section["blas"] = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
        except Exception:  # no threadpoolctl, or a library it cannot drive: BLAS keeps its threads
            _section["blas"] = []
    return _section["blas"]


@contextlib.contextmanager
def kernel_section(xp):
    """While the block runs, BLAS computes each GEMM on the calling thread (its own
    threads are not woken, so none spins afterwards) and :func:`matmul` / :func:`split`
    use dfi's threads; nested and concurrent sections share one setting, restored when the
    last ends. On CuPy, or with one thread, nothing changes."""
    if xp is not np or thread_count() < 2:
        yield
        return
    pinned = None
    with _lock:
        _section["depth"] += 1
        if _section["depth"] == 1:
            libraries = _blas_libraries()
            _section["saved"] = [(lib, lib.get_num_threads()) for lib in libraries]
            for lib in libraries:
                lib.set_num_threads(1)
            cpus = pinned_cpus(thread_count())
            if cpus:  # the calling thread on the first CPU while the section lasts
                pinned = os.sched_getaffinity(0)
                if not _set_cpus({cpus[0]}):
                    pinned = None
    try:
        yield
    finally:
        with _lock:
            _section["depth"] -= 1
            if _section["depth"] == 0:
                for lib, count in _section["saved"]:
                    lib.set_num_threads(count)
            if pinned is not None:
                _set_cpus(pinned)


def matmul(a, b, out) -> None:
    """``out = a @ b`` (NumPy or CuPy), on NumPy split over the threads: a batched product
    (3-D ``a``) by its batch, a plain one by the longer of ``out``'s two sides, in the jobs
    of :func:`_shares` (slices of a C-contiguous matrix stay BLAS-ready: no copies)."""
    xp = get_array_module(out)
    threads = thread_count()
    if type(out) is not np.ndarray or threads < 2 or out.size < MIN_ELEMENTS or _section["depth"] == 0 or _alone():
        xp.matmul(a, b, out=out)
        return
    if out.ndim == 3:
        jobs = [(a[part], b[part] if b.ndim == 3 else b, out[part])
                for part in _shares(len(out), threads, out.size)]
    elif out.shape[1] >= out.shape[0]:
        jobs = [(a, b[:, part], out[:, part]) for part in _shares(out.shape[1], threads, out.size)]
    else:
        jobs = [(a[part], b, out[part]) for part in _shares(out.shape[0], threads, out.size)]
    _run(threads, lambda a, b, out: np.matmul(a, b, out=out), jobs)

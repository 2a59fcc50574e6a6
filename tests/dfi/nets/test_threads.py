"""The kernels' own threads: split work gives the bits one call gives, and BLAS gets its
threads back when a kernel ends."""
import numpy as np
import pytest

from dfi.nets import threads


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.setattr(threads, "thread_count", lambda: 2)
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 1)


def test_split_work_equals_one_call_bit_for_bit(two_threads):
    rng = np.random.default_rng(0)
    source = rng.normal(size=(3, 7, 5, 4)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    seen = []

    def op(out, a, b):
        seen.append(out.shape)
        np.maximum(np.add(a, b, out=out), 0, out=out)

    out = np.empty_like(source)
    threads.split(op, out, source, bias, axis=0)  # outside a kernel section: one call
    assert seen == [source.shape]
    with threads.kernel_section(np):
        for axis in (0, 1, (2, 1), (1, 3)):
            out = np.empty_like(source)
            threads.split(op, out, source, bias, axis=axis)
            np.testing.assert_array_equal(out, np.maximum(source + bias, 0))
        assert (2, 7, 5, 4) in seen and (3, 4, 5, 4) in seen  # cut, and the bias passed whole
        # of several axes the one that shares out evenly is cut: 4 channels, not 5 or 7
        # columns, and the bias is cut with them (it broadcasts along that axis)
        seen.clear()
        out = np.empty_like(source)
        threads.split(op, out, source, bias, axis=(1, 2, 3))
    assert sorted(seen) == [(3, 7, 5, 2), (3, 7, 5, 2)]
    np.testing.assert_array_equal(out, np.maximum(source + bias, 0))


def test_each_runs_every_job_once_on_both_threads_and_their_work_unsplit(two_threads):
    import threading
    import time

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(8, 40, 30)).astype(np.float32), rng.normal(size=(30, 20)).astype(np.float32)
    out = np.zeros((8, 40, 20), np.float32)
    where = []

    def job(k):
        where.append((k, threading.current_thread().name))
        time.sleep(0.005)  # long enough that the other thread takes jobs too
        threads.matmul(a[k], b, out[k])  # run unsplit here: handing it to the busy pool would wait
        threads.copy(out[k], out[k] * 2)

    threads.each(job, [(k,) for k in range(8)])  # outside a section: in order, on this thread
    assert [k for k, _ in where] == list(range(8)) and {n for _, n in where} == {threading.current_thread().name}
    np.testing.assert_allclose(out, 2 * (a @ b), rtol=1e-5)
    where.clear()
    out[:] = 0
    with threads.kernel_section(np):
        threads.each(job, [(k,) for k in range(8)])
    assert sorted(k for k, _ in where) == list(range(8))
    assert len({n for _, n in where}) == 2
    np.testing.assert_allclose(out, 2 * (a @ b), rtol=1e-5)

    def failing(k):
        if k == 3:
            raise ValueError("job 3")
    with threads.kernel_section(np), pytest.raises(ValueError, match="job 3"):
        threads.each(failing, [(k,) for k in range(6)])


def test_strided_moves_and_views_of_tiles(two_threads):
    rng = np.random.default_rng(1)
    frame = np.zeros((2, 10, 12, 3), np.float32)
    inside = frame[:, 1:9, 1:11]  # not contiguous
    values = rng.normal(size=inside.shape).astype(np.float32)
    with threads.kernel_section(np):
        threads.copy(inside, values, axis=(0, 1))
        np.testing.assert_array_equal(frame[:, 1:9, 1:11], values)
        assert not frame[:, 0].any() and not frame[:, :, -1].any()
        threads.relu(inside, -values, axis=1)
    np.testing.assert_array_equal(inside, np.maximum(-values, 0))


def test_matmul_split_three_ways_equals_numpy(two_threads):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 9, 5)).astype(np.float32), rng.normal(size=(6, 5, 4)).astype(np.float32)
    wide, tall = rng.normal(size=(4, 30)).astype(np.float32), rng.normal(size=(30, 3)).astype(np.float32)
    square = rng.normal(size=(4, 4)).astype(np.float32)
    with threads.kernel_section(np):
        out = np.empty((6, 9, 4), np.float32)
        threads.matmul(a, b, out)  # by the batch
        np.testing.assert_allclose(out, a @ b, rtol=1e-6)
        out = np.empty((4, 30), np.float32)
        threads.matmul(square, wide, out)  # by the columns
        np.testing.assert_allclose(out, square @ wide, rtol=1e-6)
        out = np.empty((30, 4), np.float32)
        threads.matmul(tall, square[:3], out)  # by the rows
        np.testing.assert_allclose(out, tall @ square[:3], rtol=1e-6)
        out = np.empty((30, 4), np.float32)
        threads.matmul(wide.T, square, out)  # a transposed view, by the rows
        np.testing.assert_allclose(out, wide.T @ square, rtol=1e-6)


def test_a_kernel_section_holds_blas_at_one_thread_and_gives_its_threads_back(two_threads, monkeypatch):
    class Library:
        def __init__(self):
            self.threads, self.calls = 2, []

        def get_num_threads(self):
            return self.threads

        def set_num_threads(self, count):
            self.calls.append(count)
            self.threads = count

    library = Library()
    monkeypatch.setitem(threads._section, "blas", [library])
    with threads.kernel_section(np):
        assert library.threads == 1
        with threads.kernel_section(np):  # nested: one setting
            assert library.threads == 1
        assert library.threads == 1
    assert library.threads == 2 and library.calls == [1, 2]
    with pytest.raises(RuntimeError):
        with threads.kernel_section(np):
            raise RuntimeError("a failing layer")
    assert library.threads == 2 and threads._section["depth"] == 0


def test_thread_count_follows_the_blas_settings(monkeypatch):
    threads.thread_count.cache_clear()
    try:
        monkeypatch.setenv("DFI_WORKER_THREADS", "3")
        assert threads.thread_count() == 3
        threads.thread_count.cache_clear()
        monkeypatch.delenv("DFI_WORKER_THREADS")
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
        assert threads.thread_count() == 1
    finally:
        threads.thread_count.cache_clear()


def test_tile_views_refuse_tiles_that_pass_the_maps():
    from dfi.nets.conv import _tile_view

    maps = np.zeros((1, 8, 8, 2), np.float32)
    assert _tile_view(np, maps, 2, (0, 4, 0, 2), (0, 4, 0, 2)).shape == (2, 2, 1, 4, 4, 2)
    with pytest.raises(ValueError, match="pass maps of 8 × 8"):
        _tile_view(np, maps, 2, (0, 4, 0, 4), (0, 4, 0, 2))  # overlapping tiles need a frame


def test_threads_are_pinned_only_where_the_process_uses_all_its_cpus(monkeypatch):
    monkeypatch.setattr(threads, "_allowed_cpus", lambda: (3, 5))
    assert threads.pinned_cpus(2) == [3, 5]  # the calling thread on 3, the pool on 5
    assert threads.pinned_cpus(1) == [] and threads.pinned_cpus(4) == []  # a share of the machine: no pins


def test_a_section_pins_the_calling_thread_and_gives_its_cpus_back(two_threads):
    import os

    before = os.sched_getaffinity(0)
    cpus = threads.pinned_cpus(2)
    with threads.kernel_section(np):
        inside = os.sched_getaffinity(0)
    assert os.sched_getaffinity(0) == before
    assert inside == ({cpus[0]} if cpus else before)


def test_work_with_temporaries_is_done_in_pieces_of_the_same_result(two_threads, monkeypatch):
    monkeypatch.setattr(threads, "PIECE_ELEMENTS", 16)
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 9, 7, 3)).astype(np.float32), rng.normal(size=(2, 9, 7, 3)).astype(np.float32)
    seen = []

    def op(out, x, y):
        seen.append(out.size)
        np.multiply(x, y > 0, out=out)
    for section in (False, True):
        out = np.empty_like(a)
        seen.clear()
        if section:
            with threads.kernel_section(np):
                threads.split(op, out, a, b, axis=0, temporaries=True)
        else:
            threads.split(op, out, a, b, axis=0, temporaries=True)
        np.testing.assert_array_equal(out, a * (b > 0))
        assert max(seen) <= a.size // 9 and sum(seen) == a.size  # pieces (one row of the longest axis), once


def test_a_forked_child_runs_split_work_on_a_pool_of_its_own(two_threads):
    import multiprocessing

    out = np.empty((4, 8))
    with threads.kernel_section(np):
        threads.split(lambda o: o.fill(1), out, axis=0)  # the parent's pool exists now
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:  # (a parent's pool in the child would wait for ever)
        assert pool.apply_async(_split_in_child).get(timeout=20) == 32.0


def _split_in_child():  # (thread_count and MIN_ELEMENTS as the fixture set them, inherited)
    assert threads.pinned_cpus(2) == []  # its siblings share its CPUs
    out = np.zeros((4, 8))
    with threads.kernel_section(np):
        threads.split(lambda o: o.fill(1), out, axis=0)
    return float(out.sum())


def test_the_caller_does_not_wait_for_a_helper_that_has_not_started(two_threads):
    import threading
    import time

    release = threading.Event()
    busy = threads._executor(2).submit(release.wait, 5)  # the pool's one helper is taken
    try:
        source = np.arange(64 * 1000, dtype=np.float32).reshape(64, 1000)
        out = np.empty_like(source)
        start = time.perf_counter()
        with threads.kernel_section(np):
            threads.copy(out, source)  # its jobs: the caller takes them all
            done_alone = time.perf_counter() - start
        np.testing.assert_array_equal(out, source)
        assert not busy.done() and done_alone < 2.0
    finally:
        release.set()
        busy.result()


def test_shares_cover_the_axis_in_order_big_jobs_first():
    for size, elements in ((8, 1 << 20), (34, 1 << 20), (1000, 1 << 22), (7, 1 << 20), (64, 100)):
        parts = threads._shares(size, 2, elements)
        assert parts[0].start == 0 and parts[-1].stop == size
        assert all(a.stop == b.start and a.stop > a.start for a, b in zip(parts, parts[1:]))
        lengths = [p.stop - p.start for p in parts]
        assert len(parts) <= 6 and sorted(lengths[:2]) == sorted(lengths)[-2:]
    assert len(threads._shares(64, 2, 100)) == 2  # too few elements: one job per thread


def test_ranges_cover_the_rows_and_alternate_rounds_never_run_neighbours_at_once(two_threads):
    import threading
    import time

    seen, running, overlaps = [], set(), []
    lock = threading.Lock()

    def job(start, stop, *round_):
        with lock:
            seen.append((start, stop))
            overlaps.extend((start, stop, other) for other in running
                            if other[1] == start or other[0] == stop)  # a neighbour running now
            running.add((start, stop))
        time.sleep(0.01)
        with lock:
            running.discard((start, stop))

    threads.ranges(job, 40, 10 ** 6)  # outside a section: one call
    assert seen == [(0, 40)]
    for alternate in (False, True):
        seen.clear()
        overlaps.clear()
        with threads.kernel_section(np):
            threads.ranges(job, 40, 10 ** 6, alternate=alternate)
        covered = sorted(seen)
        assert covered[0][0] == 0 and covered[-1][1] == 40 and all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
        assert len(seen) > 2
    assert not overlaps  # (in the alternate rounds)


def test_without_numba_the_kernels_take_the_numpy_steps(monkeypatch):
    import sys

    import dfi.nets

    monkeypatch.delitem(sys.modules, "dfi.nets.compiled", raising=False)
    monkeypatch.delattr(dfi.nets, "compiled", raising=False)
    monkeypatch.setitem(sys.modules, "numba", None)  # (import numba then fails)
    threads._compiled_module.cache_clear()
    try:
        assert threads.compiled(np) is None
    finally:
        threads._compiled_module.cache_clear()
    monkeypatch.undo()
    assert threads.compiled(np) is not None and threads.compiled(object()) is None

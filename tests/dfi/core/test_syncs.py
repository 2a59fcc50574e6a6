"""The optimisers wait for the device at most once per iteration.

On a GPU every ``bool(array)``, ``float(array)``, ``.tolist()``, boolean-mask index or
``nonzero`` waits for the queued work. Here a NumPy array subclass stands in for a device
array and counts those operations, and a stand-in array module makes every array the
optimiser allocates such an array.
"""
import numpy as np
import pytest

import dfi.core.optimize as optimize

LOG: list = []


def _is_mask(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, np.ndarray) and k.dtype == bool for k in keys)


class DeviceArray(np.ndarray):
    """A NumPy array that records every operation that would wait for a GPU."""

    def __bool__(self):
        LOG.append("bool")
        return super().__bool__()

    def __float__(self):
        LOG.append("float")
        return super().__float__()

    def __int__(self):
        LOG.append("int")
        return super().__int__()

    def __index__(self):
        LOG.append("index")
        return super().__index__()

    def item(self, *args):
        LOG.append("item")
        return super().item(*args)

    def tolist(self):
        LOG.append("tolist")
        return super().tolist()

    def get(self):
        LOG.append("get")
        return np.asarray(self)

    def __iter__(self):
        LOG.append("iter")
        return super().__iter__()

    def __getitem__(self, key):
        if _is_mask(key):
            LOG.append("mask")
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        if _is_mask(key):
            LOG.append("mask")
        return super().__setitem__(key, value)

    def __array_function__(self, func, types, args, kwargs):
        if func in (np.nonzero, np.flatnonzero, np.argwhere, np.unique, np.count_nonzero):
            LOG.append(func.__name__)
        return super().__array_function__(func, types, args, kwargs)


class FakeXP:
    """NumPy, but every array it makes is a :class:`DeviceArray`; uploads are recorded."""

    def __getattr__(self, name):
        obj = getattr(np, name)
        if not callable(obj) or isinstance(obj, type):
            return obj

        def wrapped(*args, **kwargs):
            if name in ("asarray", "array") and args and not isinstance(args[0], DeviceArray):
                LOG.append("upload")
            out = obj(*args, **kwargs)
            return out.view(DeviceArray) if isinstance(out, np.ndarray) and not isinstance(out, DeviceArray) else out
        return wrapped


XP = FakeXP()


@pytest.fixture(autouse=True)
def fake_device(monkeypatch):
    monkeypatch.setattr(optimize, "get_array_module", lambda x: XP if isinstance(x, DeviceArray) else np)
    LOG.clear()


def _problem(n=4, dim=30, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, dim, dim)) / np.sqrt(dim)
    q = (a @ a.transpose(0, 2, 1) + np.eye(dim) * np.linspace(0.5, 3, n)[:, None, None]).astype(np.float32)
    b = rng.normal(size=(n, dim)).astype(np.float32)
    q_d, b_d = XP.asarray(q), XP.asarray(b)
    calls = []

    def objective(x, rows):
        assert isinstance(x, DeviceArray) and isinstance(rows, DeviceArray)
        calls.append(len(rows))
        qx = XP.einsum("nij,nj->ni", q_d[rows], x)
        return 0.5 * XP.sum(x * qx, axis=1) - XP.sum(b_d[rows] * x, axis=1), qx - b_d[rows]
    return objective, calls


def test_lbfgs_waits_for_the_device_once_per_iteration():
    objective, calls = _problem()
    x0 = XP.zeros((4, 30), XP.float32)
    LOG.clear()
    steps = []
    for step in optimize.lbfgs(objective, x0, max_iter=6, ftol=0.0):
        steps.append(step)
        assert isinstance(step.active, np.ndarray) and not isinstance(step.active, DeviceArray)
    syncs = [entry for entry in LOG if entry != "upload"]
    assert len(steps) == 6 and len(calls) == 1 + 6  # the unit step is taken every time
    assert syncs == ["tolist"] * 7  # the start's values (checked finite), then one each
    for step in steps:  # that one transfer also brought the values: progress shows them without a wait
        np.testing.assert_allclose(step.f_host, np.asarray(step.f), rtol=1e-6)
    assert LOG.count("upload") == 1  # the row list, sent once while every image is active
    assert np.all(np.diff([np.asarray(s.f) for s in steps], axis=0) < 0)


def test_images_that_stop_early_cost_no_extra_waits():
    objective, calls = _problem(seed=1)
    LOG.clear()
    steps = list(optimize.lbfgs(objective, XP.zeros((4, 30), XP.float32), max_iter=200, ftol=1e-7))
    syncs = [entry for entry in LOG if entry != "upload"]
    backtracks = len(calls) - 1 - len(steps)
    assert not steps[-1].active.any() and len(steps) < 200
    assert len(syncs) <= 1 + len(steps) + backtracks
    for step in steps:  # the host values stay right through backtracking and stopped images
        np.testing.assert_allclose(step.f_host, np.asarray(step.f), rtol=1e-6)
    # all rows, once per image that stopped, and the rows of a rare backtracking step
    assert LOG.count("upload") <= 1 + 4 + backtracks
    # a step's iterate is not changed by later iterations (progress records keep them)
    assert not np.array_equal(steps[0].x, steps[-1].x)


@pytest.mark.parametrize("op", [lambda a: bool(a.any()), lambda a: float(a.max()), lambda a: a[a > 2],
                                lambda a: XP.flatnonzero(a), lambda a: a.tolist(), lambda a: a.get()])
def test_the_counter_sees_what_it_should(op):
    """The stand-in is not vacuous: each operation that waits is counted."""
    a = XP.arange(5)
    LOG.clear()
    op(a)
    assert LOG

import numpy as np
import pytest
from scipy import optimize as sciopt

from dfi.core.backend import to_cpu
from dfi.core.optimize import adam, lbfgs, run


def _rosen(x):
    return np.sum(100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2, axis=1)


def _rosen_grad(x):
    g = np.zeros_like(x)
    g[:, :-1] = -400 * x[:, :-1] * (x[:, 1:] - x[:, :-1] ** 2) - 2 * (1 - x[:, :-1])
    g[:, 1:] += 200 * (x[:, 1:] - x[:, :-1] ** 2)
    return g


def _quadratic(seed=0, dim=20):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, dim))
    q = a @ a.T / dim + np.eye(dim)
    b = rng.normal(size=dim) * 5
    return q, b


def test_lbfgs_rosenbrock_batch_matches_scipy():
    x0 = np.random.default_rng(0).normal(0, 1, (4, 10)).astype(np.float32)

    def objective(x, rows):
        x64 = x.astype(np.float64)
        return _rosen(x64).astype(np.float32), _rosen_grad(x64).astype(np.float32)

    last = run(lbfgs(objective, x0, max_iter=500, ftol=1e-12))
    for i in range(4):
        ref = sciopt.minimize(lambda v: _rosen(v[None])[0], x0[i].astype(float),
                              jac=lambda v: _rosen_grad(v[None])[0], method="L-BFGS-B")
        assert last.f[i] <= max(ref.fun, 0) + 1e-6
    np.testing.assert_allclose(last.x, 1.0, atol=1e-3)


def test_lbfgs_bounds_and_device(device):
    xp = device.xp
    q, b = _quadratic()
    q_d, b_d = device.send(q.astype(np.float32)), device.send(b.astype(np.float32))

    def objective(x, rows):
        return 0.5 * xp.einsum("ni,ij,nj->n", x, q_d, x) - x @ b_d, x @ q_d - b_d

    steps = list(lbfgs(objective, xp.zeros((3, 20), xp.float32), max_iter=300, ftol=1e-10,
                       lower=-0.5, upper=0.5))
    last = steps[-1]
    assert type(last.x) is type(xp.zeros(1))  # stays on the device
    ref = sciopt.minimize(lambda v: 0.5 * v @ q @ v - v @ b, np.zeros(20), jac=lambda v: q @ v - b,
                          method="L-BFGS-B", bounds=[(-0.5, 0.5)] * 20)
    x = to_cpu(last.x)
    assert x.min() >= -0.5 and x.max() <= 0.5
    np.testing.assert_allclose(to_cpu(last.f), ref.fun, rtol=1e-4)
    np.testing.assert_allclose(x[0], ref.x, atol=2e-3)
    assert [s.iteration for s in steps] == list(range(1, len(steps) + 1))


def test_lbfgs_images_stop_independently():
    scales = np.array([1.0, 100.0], np.float32)

    def objective(x, rows):
        s = scales[rows][:, None]
        return (s[:, 0] * np.sum((x - 3) ** 2, axis=1)), 2 * s * (x - 3)

    steps = list(lbfgs(objective, np.zeros((2, 5), np.float32), max_iter=50, ftol=1e-6))
    np.testing.assert_allclose(steps[-1].x, 3.0, atol=1e-3)
    assert not steps[-1].active.any()


def test_lbfgs_nan_is_reported():
    def objective(x, rows):
        f = np.sum(x ** 2, axis=1)
        f[:] = np.nan
        return f, 2 * x

    with pytest.raises(FloatingPointError, match="loss is not finite at the start"):
        run(lbfgs(objective, np.ones((1, 3), np.float32)))


def test_adam_converges_on_quadratic():
    q, b = _quadratic(1, 5)
    q, b = q.astype(np.float32), b.astype(np.float32)

    def objective(x, rows):
        return 0.5 * np.einsum("ni,ij,nj->n", x, q, x) - x @ b, x @ q - b

    last = run(adam(objective, np.zeros((1, 5), np.float32), max_iter=3000, lr=0.05))
    np.testing.assert_allclose(last.x[0], np.linalg.solve(q, b), atol=1e-2)

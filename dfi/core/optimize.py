"""Batched optimisers on the array's device: L-BFGS with a line search, and Adam.

Both minimise N independent objectives at once (one per image, e.g. one per α of a
sweep). ``objective(x, rows)`` gets the rows of the batch to evaluate and returns their
values (n,) and gradients (n, D); each image keeps its own L-BFGS history, step size and
stopping state, and an image that has converged is no longer evaluated. Pixel bounds are
respected by projection (projected L-BFGS with an Armijo backtracking line search on the
projected path). The optimisers know nothing of VGG: they see flat arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

from .backend import get_array_module, sum_of_products

Objective = Callable[[object, object], tuple[object, object]]


@dataclass
class Step:
    """State after one iteration. ``x`` and ``f`` live on the optimiser's device and are not
    changed by later iterations; ``active`` is a host array (reading it costs no sync)."""

    iteration: int
    x: object           # (N, D) current iterate
    f: object           # (N,) current objective values
    active: np.ndarray  # (N,) bool, on the host: still being optimised
    evaluations: int    # objective rows evaluated so far (sum over images)
    f_host: Optional[np.ndarray] = None  # (N,) ``f`` on the host, from the iteration's one transfer


def _host_values(f, where: str) -> np.ndarray:
    """``f`` on the host (one wait), checked to be finite."""
    values = np.asarray(f.tolist(), dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise FloatingPointError(f"the loss is not finite {where} (image {int(np.argmax(bad))}); "
                                 "check the input image, the weights and --tv-weight")
    return values


def _read(xp, accepted, small, values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two (n,) bool arrays and the (n,) values on the host, in one transfer."""
    flags_a, flags_s, host = np.asarray(xp.stack([accepted, small, values]).tolist(), dtype=np.float64)
    return flags_a > 0.5, flags_s > 0.5, host


def _project(xp, x, lower, upper):
    if lower is None and upper is None:
        return x
    return xp.clip(x, lower, upper)


class _RowIndex:
    """Device copies of host row lists, made once per distinct list (an upload waits for the
    device, so it happens only when the set of active images changes)."""

    def __init__(self, xp):
        self.xp, self.cache = xp, {}

    def __call__(self, rows: np.ndarray):
        key = rows.tobytes()
        if key not in self.cache:
            self.cache[key] = self.xp.asarray(rows)
        return self.cache[key]


def _rowdot(a, b):
    """Σ_j a[i, j]·b[i, j] per row (:func:`~dfi.core.backend.sum_of_products`: on NumPy
    without an (n, D) temporary, on CuPy without einsum's copies and 1×1 GEMMs)."""
    return sum_of_products(a, b, axis=1)


def lbfgs(objective: Objective, x0, *, max_iter: int = 100, history: int = 10,
          ftol: float = 1e-5, lower=None, upper=None, c1: float = 1e-4,
          max_backtracks: int = 12) -> Iterator[Step]:
    """Limited-memory BFGS (Nocedal 1980) for a batch of independent problems.

    One device→host transfer per iteration: after the unit step is evaluated, a single
    small array tells which images accepted it and which converged; only images whose
    step was rejected (rare) cost a transfer per backtracking step.

    Args:
        objective: ``(x_rows (n, D), rows (n,) int on the device) -> (f (n,), g (n, D))``.
        x0: (N, D) float32 start, on the device to use.
        max_iter: iteration cap per image.
        history: number of (s, y) pairs kept per image.
        ftol: stop an image when its relative decrease in one iteration is below this.
        lower, upper: scalars or arrays broadcastable to (N, D): box bounds.
        c1: Armijo sufficient-decrease constant.

    Yields:
        :class:`Step` after every iteration (the last one when every image stopped).
    """
    xp = get_array_module(x0)
    n_images, dim = x0.shape
    device_rows = _RowIndex(xp)
    all_rows = np.arange(n_images)
    x = _project(xp, x0.astype(xp.float32, copy=True), lower, upper)
    f, g = objective(x, device_rows(all_rows))
    evaluations = n_images
    f_host = _host_values(f, "at the start")
    s_hist = xp.zeros((history, n_images, dim), dtype=xp.float32)
    y_hist = xp.zeros_like(s_hist)
    rho = xp.zeros((history, n_images), dtype=xp.float32)  # 0 marks an empty/invalid slot
    gamma = xp.ones(n_images, dtype=xp.float32)
    has_pair = xp.zeros(n_images, dtype=bool)
    active = np.ones(n_images, dtype=bool)  # host
    lo = -math.inf if lower is None else lower
    hi = math.inf if upper is None else upper
    slot = 0
    for iteration in range(1, max_iter + 1):
        act = np.flatnonzero(active)
        if act.size == 0:
            break
        act_d = device_rows(act)  # the rows, for the objective
        sel = slice(None) if act.size == n_images else act_d  # for indexing: views while all are active
        ga, xa, fa = g[sel], x[sel], f[sel]
        # two-loop recursion, newest pair first, per image
        q = ga.copy()
        alphas = []
        for k in range(history):
            j = (slot - 1 - k) % history
            a = rho[j, sel] * _rowdot(s_hist[j, sel], q)
            q -= a[:, None] * y_hist[j, sel]
            alphas.append((j, a))
        q *= gamma[sel][:, None]
        for j, a in reversed(alphas):
            b = rho[j, sel] * _rowdot(y_hist[j, sel], q)
            q += (a - b)[:, None] * s_hist[j, sel]
        # no curvature yet: move the largest component by one unit
        scale = 1.0 / xp.maximum(xp.max(xp.abs(ga), axis=1), 1e-12)
        direction = xp.where(has_pair[sel][:, None], -q, -ga * scale[:, None])
        if lower is not None or upper is not None:  # do not push against active bounds
            blocked = ((xa <= lo) & (direction < 0)) | ((xa >= hi) & (direction > 0))
            direction = xp.where(blocked, 0, direction)
        uphill = _rowdot(ga, direction) >= 0  # lost descent: restart from steepest descent
        direction = xp.where(uphill[:, None], -ga, direction)
        rho[:, sel] = xp.where(uphill[None], 0, rho[:, sel])
        has_pair[sel] = has_pair[sel] & ~uphill
        # the unit step for every active image, then one transfer: accepted? converged? its value
        x_new = _project(xp, xa + direction, lower, upper)
        f_new, g_new = objective(x_new, act_d)
        evaluations += act.size
        ok = xp.isfinite(f_new) & (f_new <= fa + c1 * _rowdot(ga, x_new - xa))
        rel = (fa - f_new) / xp.maximum(xp.maximum(xp.abs(fa), xp.abs(f_new)), 1e-30)
        ok_host, converged, trial_f = _read(xp, ok, rel <= ftol, f_new)
        f_act = np.where(ok_host, trial_f, f_host[act])  # each image's value, as it ends this iteration
        stalled = np.zeros(act.size, dtype=bool)
        pending = np.flatnonzero(~ok_host)
        step = 1.0
        for _ in range(max_backtracks if pending.size else 0):  # Armijo backtracking
            step *= 0.5
            pend_d = device_rows(pending)
            trial = _project(xp, xa[pend_d] + step * direction[pend_d], lower, upper)
            f_t, g_t = objective(trial, act_d[pend_d])
            evaluations += pending.size
            ok_t = xp.isfinite(f_t) & (f_t <= fa[pend_d] + c1 * _rowdot(ga[pend_d], trial - xa[pend_d]))
            rel_t = (fa[pend_d] - f_t) / xp.maximum(xp.maximum(xp.abs(fa[pend_d]), xp.abs(f_t)), 1e-30)
            x_new[pend_d] = xp.where(ok_t[:, None], trial, x_new[pend_d])
            f_new[pend_d] = xp.where(ok_t, f_t, f_new[pend_d])
            g_new[pend_d] = xp.where(ok_t[:, None], g_t, g_new[pend_d])
            accepted, small, trial_f = _read(xp, ok_t, rel_t <= ftol, f_t)
            converged[pending[accepted]] = small[accepted]
            f_act[pending[accepted]] = trial_f[accepted]
            pending = pending[~accepted]
            if pending.size == 0:
                break
        if pending.size:  # images whose search failed keep their point and stop
            stalled[pending] = True
            pend_d = device_rows(pending)
            x_new[pend_d], f_new[pend_d], g_new[pend_d] = xa[pend_d], fa[pend_d], ga[pend_d]
        s = x_new - xa
        y = g_new - ga
        sy = _rowdot(s, y)
        yy = _rowdot(y, y)
        good = sy > 1e-10 * xp.maximum(yy, 1e-30)  # (a stalled image has s = 0: never good)
        s_hist[slot, sel] = s
        y_hist[slot, sel] = y
        rho[slot, sel] = xp.where(good, 1.0 / xp.where(good, sy, 1.0), 0).astype(xp.float32)
        gamma[sel] = xp.where(good, sy / xp.maximum(yy, 1e-30), gamma[sel]).astype(xp.float32)
        has_pair[sel] = has_pair[sel] | good
        slot = (slot + 1) % history
        x, f, g = x.copy(), f.copy(), g  # each step's x and f stay as they were (Progress keeps them)
        x[sel], f[sel], g[sel] = x_new, f_new, g_new
        active[act] = ~(stalled | converged)
        f_host = f_host.copy()
        f_host[act] = f_act
        yield Step(iteration, x, f, active.copy(), evaluations, f_host)


def adam(objective: Objective, x0, *, max_iter: int = 100, lr: float = 1.0,
         beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
         lower=None, upper=None) -> Iterator[Step]:
    """Adam (Kingma & Ba, 2015) for a batch of problems; ``lr`` is in input units."""
    xp = get_array_module(x0)
    n_images = x0.shape[0]
    rows = xp.arange(n_images)
    x = _project(xp, x0.astype(xp.float32, copy=True), lower, upper)
    m = xp.zeros_like(x)
    v = xp.zeros_like(x)
    active = np.ones(n_images, dtype=bool)  # Adam runs every image to the end
    f, g = objective(x, rows)
    _host_values(f, "at the start")
    for iteration in range(1, max_iter + 1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1 ** iteration)
        v_hat = v / (1 - beta2 ** iteration)
        x = _project(xp, x - lr * m_hat / (xp.sqrt(v_hat) + eps), lower, upper)
        f, g = objective(x, rows)
        f_host = _host_values(f, f"at iteration {iteration}")  # the iteration's one wait
        yield Step(iteration, x, f, active, iteration * n_images + n_images, f_host)


def run(steps: Iterator[Step]) -> Optional[Step]:
    """Exhaust an optimiser; return its last step."""
    last = None
    for last in steps:
        pass
    return last

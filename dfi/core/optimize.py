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

from .backend import get_array_module

Objective = Callable[[object, object], tuple[object, object]]


@dataclass
class Step:
    """State after one iteration. Arrays live on the optimiser's device."""

    iteration: int
    x: object           # (N, D) current iterate
    f: object           # (N,) current objective values
    active: object      # (N,) bool: still being optimised
    evaluations: int    # objective rows evaluated so far (sum over images)


def _check_finite(xp, f, where: str) -> None:
    bad = ~xp.isfinite(f)
    if bool(bad.any()):
        raise FloatingPointError(f"the loss is not finite {where} (image {int(xp.argmax(bad))}); "
                                 "check the input image, the weights and --tv-weight")


def _project(xp, x, lower, upper):
    if lower is None and upper is None:
        return x
    return xp.clip(x, lower, upper)


def lbfgs(objective: Objective, x0, *, max_iter: int = 100, history: int = 10,
          ftol: float = 1e-5, lower=None, upper=None, c1: float = 1e-4,
          max_backtracks: int = 12) -> Iterator[Step]:
    """Limited-memory BFGS (Nocedal 1980) for a batch of independent problems.

    Args:
        objective: ``(x_rows (n, D), rows (n,) int) -> (f (n,), g (n, D))``.
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
    rows = xp.arange(n_images)
    x = _project(xp, x0.astype(xp.float32, copy=True), lower, upper)
    f, g = objective(x, rows)
    evaluations = n_images
    _check_finite(xp, f, "at the start")
    s_hist = xp.zeros((history, n_images, dim), dtype=xp.float32)
    y_hist = xp.zeros_like(s_hist)
    rho = xp.zeros((history, n_images), dtype=xp.float32)  # 0 marks an empty/invalid slot
    gamma = xp.ones(n_images, dtype=xp.float32)
    has_pair = xp.zeros(n_images, dtype=bool)
    active = xp.ones(n_images, dtype=bool)
    slot = 0
    for iteration in range(1, max_iter + 1):
        act = xp.flatnonzero(active)
        if act.size == 0:
            break
        ga = g[act]
        # two-loop recursion, newest pair first, per image
        q = ga.copy()
        alphas = []
        for k in range(history):
            j = (slot - 1 - k) % history
            a = rho[j, act] * xp.sum(s_hist[j, act] * q, axis=1)
            q -= a[:, None] * y_hist[j, act]
            alphas.append((j, a))
        q *= gamma[act][:, None]
        for j, a in reversed(alphas):
            b = rho[j, act] * xp.sum(y_hist[j, act] * q, axis=1)
            q += (a - b)[:, None] * s_hist[j, act]
        direction = -q
        # first step (no curvature yet): move the largest component by one unit
        first = ~has_pair[act]
        if bool(first.any()):
            scale = 1.0 / xp.maximum(xp.max(xp.abs(ga), axis=1), 1e-12)
            direction = xp.where(first[:, None], -ga * scale[:, None], direction)
        xa = x[act]
        if lower is not None or upper is not None:  # do not push against active bounds
            lo = -math.inf if lower is None else lower
            hi = math.inf if upper is None else upper
            blocked = ((xa <= lo) & (direction < 0)) | ((xa >= hi) & (direction > 0))
            direction = xp.where(blocked, 0, direction)
        slope = xp.sum(ga * direction, axis=1)
        uphill = slope >= 0  # lost descent: restart from steepest descent
        if bool(uphill.any()):
            direction = xp.where(uphill[:, None], -ga, direction)
            rho[:, act[uphill]] = 0
            has_pair[act[uphill]] = False
        # Armijo backtracking on the projected path, only for images still searching
        step = xp.ones(act.size, dtype=xp.float32)
        x_new, f_new, g_new = xa.copy(), f[act].copy(), ga.copy()
        pending = xp.arange(act.size)
        for _ in range(max_backtracks):
            trial = _project(xp, xa[pending] + step[pending, None] * direction[pending], lower, upper)
            f_t, g_t = objective(trial, act[pending])
            evaluations += int(pending.size)
            decrease = c1 * xp.sum(ga[pending] * (trial - xa[pending]), axis=1)
            ok = xp.isfinite(f_t) & (f_t <= f[act][pending] + decrease)
            done = pending[ok]
            x_new[done], f_new[done], g_new[done] = trial[ok], f_t[ok], g_t[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            step[pending] *= 0.5
        # images whose search failed keep their point and stop
        stalled = xp.zeros(act.size, dtype=bool)
        stalled[pending] = True
        s = x_new - xa
        y = g_new - ga
        sy = xp.sum(s * y, axis=1)
        yy = xp.sum(y * y, axis=1)
        good = (sy > 1e-10 * xp.maximum(yy, 1e-30)) & ~stalled
        s_hist[slot, act] = s
        y_hist[slot, act] = y
        rho[slot, act] = xp.where(good, 1.0 / xp.where(good, sy, 1.0), 0).astype(xp.float32)
        gamma[act] = xp.where(good, sy / xp.maximum(yy, 1e-30), gamma[act]).astype(xp.float32)
        has_pair[act] = has_pair[act] | good
        slot = (slot + 1) % history
        f_old = f[act]
        x[act], f[act], g[act] = x_new, f_new, g_new
        rel = (f_old - f_new) / xp.maximum(xp.maximum(xp.abs(f_old), xp.abs(f_new)), 1e-30)
        active[act] = ~(stalled | (rel <= ftol))
        yield Step(iteration, x, f, active, evaluations)
        _check_finite(xp, f, f"at iteration {iteration}")


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
    active = xp.ones(n_images, dtype=bool)
    f, g = objective(x, rows)
    _check_finite(xp, f, "at the start")
    for iteration in range(1, max_iter + 1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1 ** iteration)
        v_hat = v / (1 - beta2 ** iteration)
        x = _project(xp, x - lr * m_hat / (xp.sqrt(v_hat) + eps), lower, upper)
        f, g = objective(x, rows)
        _check_finite(xp, f, f"at iteration {iteration}")
        yield Step(iteration, x, f, active, iteration * n_images + n_images)


def run(steps: Iterator[Step]) -> Optional[Step]:
    """Exhaust an optimiser; return its last step."""
    last = None
    for last in steps:
        pass
    return last

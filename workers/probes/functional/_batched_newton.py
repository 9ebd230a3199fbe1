"""Many small smooth minimisations at once: damped Newton with finite-difference derivatives.

Used to refit every bootstrap resample of the inductive-bias estimator in lockstep
(``noncentral_chi2.mle_refits``): each iteration evaluates every lane's objective at a fixed stencil
of points in ONE call of a vectorised objective, so the per-evaluation Python overhead that made
200 scalar Nelder-Mead fits slow is paid once per iteration for all of them.

Per lane and iteration: the gradient from central differences (``O(h^2)``), the Hessian's diagonal
from the same points and its off-diagonal from forward differences (10 evaluations in 3 dimensions);
the Hessian's eigenvalues are floored (a modified Newton step, always a descent direction), and a
backtracking line search over a few step lengths, evaluated together, keeps the first that lowers
the objective. The fixed point is where the central-difference gradient vanishes, which differs
from the true optimum by ``O(h^2 f''' / f'')``: ``h`` is chosen per coordinate from the curvature
so that this stays far below the tolerance callers need (see ``minimise``).

Pure numpy, no knowledge of what is being fitted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Step lengths tried each iteration (one vectorised call evaluates all of them).
_STEP_LENGTHS = np.array([1.0, 0.5, 0.125, 1.0 / 64])
_EIGEN_FLOOR = 1e-12  # relative to the largest eigenvalue: floors the flat directions' curvature

Objective = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (m, d) points, (m,) lanes -> (m,) values


def minimise(
    objective: Objective,
    lanes: int,
    x0: np.ndarray,
    h: np.ndarray,
    *,
    max_step: np.ndarray | None = None,
    decrement_tol: float = 1e-12,
    max_iter: int = 40,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise ``lanes`` independent objectives from ``x0``.

    Args:
        objective: ``objective(points, lane_of_point)``: ``(m, d)`` points and the ``(m,)`` lane each
            belongs to -> ``(m,)`` values (``inf`` where undefined). One call per stencil and one
            per line search, over every active lane.
        lanes: number of independent problems.
        x0: ``(lanes, d)`` or ``(d,)`` starting points.
        h: ``(lanes, d)`` or ``(d,)`` finite-difference steps.
        max_step: ``(d,)`` largest move per coordinate in one iteration (a trust region: where the
            curvature is nearly flat, a Newton step can be arbitrarily long); default unbounded.
        decrement_tol: a lane has converged when its Newton decrement ``g^T H^-1 g`` (the predicted
            decrease, times 2) is below this.
        max_iter: iterations before giving up on a lane.

    Returns:
        ``(x, value, converged)``: ``(lanes, d)`` minimisers, ``(lanes,)`` objective values and a
        boolean mask; a lane whose objective is not finite at ``x0`` is returned unconverged at ``x0``.
    """
    d = np.shape(x0)[-1]
    x = np.broadcast_to(np.asarray(x0, dtype=np.float64), (lanes, d)).copy()
    steps = np.broadcast_to(np.asarray(h, dtype=np.float64), (lanes, d))
    stencil = _stencil(d)  # (10, d) in units of h
    all_lanes = np.arange(lanes)
    value = objective(x, all_lanes)
    converged = np.zeros(lanes, dtype=bool)
    active = np.isfinite(value)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xa, ha = x[idx], steps[idx]
        points = xa[:, None, :] + stencil[None, :, :] * ha[:, None, :]
        values = objective(points.reshape(-1, d), np.repeat(idx, stencil.shape[0])).reshape(idx.size, -1)
        values[:, 0] = value[idx]
        gradient, hessian = _derivatives(values, ha, d)
        ok = np.all(np.isfinite(gradient), axis=1) & np.all(np.isfinite(hessian), axis=(1, 2))
        direction, decrement = _newton_direction(np.where(ok[:, None], gradient, 0.0),
                                                 np.where(ok[:, None, None], hessian, np.eye(d)))
        done = ok & (decrement < decrement_tol)
        converged[idx[done]] = True
        active[idx[done | ~ok]] = False
        move = ok & ~done
        if not np.any(move):
            continue
        midx = idx[move]
        step = direction[move]
        if max_step is not None:
            step = step / np.maximum(1.0, np.max(np.abs(step) / max_step, axis=1, keepdims=True))
        trials = x[midx, None, :] + _STEP_LENGTHS[None, :, None] * step[:, None, :]
        trial_values = objective(trials.reshape(-1, d), np.repeat(midx, trials.shape[1])).reshape(midx.size, -1)
        better = trial_values < value[midx, None]
        has_better = np.any(better, axis=1)
        first = np.argmax(better, axis=1)
        chosen = midx[has_better]
        x[chosen] = trials[has_better, first[has_better]]
        value[chosen] = trial_values[has_better, first[has_better]]
        # No step lowers the objective: at float resolution of the minimum already, or stuck.
        stuck = midx[~has_better]
        converged[stuck] = decrement[move][~has_better] < 1e3 * decrement_tol
        active[stuck] = False
    return x, value, converged


def _stencil(d: int) -> np.ndarray:
    """Centre, +-e_i, and e_i + e_j (i < j): enough for a central gradient, the Hessian's diagonal
    and a forward off-diagonal."""
    rows = [np.zeros(d)]
    for i in range(d):
        e = np.zeros(d)
        e[i] = 1.0
        rows += [e, -e]
    for i in range(d):
        for j in range(i + 1, d):
            e = np.zeros(d)
            e[i] = e[j] = 1.0
            rows.append(e)
    return np.array(rows)


def _derivatives(values: np.ndarray, h: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    centre = values[:, 0]
    plus, minus = values[:, 1 : 2 * d + 1 : 2], values[:, 2 : 2 * d + 1 : 2]
    gradient = (plus - minus) / (2.0 * h)
    hessian = np.zeros((values.shape[0], d, d))
    diag = (plus - 2.0 * centre[:, None] + minus) / (h * h)
    hessian[:, np.arange(d), np.arange(d)] = diag
    k = 2 * d + 1
    for i in range(d):
        for j in range(i + 1, d):
            mixed = (values[:, k] - plus[:, i] - plus[:, j] + centre) / (h[:, i] * h[:, j])
            hessian[:, i, j] = hessian[:, j, i] = mixed
            k += 1
    return gradient, hessian


def _newton_direction(gradient: np.ndarray, hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Modified Newton step ``-H+^-1 g`` (eigenvalues floored, absolute values: a descent
    direction even where H is indefinite) and the decrement ``g^T H+^-1 g``."""
    eigenvalues, vectors = np.linalg.eigh(hessian)
    top = np.max(np.abs(eigenvalues), axis=1, keepdims=True)
    floored = np.maximum(np.abs(eigenvalues), np.maximum(top * _EIGEN_FLOOR, 1e-300))
    projected = np.einsum("lji,lj->li", vectors, gradient)
    direction = -np.einsum("lij,lj->li", vectors, projected / floored)
    decrement = np.sum(projected * projected / floored, axis=1)
    return direction, decrement


def curvature_steps(
    objective: Objective, x0: np.ndarray, h0: np.ndarray, *, relative: float = 1e-4,
    smallest: float = 1e-8, largest: float = 0.01,
) -> np.ndarray:
    """Finite-difference steps ``relative / sqrt(f''_ii)`` per coordinate, from second differences
    with steps ``h0`` at the single point ``x0``: a step that small against the curvature's own
    length scale keeps the central-difference gradient's bias (``h^2 f''' / 6``) negligible, and
    large enough that float noise in ``f`` does not dominate. Clipped to ``[smallest, largest]``
    (a flat direction gets ``largest``)."""
    x0 = np.asarray(x0, dtype=np.float64)
    d = x0.size
    points = np.vstack([x0, x0 + np.diag(h0), x0 - np.diag(h0)])
    values = objective(points, np.zeros(points.shape[0], dtype=np.int64))
    diag = (values[1 : d + 1] - 2.0 * values[0] + values[d + 1 :]) / (np.asarray(h0) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = relative / np.sqrt(np.abs(diag))
    return np.clip(np.where(np.isfinite(steps), steps, largest), smallest, largest)

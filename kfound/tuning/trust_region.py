"""The trust-region step of a quadratic model: a least-squares fit and a box-bounded solve.

Independent of KerasTuner: `LIPOOracle` fits `fit_quadratic` to its best trials'
coordinates and proposes `trust_region_step`'s maximizer, as dlib's `find_max_global` does.

Reference:
    Nocedal, J. and Wright, S. J. "Numerical Optimization", 2nd ed., Springer 2006, chapter
    4 (trust-region methods; §4.3, the exact subproblem).
"""

import math

import numpy as np


def fit_quadratic(x, y):
    """The least-squares quadratic `q(x) = 0.5 x'Hx + g'x + c` through rows `x` (n, d).

    With exactly `(d + 1) (d + 2) / 2` points in general position it interpolates them.
    Returns `(H, g, c)`.
    """
    n, d = x.shape
    rows, cols = np.triu_indices(d)
    features = np.concatenate([np.ones((n, 1)), x, x[:, rows] * x[:, cols]], axis=1)
    coef = np.linalg.lstsq(features, y, rcond=None)[0]
    hessian = np.zeros((d, d))
    hessian[rows, cols] = coef[d + 1:]
    return hessian + hessian.T, coef[1:d + 1], coef[0]


def trust_region_step(hessian, gradient, radius, lower, upper):
    """The step `p` maximizing `q(p) = 0.5 p'Hp + g'p` with `||p|| <= radius`, in a box.

    The exact trust-region subproblem (Nocedal & Wright, "Numerical Optimization",
    2006, §4.3) in the ball (`_ball_step`); where its solution leaves the box
    `[lower, upper]`, a coordinate that left is fixed at its bound and the
    subproblem is solved again in the others, with what is left of the radius: one
    coordinate at a time, the one whose bound the step crosses first (an active-set
    method). Returns `(p, q(p))`.
    """
    d = len(gradient)
    lower, upper = np.broadcast_to(lower, (d,)), np.broadcast_to(upper, (d,))
    p, free = np.zeros(d), np.ones(d, dtype=bool)
    for _ in range(d):
        fixed = ~free
        rest = radius**2 - p[fixed] @ p[fixed]
        if rest <= 0:
            break
        p[free] = _ball_step(hessian[np.ix_(free, free)],
                             gradient[free] + hessian[np.ix_(free, fixed)] @ p[fixed],
                             math.sqrt(rest))
        out = free & ((p < lower) | (p > upper))
        if not out.any():
            break
        # Fix the coordinate whose bound the step from 0 crosses first.
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = np.where(out, np.where(p > upper, upper, lower) / p, np.inf)
        first = int(np.argmin(reach))
        p[first] = upper[first] if p[first] > upper[first] else lower[first]
        free[first] = False
        if not free.any():
            break
    p = np.clip(p, lower, upper)
    return p, 0.5 * p @ hessian @ p + gradient @ p


def _ball_step(hessian, gradient, radius):
    """`p = (lambda I - H)^-1 g` for the smallest `lambda >= 0` that keeps `lambda I - H`
    positive semi-definite and `p` in the ball, found by bisection in H's eigenbasis,
    with the "hard case" completed along the most positive curvature."""
    curvature, basis = np.linalg.eigh(-hessian)  # Minimizing -q: 0.5 p'(-H)p - g'p.
    slope = basis.T @ gradient

    def step(shift):
        # A direction without slope takes no step, even at zero curvature (the hard case).
        with np.errstate(divide="ignore", invalid="ignore"):
            return basis @ np.where(slope == 0, 0.0, slope / (curvature + shift))

    if curvature[0] > 0 and np.linalg.norm(step(0.0)) <= radius:
        p = step(0.0)
    else:
        low = max(0.0, -curvature[0])
        high = low + np.linalg.norm(gradient) / radius
        for _ in range(100):
            mid = 0.5 * (low + high)
            if np.linalg.norm(step(mid)) > radius:
                low = mid
            else:
                high = mid
        p = step(high) if high > max(0.0, -curvature[0]) else np.zeros_like(gradient)
        if curvature[0] < 0:  # The hard case: on to the boundary, along q's largest curvature.
            extra = radius**2 - p @ p
            p = p + np.sqrt(max(extra, 0.0)) * basis[:, 0]
    return p

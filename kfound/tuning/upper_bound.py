"""dlib's upper bound of a function from its samples: a slope per coordinate, a noise per sample."""

from typing import NamedTuple

import numpy as np
from scipy import optimize

# A pairwise constraint counts as violated by more than this fraction of its target
# (absolutely, for targets below 1): the solver's rounding is far smaller.
_VIOLATION_TOLERANCE = 1e-9


class UpperBound(NamedTuple):
    """The fitted bound `U(x) = min_i f(x_i) + sqrt(noise_i + sum_d slopes_d * z_d(x, x_i)^2)`.

    `z_d` is coordinate `d`'s difference divided by `scale_d` for a numeric coordinate, and
    for a categorical one 0 when the two points agree and 1 when they differ.
    """

    points: np.ndarray  # (n, d) the samples' coordinates
    scores: np.ndarray  # (n,) the samples' values
    categorical: np.ndarray  # (d,) booleans, the coordinates that are categories
    scale: np.ndarray  # (d,) the numeric coordinates' spread among the samples (1 if none)
    slopes: np.ndarray  # (d,) the squared Lipschitz slope of each coordinate, >= 0
    noise: np.ndarray  # (n,) each sample's noise term, >= 0


def fit_upper_bound(points, scores, categorical, relative_noise_magnitude=0.001):
    """The tightest bound of dlib's form above every sample (dlib's `upper_bound_function`).

    AdaLIPO's bound, `min_i f(x_i) + k ||x - x_i||`, has one slope for every direction,
    and no slack: a single jump of `f`, or noise, makes `k` huge, and the bound is
    then vacuous (its maximizer is merely the point farthest from every sample). dlib's
    form gives each coordinate its own squared slope `m_d` and each sample a noise term
    `s_i`, fitted by the quadratic program

        min  sum_d m_d^2 + sum_i (s_i / relative_noise_magnitude)^2
        s.t. U(x_j) >= f(x_j) for every sample j,  m >= 0,  s >= 0,

    on coordinates divided by their spread among the samples (dlib normalizes them
    likewise). It is solved exactly, as a least-distance program (Lawson & Hanson 1974,
    ch. 23: `min ||v||` subject to `G v >= h` is one nonnegative least-squares problem,
    `scipy.optimize.nnls`) over a working set of the `n (n - 1) / 2` pairwise
    constraints: each sample's strongest constraint first, then each sample's most
    violated one, until none is violated. The noise terms are finally set to the
    smallest that the slopes allow,
    `s_i = max(0, max_{j: f(x_j) > f(x_i)} (f(x_j) - f(x_i))^2 - m . z(x_j, x_i)^2)`,
    so that the bound passes through or above every sample whatever the rounding.

    Args:
        points: `(n, d)` coordinates of the samples.
        scores: `(n,)` the samples' values (the bound is an upper bound: maximization).
        categorical: `(d,)` booleans, the coordinates that are categories.
        relative_noise_magnitude: how much cheaper a sample's noise term is than a slope,
            dlib's parameter. Defaults to `0.001` (dlib's). Must be > 0.

    Returns:
        An `UpperBound`.
    """
    points = np.asarray(points, dtype="float64")
    scores = np.asarray(scores, dtype="float64")
    categorical = np.asarray(categorical, dtype=bool)
    scale = np.ones(points.shape[1])
    spread = points[:, ~categorical].std(axis=0)
    scale[~categorical] = np.where(spread > 0, spread, 1.0)
    squared = _squared_differences(points, points, scale, categorical)  # (n, n, d)
    gaps = scores[None, :] - scores[:, None]  # gaps[i, j] = f(x_j) - f(x_i)
    higher = gaps > 0  # the pairs that constrain the noise of the lower sample i
    targets = np.where(higher, gaps**2, 0.0)
    slopes = _fit_slopes(squared, targets, higher, relative_noise_magnitude)
    deficits = np.where(higher, targets - squared @ slopes, 0.0)
    return UpperBound(points, scores, categorical, scale, slopes,
                      np.maximum(deficits.max(axis=1), 0.0))


def _fit_slopes(squared, targets, higher, relative_noise_magnitude):
    """The slopes of `fit_upper_bound`'s program, over a growing working set of pairs."""
    n, _, d = squared.shape
    rows = np.nonzero(higher.any(axis=1))[0]  # the samples with a higher one
    slopes = np.zeros(d)
    if not len(rows):
        return slopes
    # The working set, as (lower sample, higher sample) pairs: each strongest first.
    working = {(int(i), int(targets[i].argmax())) for i in rows}
    r = relative_noise_magnitude
    while True:
        pairs = np.array(sorted(working))
        lower, upper = pairs[:, 0], pairs[:, 1]
        # G v >= h for v = (m, s / r): m . z^2 + r (s_i / r) >= (f_j - f_i)^2.
        g = np.zeros((len(pairs), d + n))
        g[:, :d] = squared[lower, upper]
        g[np.arange(len(pairs)), d + lower] = r
        e = np.vstack([g.T, targets[lower, upper][None, :]])
        f = np.zeros(d + n + 1)
        f[-1] = 1.0
        u, _ = optimize.nnls(e, f, maxiter=50 * (d + n + len(pairs)))
        residual = e @ u - f
        solution = -residual[:-1] / residual[-1]
        slopes = np.maximum(solution[:d], 0.0)
        noise = np.maximum(solution[d:], 0.0) * r
        violation = np.where(higher, targets - squared @ slopes - noise[:, None], -np.inf)
        worst = violation.argmax(axis=1)
        added = {(int(i), int(worst[i])) for i in rows
                 if violation[i, worst[i]]
                 > _VIOLATION_TOLERANCE * max(targets[i, worst[i]], 1.0)}
        if added <= working:
            return slopes
        working |= added


def upper_bounds(candidates, bound):
    """`bound`'s value `U(x)` at each row of `candidates` (`(m, d)`): an `(m,)` array."""
    candidates = np.asarray(candidates, dtype="float64") / bound.scale
    points = bound.points / bound.scale
    categorical = bound.categorical
    numeric, slopes = ~categorical, bound.slopes[~categorical]
    # sum_d m_d (c_d - p_d)^2, expanded into matrix products over the numeric coordinates.
    c, p = candidates[:, numeric], points[:, numeric]
    weighted = ((c**2) @ slopes)[:, None] + ((p**2) @ slopes)[None, :] - 2 * (c * slopes) @ p.T
    weighted = np.maximum(weighted, 0.0)
    for j in np.nonzero(categorical)[0]:
        weighted += bound.slopes[j] * (candidates[:, j, None] != points[None, :, j])
    return (bound.scores[None, :] + np.sqrt(bound.noise[None, :] + weighted)).min(axis=1)


def _squared_differences(a, b, scale, categorical):
    """`(len(a), len(b), d)`: per coordinate, the squared scaled difference or the mismatch."""
    diff = (a[:, None, :] - b[None, :, :]) / scale
    squared = diff**2
    squared[:, :, categorical] = diff[:, :, categorical] != 0
    return squared

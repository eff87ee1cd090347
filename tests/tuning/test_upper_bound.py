"""dlib's upper bound: above every sample, and the optimum of dlib's quadratic program."""

import numpy as np
import pytest
from scipy import optimize

from kfound.tuning.upper_bound import fit_upper_bound, upper_bounds


def _samples(n, d, f, seed=0):
    points = np.random.default_rng(seed).random((n, d))
    return points, np.array([f(p) for p in points])


def test_the_bound_is_above_every_sample():
    points, scores = _samples(40, 3, lambda p: np.sin(7 * p[0]) + (p[1] > 0.5) - p[2] ** 2)
    bound = fit_upper_bound(points, scores, [False, False, False])
    assert np.all(upper_bounds(points, bound) >= scores - 1e-9)
    assert np.all(bound.slopes >= 0) and np.all(bound.noise >= 0)


def test_it_solves_dlibs_quadratic_program():
    # The full program over slopes and noise terms, solved directly on a small sample.
    points, scores = _samples(8, 2, lambda p: 3 * p[0] + np.cos(5 * p[1]), seed=1)
    r = 0.01
    bound = fit_upper_bound(points, scores, [False, False], relative_noise_magnitude=r)
    z = (points[:, None, :] - points[None, :, :]) / points.std(axis=0)
    pairs = [(i, j) for i in range(8) for j in range(8) if scores[j] > scores[i]]

    def constraint(v):  # v = (slopes, noise / r); sample i's bound reaches sample j's value
        return np.array([r * v[2 + i] + z[i, j] ** 2 @ v[:2] - (scores[j] - scores[i]) ** 2
                         for i, j in pairs])

    direct = optimize.minimize(
        lambda v: v @ v, np.ones(10), method="SLSQP",
        constraints=[{"type": "ineq", "fun": constraint}], bounds=[(0, None)] * 10,
        options={"ftol": 1e-12, "maxiter": 500})
    ours = bound.slopes @ bound.slopes + (bound.noise / r) @ (bound.noise / r)
    assert direct.success
    assert ours == pytest.approx(direct.fun, rel=1e-3)
    assert bound.slopes == pytest.approx(direct.x[:2], rel=1e-2, abs=1e-3)


def test_each_coordinate_gets_its_own_slope():
    points, scores = _samples(30, 2, lambda p: 10 * p[0] + 0.1 * p[1])
    bound = fit_upper_bound(points, scores, [False, False])
    assert bound.slopes[0] > 10 * bound.slopes[1]


def test_noise_terms_absorb_a_jump_that_would_make_one_slope_vacuous():
    # f(x) = x with a jump of 1 at 0.5, sampled on both sides of it 0.001 apart.
    points = np.array([[0.0], [0.2], [0.4999], [0.5009], [0.8], [1.0]])
    scores = points[:, 0] + (points[:, 0] > 0.5)
    bound = fit_upper_bound(points, scores, [False])
    grid = np.linspace(0, 1, 101)[:, None]
    gap = upper_bounds(grid, bound) - (grid[:, 0] + (grid[:, 0] > 0.5))
    lipschitz = np.abs(np.diff(scores) / np.diff(points[:, 0])).max()  # AdaLIPO's k, ~1000
    assert lipschitz > 900
    assert gap.max() < 1.5  # AdaLIPO's bound reaches ~100 between the samples


def test_categorical_coordinates_count_a_mismatch():
    points = np.array([[0.0, 0], [0.0, 1], [0.5, 0], [0.5, 1], [1.0, 0], [1.0, 1]])
    scores = points[:, 0] + 2 * points[:, 1]
    bound = fit_upper_bound(points, scores, [False, True])
    assert bound.scale[1] == 1.0
    assert np.all(upper_bounds(points, bound) >= scores - 1e-9)
    assert bound.slopes[1] == pytest.approx(4.0, rel=1e-3)  # the jump of 2, squared


def test_constant_scores_give_a_flat_bound():
    points, _ = _samples(5, 2, lambda p: 0.0)
    bound = fit_upper_bound(points, np.zeros(5), [False, False])
    assert np.all(bound.slopes == 0) and np.all(bound.noise == 0)

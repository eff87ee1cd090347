"""The trust-region step: the quadratic fit and the box-bounded subproblem."""

import math

import numpy as np
import pytest

from kfound.tuning import trust_region


def test_fit_quadratic_recovers_a_quadratic():
    rng = np.random.default_rng(0)
    hessian = np.array([[2.0, -0.5, 0.3], [-0.5, 1.0, 0.0], [0.3, 0.0, -1.5]])
    gradient = np.array([0.1, -0.2, 0.3])
    x = rng.normal(size=(10, 3))  # (d + 1)(d + 2) / 2 points: interpolation.
    y = 0.5 * np.einsum("ni,ij,nj->n", x, hessian, x) + x @ gradient + 4.0
    h, g, c = trust_region.fit_quadratic(x, y)
    np.testing.assert_allclose(h, hessian, atol=1e-8)
    np.testing.assert_allclose(g, gradient, atol=1e-8)
    assert math.isclose(c, 4.0, abs_tol=1e-8)


def _sphere(d, n=20000, seed=0):
    u = np.random.default_rng(seed).normal(size=(n, d))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


@pytest.mark.parametrize("hessian, gradient, radius, inside", [
    ([[-2.0, 0.0], [0.0, -1.0]], [0.2, -0.1], 1.0, True),  # Concave, maximum inside.
    ([[-2.0, 0.0], [0.0, -1.0]], [3.0, -2.0], 0.5, False),  # Concave, maximum outside.
    ([[1.0, 0.3], [0.3, -2.0]], [0.5, 0.5], 0.5, False),  # Indefinite.
    ([[1.0, 0.0], [0.0, -1.0]], [0.0, 0.0], 0.5, False),  # Indefinite, the hard case.
])
def test_trust_region_step_solves_the_subproblem(hessian, gradient, radius, inside):
    hessian, gradient = np.array(hessian), np.array(gradient)
    step, gain = trust_region.trust_region_step(hessian, gradient, radius, -10.0, 10.0)

    def q(p):
        return 0.5 * np.einsum("ni,ij,nj->n", p, hessian, p) + p @ gradient

    assert math.isclose(gain, q(step[None])[0])
    if inside:
        np.testing.assert_allclose(step, np.linalg.solve(hessian, -gradient), atol=1e-9)
    else:
        assert math.isclose(np.linalg.norm(step), radius, rel_tol=1e-6)
    # No point of the ball's boundary (where a non-concave maximum lies) does better.
    assert gain >= q(radius * _sphere(2)).max() - 1e-6


def test_trust_region_step_slides_along_a_bound():
    # The ball's maximizer leaves the box in both coordinates; fixing only the first one
    # crossed (x) and maximizing over y on that bound finds the box's optimum.
    hessian = np.array([[-2.0, 1.0], [1.0, -2.0]])
    gradient = np.array([3.0, 0.5])
    step, _ = trust_region.trust_region_step(hessian, gradient, 1.0, np.array([-1.0, -1.0]),
                                             np.array([0.2, 0.3]))
    # On x = 0.2: dq/dy = -2y + 0.2 + 0.5 = 0 at y = 0.35, past the bound 0.3.
    np.testing.assert_allclose(step, [0.2, 0.3])
    step, _ = trust_region.trust_region_step(hessian, np.array([3.0, -0.5]), 1.0,
                                            np.array([-1.0, -1.0]), np.array([0.2, 0.3]))
    np.testing.assert_allclose(step, [0.2, -0.15])  # -2y + 0.2 - 0.5 = 0.


def test_trust_region_step_stays_in_the_box():
    step, gain = trust_region.trust_region_step(np.array([[-1.0]]), np.array([5.0]), 2.0,
                                                np.array([-0.2]), np.array([0.3]))
    assert step[0] == 0.3 and math.isclose(gain, 0.5 * -0.09 + 1.5)

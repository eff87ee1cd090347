"""The LIPO oracle through KerasTuner's Oracle API, on functions with known optima."""

import math

import keras_tuner as kt
import numpy as np
import pytest

from kfound.tuning import lipo_oracle, tuners
from kfound.tuning.lipo_oracle import LIPOOracle


def test_finds_the_minimum_of_a_1d_function(tmp_path, run_trials):
    hp = kt.HyperParameters()
    hp.Float("x", -3.0, 3.0)
    f = lambda v: abs(v["x"] - 1.234) + 0.1 * math.sin(5 * v["x"]) ** 2  # noqa: E731
    oracle = LIPOOracle(kt.Objective("f", "min"), max_trials=40, hyperparameters=hp, seed=3)
    best = run_trials(oracle, f, 40, tmp_path).get_best_trials()[0]
    assert abs(best.hyperparameters.get("x") - 1.234) < 0.05
    assert len(oracle.trials) == 40


def test_finds_the_maximum_of_a_2d_function_with_log_sampling(tmp_path, run_trials):
    # The optimum sits at lr=1e-3 (log scale) and d=0.25; maximized, as val_accuracy would be.
    hp = kt.HyperParameters()
    hp.Float("lr", 1e-5, 1e-1, sampling="log")
    hp.Float("d", 0.0, 1.0)
    f = lambda v: -((math.log10(v["lr"]) + 3) / 4) ** 2 - (v["d"] - 0.25) ** 2  # noqa: E731
    oracle = LIPOOracle(kt.Objective("f", "max"), max_trials=80, hyperparameters=hp, seed=7)
    best = run_trials(oracle, f, 80, tmp_path).get_best_trials()[0]
    assert best.score > -0.003
    assert abs(math.log10(best.hyperparameters.get("lr")) + 3) < 0.25


def test_choices_are_categorical_and_ints_stay_in_range(tmp_path, run_trials):
    hp = kt.HyperParameters()
    hp.Choice("act", ["relu", "tanh", "gelu"])
    hp.Int("units", 1, 6)
    hp.Boolean("bias")
    f = lambda v: (v["act"] != "tanh") + abs(v["units"] - 4) + (not v["bias"])  # noqa: E731
    oracle = LIPOOracle(kt.Objective("f", "min"), max_trials=36, hyperparameters=hp, seed=2)
    best = run_trials(oracle, f, 36, tmp_path).get_best_trials()[0]
    assert best.score == 0
    values = [t.hyperparameters.values for t in oracle.trials.values()]
    assert all(1 <= v["units"] <= 6 for v in values)
    assert len({tuple(sorted(v.items())) for v in values}) == len(values)  # no duplicates


def test_stops_when_a_discrete_space_is_exhausted(tmp_path, run_trials):
    hp = kt.HyperParameters()
    hp.Choice("a", [1, 2, 3])
    oracle = LIPOOracle(kt.Objective("f", "min"), max_trials=10, hyperparameters=hp, seed=1)
    run_trials(oracle, lambda v: v["a"], 10, tmp_path)
    assert len(oracle.trials) == 3


def test_resumed_oracle_proposes_what_the_uninterrupted_one_would(tmp_path, run_trials):
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    hp.Int("n", 1, 50, sampling="log")
    f = lambda v: (v["x"] - 0.7) ** 2 + 0.01 * v["n"]  # noqa: E731

    def make():
        return LIPOOracle(kt.Objective("f", "min"), max_trials=20, hyperparameters=hp, seed=5)

    straight = run_trials(make(), f, 20, tmp_path / "straight")
    run_trials(make(), f, 8, tmp_path / "resumed")
    resumed = run_trials(make(), f, 12, tmp_path / "resumed", resume=True)
    assert resumed.get_state()["relative_noise_magnitude"] == 0.001
    assert ([t.hyperparameters.values for _, t in sorted(straight.trials.items())]
            == [t.hyperparameters.values for _, t in sorted(resumed.trials.items())])


def test_trust_region_steps_find_a_quadratic_minimum(tmp_path, run_trials):
    # LIPO alone needs hundreds of trials for 1e-6; the quadratic model lands on it.
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    hp.Float("y", -1.0, 1.0)
    f = lambda v: (v["x"] - 0.3) ** 2 + 2 * (v["y"] - 0.2) ** 2 + v["x"] * v["y"]  # noqa: E731
    oracle = LIPOOracle(kt.Objective("f", "min"), max_trials=20, hyperparameters=hp, seed=4)
    best = run_trials(oracle, f, 20, tmp_path).get_best_trials()[0]
    # The minimum: 2(x - 0.3) + y = 0 and 4(y - 0.2) + x = 0.
    x, y = np.linalg.solve([[2.0, 1.0], [1.0, 4.0]], [0.6, 0.8])
    assert best.score - f({"x": x, "y": y}) < 1e-6


def test_the_first_trial_is_the_centre_of_the_space(tmp_path, run_trials):
    hp = kt.HyperParameters()
    hp.Float("lr", 1e-4, 1.0, sampling="log")
    hp.Int("units", 1, 9)
    hp.Choice("act", ["relu", "tanh", "gelu"])
    oracle = LIPOOracle(kt.Objective("f", "min"), max_trials=1, hyperparameters=hp, seed=0)
    oracle = run_trials(oracle, lambda v: 0.0, 1, tmp_path)
    first = next(iter(oracle.trials.values())).hyperparameters
    assert first.get("lr") == pytest.approx(1e-2)
    assert (first.get("units"), first.get("act")) == (5, "tanh")


@pytest.mark.parametrize("tolerance, steps", [(1e-12, range(0, 3)), (0.0, range(10, 30))])
def test_a_converged_trust_region_yields_to_lipo_steps(tmp_path, run_trials, tolerance, steps):
    # The quadratic model is exact: its first step lands on the optimum, and a further
    # step would only repeat it, unless a gain lost in rounding still counts.
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = LIPOOracle(kt.Objective("f", "min"), max_trials=30, hyperparameters=hp, seed=1,
                        trust_region_tolerance=tolerance)
    run_trials(oracle, lambda v: 1 + (v["x"] - 0.3) ** 2, 30, tmp_path)
    assert len(oracle._trust_steps) in steps
    assert oracle.get_best_trials()[0].score == pytest.approx(1.0, abs=1e-12)


def test_trust_region_keeps_the_best_categorical_values():
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    hp.Choice("act", ["relu", "tanh"])
    hp.Boolean("bias")
    oracle = LIPOOracle(kt.Objective("f", "max"), hyperparameters=hp, seed=0)
    space = hp.space
    # Coordinates: x, the act bucket, the bias bucket (1 is True); f peaks at x = 0.4.
    points = np.array([[0.1, 1, 1], [0.3, 1, 1], [0.5, 1, 1], [0.2, 0, 0], [0.6, 0, 1]])
    scores = -((points[:, 0] - 0.4) ** 2) - 0.1 * (points[:, 1] == 0)
    ids = [str(i) for i in range(len(scores))]
    values, step = oracle._trust_region_candidate(space, ids, points, scores)
    assert values["act"] == "tanh" and values["bias"] is True
    assert abs(values["x"] - 0.4) < 1e-9
    assert step["anchor"] == scores.max() and step["gain"] > 0
    assert oracle._trust_region_candidate(space, ids[:2], points[:2], scores[:2]) is None


def test_candidate_coordinates_match_their_values():
    hp = kt.HyperParameters()
    hp.Boolean("b")
    hp.Choice("c", ["x", "y", "z"])
    hp.Choice("o", [8, 16, 32])
    hp.Int("i", 1, 9, step=2)
    hp.Float("f", 1e-4, 1.0, sampling="log")
    space = hp.space
    oracle = LIPOOracle("val_loss", hyperparameters=hp, seed=0)
    probs, coords = oracle._sample(space, np.random.default_rng(0), 200)
    for p, c in zip(probs, coords, strict=True):
        values = oracle._values(space, p)
        assert [lipo_oracle._coordinate(h, values[h.name]) for h in space] == pytest.approx(c)


def test_same_seed_same_trials_other_seed_other_trials(tmp_path, run_trials):
    hp = kt.HyperParameters()
    hp.Float("x", -1.0, 1.0)
    hp.Choice("act", ["relu", "tanh", "gelu"])
    f = lambda v: v["x"] ** 2 + (v["act"] == "relu")  # noqa: E731

    def run(seed, name):
        oracle = LIPOOracle(kt.Objective("f", "min"), max_trials=12, hyperparameters=hp,
                            seed=seed)
        run_trials(oracle, f, 12, tmp_path / name)
        return [t.hyperparameters.values for _, t in sorted(oracle.trials.items())]

    assert run(1, "a") == run(1, "b")
    assert run(1, "a2") != run(2, "c")


@pytest.mark.parametrize("kwargs, match", [
    ({"exploration_probability": 1.5}, r"`exploration_probability` must be in \[0, 1\]. "
                                       r"Received: exploration_probability=1.5"),
    ({"relative_noise_magnitude": 0.0}, r"`relative_noise_magnitude` must be > 0. "
                                        r"Received: relative_noise_magnitude=0.0"),
    ({"trust_region_tolerance": -1.0}, r"`trust_region_tolerance` must be >= 0. "
                                       r"Received: trust_region_tolerance=-1.0"),
    ({"max_candidates": 0},
     r"`max_candidates` must be an integer >= 1. Received: max_candidates=0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LIPOOracle("val_loss", **kwargs)


def test_reload_does_not_rerun_a_trial_that_finished_before_the_kill(tmp_path):
    # KerasTuner saves `oracle.json` inside `end_trial` while the trial is still listed as
    # ongoing; a kill before the next save would make plain KerasTuner run it again.
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = tuners.ResumableLIPOOracle(kt.Objective("f", "min"), max_trials=5,
                                        hyperparameters=hp, seed=1)
    oracle.verbose = 0
    oracle._set_project_dir(str(tmp_path), "p")
    trial = oracle.create_trial("tuner0")
    oracle.update_trial(trial.trial_id, {"f": 1.0})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)  # No save afterwards: as if killed here.
    resumed = tuners.ResumableLIPOOracle(kt.Objective("f", "min"), max_trials=5,
                                         hyperparameters=hp, seed=1)
    resumed._set_project_dir(str(tmp_path), "p")
    resumed.reload()
    assert resumed._retry_queue == []
    assert resumed.end_order == [trial.trial_id]
    assert resumed.create_trial("tuner0").trial_id != trial.trial_id

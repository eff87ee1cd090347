"""KerasTuner's own oracle test cases, run against `LIPOOracle`.

Ported from keras-team/keras-tuner (`keras_tuner/tuners/bayesian_test.py`,
`keras_tuner/engine/hyperparameters/hyperparameters_test.py`'s
`test_build_with_conditional_scope`), with the Bayesian oracle replaced by LIPO, plus
the reverse-log boundary.
"""

import math

import keras_tuner as kt
import numpy as np
from keras_tuner.engine import hyperparameters as hp_module
from keras_tuner.engine import trial as trial_module

from kfound.tuning import lipo_oracle
from kfound.tuning.lipo_oracle import LIPOOracle


def _oracle(tmp_path, hps=None, direction="max", max_trials=20, seed=1, objective="score"):
    oracle = LIPOOracle(objective=kt.Objective(objective, direction), max_trials=max_trials,
                        hyperparameters=hps, seed=seed)
    oracle.verbose = 0
    oracle._set_project_dir(str(tmp_path), "untitled")
    return oracle


def _mixed_space():
    hps = hp_module.HyperParameters()
    hps.Choice("a", [1, 2], default=1)
    hps.Int("b", 3, 10, default=3)
    hps.Float("c", 0, 1, 0.1, default=0)
    hps.Fixed("d", 7)
    hps.Choice("e", [9, 0], default=9)
    return hps


def test_empty_search_space_proposes_empty_values(tmp_path):
    # Hyperparameters declared inside `run_trial`: the space is empty when asked.
    oracle = _oracle(tmp_path)
    assert oracle.populate_space("0") == {"status": "RUNNING", "values": {}}


def test_hyperparameters_declared_in_run_trial_exhaust_the_space(tmp_path):
    # KerasTuner's test_exhausted_search_space: two Booleans give 4 trials, then stop.
    class MyTuner(kt.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, *args, **kwargs):
            hp = trial.hyperparameters
            return float(hp.Boolean("boolean")) + 2 * float(hp.Boolean("boolean2"))

    tuner = MyTuner(oracle=LIPOOracle(kt.Objective("score", "max"), max_trials=15, seed=1),
                    directory=str(tmp_path))
    tuner.search(verbose=0)
    assert len(tuner.oracle.trials) == 4
    assert tuner.oracle.get_best_trials()[0].score == 3.0


def test_skip_failed_trials(tmp_path):
    class MyTuner(kt.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, *args, **kwargs):
            hp = trial.hyperparameters
            for name in ("b1", "b2", "b3", "b4"):
                hp.Boolean(name)
            if len(self.oracle.start_order) == 1:
                raise kt.errors.FailedTrialError()
            return float(np.random.rand())

    tuner = MyTuner(oracle=LIPOOracle(kt.Objective("score", "max"), max_trials=15, seed=1),
                    directory=str(tmp_path))
    tuner.search(verbose=0)
    statuses = [t.status for t in tuner.oracle.trials.values()]
    assert "FAILED" in statuses and statuses.count("COMPLETED") == 14


def test_conditional_hyperparameters_with_the_same_name_stay_in_range(tmp_path, run_trials):
    hps = hp_module.HyperParameters()
    model = hps.Choice("model", ["v1", "v2"])
    with hps.conditional_scope("model", "v1"):
        hps.Int("layers", 1, 3)
        hps.Int("units", 16, 32)
    with hps.conditional_scope("model", "v2"):
        hps.Int("layers", 2, 4)
        hps.Int("units", 32, 64)
    assert model == "v1"
    ranges = {"v1": {"layers": (1, 3), "units": (16, 32)},
              "v2": {"layers": (2, 4), "units": (32, 64)}}
    oracle = _oracle(tmp_path, hps, direction="min", max_trials=20)
    proposals = []

    def evaluate(values):
        proposals.append(dict(values))
        # KerasTuner's `ensure_active_values` (run by `Oracle.create_trial`) drops the
        # value of a name whose *later* namesake is inactive, so a "v1" trial reaches
        # the model without `layers` and `units`, and the model's build takes their
        # defaults; a "v2" trial keeps its own.
        units = values.get("units", 16)
        return units / 64 + (values["model"] == "v2")

    run_trials(oracle, evaluate, 20)
    assert len(proposals) == 20
    for values in proposals:
        for name in set(values) - {"model"}:
            low, high = ranges[values["model"]][name]
            assert low <= values[name] <= high, values
    assert {v["model"] for v in proposals} == {"v1", "v2"}
    assert all(set(v) == {"model", "layers", "units"} for v in proposals if v["model"] == "v2")
    assert oracle.get_best_trials()[0].hyperparameters.get("model") == "v1"


def test_reverse_log_boundary_is_clipped_to_the_range(tmp_path, run_trials):
    hps = hp_module.HyperParameters()
    hps.Float("lr", 1e-4, 1e-1, sampling="reverse_log")
    hps.Float("w", 1e-4, 1e-1, sampling="log")
    oracle = _oracle(tmp_path, hps)
    for probs in ([0.0, 0.0], [1.0, 1.0], [0.3, 0.7]):
        values = oracle._values(hps.space, np.array(probs))
        for hp in hps.space:
            assert hp.min_value <= values[hp.name] <= hp.max_value
    # The trust-region steps head for the boundary optimum and must not overshoot it.
    run_trials(oracle, lambda v: -math.log(v["lr"]) - math.log(v["w"]), 20)
    for trial in oracle.trials.values():
        for hp in hps.space:
            assert hp.min_value <= trial.hyperparameters.get(hp.name) <= hp.max_value


def test_bayesian_oracle_cases(tmp_path, run_trials):
    # test_bayesian_oracle and test_bayesian_oracle_with_zero_y: Fixed, step and
    # ordered Choices; constant scores (a Lipschitz constant of 0).
    for i, evaluate in enumerate([lambda v: v["b"] + v["c"], lambda v: 0.0]):
        oracle = _oracle(tmp_path / str(i), _mixed_space())
        run_trials(oracle, evaluate, 5)
        assert len(oracle.trials) == 5
        assert all(t.hyperparameters.get("d") == 7 for t in oracle.trials.values())


def test_dynamic_space(tmp_path):
    hps = hp_module.HyperParameters()
    hps.Choice("a", [1, 2], default=1)
    oracle = _oracle(tmp_path)
    oracle.hyperparameters = hps
    for i in range(2):
        oracle.populate_space(str(i))
    hps.Int("b", 3, 10, default=3)
    assert "b" in oracle.populate_space("1_0")["values"]
    hps.Float("c", 0, 1, 0.1, default=0)
    assert "c" in oracle.populate_space("1_1")["values"]
    hps.Fixed("d", 7)
    assert "d" in oracle.populate_space("1_2")["values"]
    hps.Choice("e", [9, 0], default=9)
    assert "e" in oracle.populate_space("1_3")["values"]


def test_save_before_result_and_reload(tmp_path, run_trials):
    oracle = _oracle(tmp_path, _mixed_space())
    oracle.populate_space("1")
    oracle.save()
    run_trials(oracle, lambda v: 1.0, 3)
    oracle.save()
    oracle = _oracle(tmp_path, _mixed_space())
    oracle.reload()
    run_trials(oracle, lambda v: 1.0, 3)
    assert len(oracle.trials) == 6


def _inject(oracle, hps, values_and_scores):
    for values, score in values_and_scores:
        trial = trial_module.Trial(hyperparameters=hps.copy())
        trial.hyperparameters.values.update(values)
        trial.score = score
        trial.status = "COMPLETED"
        oracle.trials[trial.trial_id] = trial


def test_maximize(tmp_path):
    hps = hp_module.HyperParameters()
    hps.Int("a", -100, 100)
    oracle = _oracle(tmp_path, hps)
    _inject(oracle, hps, [({"a": 10 * i}, i) for i in range(5)]
            + [({"a": -10 * i}, -i) for i in range(5)])
    # An even trial count: a LIPO step, whose potential maximizers lie above a = 0.
    for _ in range(5):
        trial = oracle.create_trial("tuner0")
        assert trial.status == "RUNNING"
        assert trial.hyperparameters.get("a") > 0
        oracle.update_trial(trial.trial_id, {"score": trial.hyperparameters.get("a") / 10})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)


def test_hyperparameters_added(tmp_path):
    hps = hp_module.HyperParameters()
    hps.Int("a", -100, 100)
    oracle = _oracle(tmp_path, hps)
    _inject(oracle, hps, [({"a": 10 * i}, i) for i in range(10)])
    new_hps = hp_module.HyperParameters()
    new_hps.Float("b", 3.2, 6.4, step=0.2, default=3.6)
    new_hps.Boolean("c", default=True)
    oracle.update_space(new_hps)
    trial = oracle.create_trial("tuner0")
    assert trial.status == "RUNNING"
    assert "b" in trial.hyperparameters.values and "c" in trial.hyperparameters.values


def test_step_respected(tmp_path):
    hps = hp_module.HyperParameters()
    hps.Float("c", 0, 10, step=3)
    oracle = _oracle(tmp_path, hps)
    _inject(oracle, hps, [({"c": 3.0}, i) for i in range(10)])
    for _ in range(3):
        trial = oracle.create_trial("tuner0")
        assert trial.hyperparameters.get("c") in {0, 3, 6, 9}
        oracle.update_trial(trial.trial_id, {"score": 0.0})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)


def test_float_optimization(tmp_path):
    class PolynomialTuner(kt.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, *args, **kwargs):
            hp = trial.hyperparameters
            return -1 * hp["a"] ** 3 + hp["b"] ** 3 + hp["c"] - abs(hp["d"])

    hps = hp_module.HyperParameters()
    for name in "abcd":
        hps.Float(name, -1, 1)
    tuner = PolynomialTuner(oracle=LIPOOracle(kt.Objective("score", "max"),
                                              hyperparameters=hps, max_trials=50, seed=1),
                            directory=str(tmp_path))
    tuner.search(verbose=0)
    best = tuner.oracle.get_best_trials()[0]
    atol, rtol = 1e-1, 1e-1
    assert np.isclose(best.score, 3, atol=atol, rtol=rtol)
    for name, optimum in zip("abcd", (-1, 1, 1, 0), strict=True):
        assert np.isclose(best.hyperparameters[name], optimum, atol=atol, rtol=rtol)


def _distributed_space():
    hps = hp_module.HyperParameters()
    hps.Int("a", 0, 10)
    hps.Float("b", -1, 1, step=0.1)
    hps.Float("c", 1e-5, 1e-2, sampling="log")
    return hps


def _distributed_score(hp):
    # Minimum at a=4, b=1, c=1e-3 with score=-1.
    return abs(hp["a"] - 4) - hp["b"] + 0.1 * abs(3 + math.log(hp["c"], 10))


def test_distributed_optimization(tmp_path):
    oracle = _oracle(tmp_path, _distributed_space(), direction="min", max_trials=60)
    for _ in range(10):
        trials = [oracle.create_trial(f"tuner_{i}") for i in range(4)]
        assert all(t.status == "RUNNING" for t in trials)
        for trial in trials:
            oracle.update_trial(trial.trial_id,
                                {"score": _distributed_score(trial.hyperparameters)})
        for trial in trials:
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
    best = oracle.get_best_trials()[0]
    assert best.score < -0.8, best.hyperparameters.values
    assert np.isclose(best.hyperparameters["a"], 4, atol=0.1, rtol=0.1)
    assert np.isclose(best.hyperparameters["b"], 1, atol=0.1, rtol=0.1)
    assert -4 < math.log(best.hyperparameters["c"], 10) < -2


def test_interleaved_distributed_optimization(tmp_path):
    oracle = _oracle(tmp_path, _distributed_space(), direction="min", max_trials=60)

    def finish(trial):
        oracle.update_trial(trial.trial_id, {"score": _distributed_score(trial.hyperparameters)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)

    trial_1 = oracle.create_trial("tuner_0")
    trial_2 = oracle.create_trial("tuner_1")
    finish(trial_1)
    trial_3 = oracle.create_trial("tuner_0")
    finish(trial_2)
    trial_4 = oracle.create_trial("tuner_1")
    finish(trial_3)
    finish(trial_4)
    values = [t.hyperparameters.values for t in (trial_1, trial_2, trial_3, trial_4)]
    assert len({tuple(sorted(v.items())) for v in values}) == 4


def test_candidates_place_inactive_hyperparameters_as_completed_trials_do():
    # Nested conditions, a condition on a Fixed value, and namesakes under other parents.
    hps = hp_module.HyperParameters()
    hps.Choice("model", ["v1", "v2", "v3"])
    hps.Fixed("f", 2)
    with hps.conditional_scope("model", ["v1", "v3"]):
        hps.Int("units", 16, 32)
        hps.Choice("act", ["a", "b"])
        with hps.conditional_scope("act", "b"):
            hps.Float("x", 0, 1)
    with hps.conditional_scope("model", "v2"):
        hps.Int("units", 32, 64)
    with hps.conditional_scope("f", 2):
        hps.Float("y", 0, 1)
    oracle = LIPOOracle("val_loss", hyperparameters=hps, seed=0)
    space = [hp for hp in hps.space if not isinstance(hp, hp_module.Fixed)]
    probs, coords = oracle._sample(space, np.random.default_rng(0), 300)
    expected = [lipo_oracle._coordinates(space, oracle._values(space, p)) for p in probs]
    np.testing.assert_array_equal(coords, expected)

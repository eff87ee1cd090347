"""The TPE oracle (Optuna's TPESampler through ask-and-tell) through KerasTuner's Oracle API."""

import importlib.util
import math
import sys

import keras_tuner as kt
import pytest
from keras_tuner.engine import hyperparameters as hp_module

from kfound.tuning import search, tuners
from kfound.tuning.tpe_oracle import TPEOracle


def _values(oracle):
    return [t.hyperparameters.values for _, t in sorted(oracle.trials.items())]


def _space():
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    hp.Float("lr", 1e-4, 1e-1, sampling="log")
    hp.Int("n", 1, 50, sampling="log")
    hp.Choice("act", ["relu", "tanh"])
    return hp


def _f(v):
    return ((v["x"] - 0.7) ** 2 + (math.log10(v["lr"]) + 2) ** 2 / 4 + 0.01 * v["n"]
            + (v["act"] == "tanh"))


def test_tpe_beats_its_random_start(tmp_path, run_trials):
    oracle = TPEOracle(kt.Objective("f", "min"), max_trials=40, hyperparameters=_space(),
                       seed=3, n_startup_trials=10)
    run_trials(oracle, _f, 40, tmp_path)
    scores = [t.score for _, t in sorted(oracle.trials.items())]
    assert len(scores) == 40
    assert min(scores[10:]) < min(scores[:10])
    assert min(scores) < 0.05


def test_same_seed_same_trials_and_resume_proposes_the_same(tmp_path, run_trials):
    def make(seed=5):
        return TPEOracle(kt.Objective("f", "min"), max_trials=16, hyperparameters=_space(),
                         seed=seed, n_startup_trials=4)

    straight = run_trials(make(), _f, 16, tmp_path / "a")
    assert _values(straight) == _values(run_trials(make(), _f, 16, tmp_path / "b"))
    assert _values(straight) != _values(run_trials(make(6), _f, 16, tmp_path / "c"))
    run_trials(make(), _f, 7, tmp_path / "resumed")
    resumed = run_trials(make(), _f, 9, tmp_path / "resumed", resume=True)
    assert resumed.get_state()["n_startup_trials"] == 4
    assert _values(resumed) == _values(straight)


def test_every_kind_of_hyperparameter_stays_in_range(tmp_path, run_trials):
    hp = kt.HyperParameters()
    hp.Float("rev", 1e-4, 1e-1, sampling="reverse_log")
    hp.Float("step", 0.0, 1.0, step=0.3)
    hp.Int("logstep", 1, 64, step=2, sampling="log")
    hp.Int("odd", 1, 10, step=3)
    hp.Boolean("b")
    hp.Choice("c", [8, 16, 32])
    hp.Fixed("fixed", 3)
    oracle = run_trials(TPEOracle(kt.Objective("f", "min"), max_trials=15, hyperparameters=hp,
                                  seed=1, n_startup_trials=3),
                        lambda v: v["rev"] + v["step"] + v["logstep"] + v["odd"], 15, tmp_path)
    for v in _values(oracle):
        assert 1e-4 <= v["rev"] <= 1e-1
        assert any(math.isclose(v["step"], s, abs_tol=1e-12) for s in (0.0, 0.3, 0.6, 0.9))
        assert v["logstep"] in (1, 2, 4, 8, 16, 32, 64) and v["odd"] in (1, 4, 7, 10)
        assert v["b"] in (True, False) and v["c"] in (8, 16, 32) and v["fixed"] == 3


def test_conditional_hyperparameters_with_the_same_name(tmp_path, run_trials):
    hp = hp_module.HyperParameters()
    hp.Choice("model", ["v1", "v2"])
    with hp.conditional_scope("model", "v1"):
        hp.Int("units", 16, 32)
    with hp.conditional_scope("model", "v2"):
        hp.Int("units", 32, 64)
    ranges = {"v1": (16, 32), "v2": (32, 64)}
    oracle = run_trials(TPEOracle(kt.Objective("f", "min"), max_trials=20, hyperparameters=hp,
                                  seed=2, n_startup_trials=5),
                        lambda v: v.get("units", 16) / 64 + (v["model"] == "v2"), 20, tmp_path)
    values = _values(oracle)
    assert {v["model"] for v in values} == {"v1", "v2"}
    for v in values:
        if "units" in v:  # KerasTuner drops a "v1" trial's units (see the LIPO tests).
            low, high = ranges[v["model"]]
            assert low <= v["units"] <= high


def test_hyperparameters_declared_in_run_trial_exhaust_the_space(tmp_path):
    class MyTuner(kt.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, *args, **kwargs):
            hp = trial.hyperparameters
            return float(hp.Boolean("a")) + 2 * float(hp.Boolean("b"))

    tuner = MyTuner(oracle=TPEOracle(kt.Objective("score", "max"), max_trials=15, seed=1),
                    directory=str(tmp_path))
    tuner.search(verbose=0)
    assert len(tuner.oracle.trials) == 4
    assert tuner.oracle.get_best_trials()[0].score == 3.0


def test_distributed_workers_get_distinct_trials(tmp_path):
    hp = kt.HyperParameters()
    hp.Int("a", 0, 3)
    oracle = TPEOracle(kt.Objective("f", "min"), max_trials=8, hyperparameters=hp, seed=1,
                       n_startup_trials=2)
    oracle.verbose = 0
    oracle._set_project_dir(str(tmp_path), "tpe")
    first = [oracle.create_trial(f"worker{i}") for i in range(3)]
    values = [t.hyperparameters.values["a"] for t in first]
    assert len(set(values)) == 3 and all(t.status == "RUNNING" for t in first)


def test_resumable_tpe_oracle_from_make_oracle():
    oracle = tuners.make_oracle("tpe", kt.Objective("f", "min"), max_trials=7, seed=1)
    assert isinstance(oracle, TPEOracle) and oracle.max_trials == 7


def test_missing_optuna_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'kfound\[tpe\]'"):
        TPEOracle("val_loss")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna" else find_spec(name, *a))
    with pytest.raises(SystemExit):
        search.parse_args(["--tuner", "tpe", "--space", "x.yaml"])
    assert "pip install 'kfound[tpe]'. Received: tuner='tpe'" in capsys.readouterr().err


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`n_startup_trials` must be an integer >= 1. "
                                         r"Received: n_startup_trials=0"):
        TPEOracle("val_loss", n_startup_trials=0)

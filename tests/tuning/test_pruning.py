"""The median rule (`kfound.tuning.pruning`), alone and inside every pruning oracle."""

import keras_tuner as kt
import pytest

from kfound import _compat
from kfound.tuning import pruning, tuners

COMPLETED_CURVES = [  # val_accuracy per epoch of five completed trials
    [0.5, 0.7, 0.80, 0.85],
    [0.4, 0.6, 0.70, 0.75],
    [0.6, 0.8, 0.90, 0.92],
    [0.3, 0.5, 0.60, 0.65],
    [0.5, 0.7, 0.75, 0.80],
]  # medians per epoch: 0.5, 0.7, 0.75, 0.80


@pytest.mark.parametrize("values, step, expected", [
    ([0.1, 0.2, 0.3], 2, True),   # best 0.3 < median 0.75
    ([0.1, 0.2, 0.76], 2, False),  # best 0.76 > median 0.75
    ([0.1, 0.75, 0.3], 2, False),  # best so far (epoch 1) ties the median: not worse
    ([0.1, 0.2], 1, False),        # in the warm-up (epochs 0 and 1)
    ([float("nan")] * 3, 2, True),  # nothing but NaN: stops
])
def test_the_median_rule_on_synthetic_histories(values, step, expected):
    pruner = pruning.MedianPruner(warmup=2, min_trials=5)
    reference = [curve[step] for curve in COMPLETED_CURVES]
    assert pruner.should_prune(values, reference, step, "max") is expected
    # The same rule, mirrored, for an objective to minimize.
    mirrored = [-v for v in values]
    assert pruner.should_prune(mirrored, [-r for r in reference], step, "min") is expected


def test_too_few_completed_trials_never_prune():
    pruner = pruning.MedianPruner(warmup=0, min_trials=5)
    assert not pruner.should_prune([0.0], [0.9, 0.9, 0.9, 0.9], 0, "max")
    assert pruner.should_prune([0.0], [0.9] * 5, 0, "max")


@pytest.mark.parametrize("kwargs, match", [
    ({"warmup": -1}, r"`warmup` must be a non-negative integer. Received: warmup=-1"),
    ({"min_trials": 0}, r"`min_trials` must be a positive integer. Received: min_trials=0"),
])
def test_bad_pruner_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pruning.MedianPruner(**kwargs)


def test_hyperband_refuses_a_pruner():
    with pytest.raises(ValueError, match=r"does not apply to tuner `hyperband`.* "
                                         r"Received: prune='median'$"):
        tuners.make_oracle("hyperband", "val_accuracy", pruner=pruning.MedianPruner())


def _oracle(name, directory, pruner):
    space = kt.HyperParameters()
    space.Float("x", 0.0, 1.0)
    oracle = tuners.make_oracle(name, kt.Objective("val_accuracy", "max"), max_trials=20,
                                seed=1, pruner=pruner)
    oracle.verbose = 0
    oracle.hyperparameters = space
    _compat.set_project_dir(oracle, str(directory), "pruning")
    return oracle


def _run(oracle, curve):
    """Reports `curve` epoch by epoch as a tuner does; returns the epochs run and the trial."""
    trial = oracle.create_trial("tuner0")
    epochs = 0
    for epoch, value in enumerate(curve):
        epochs += 1
        if oracle.update_trial(trial.trial_id, {"val_accuracy": value},
                               step=epoch).status == "STOPPED":
            # A copy says STOPPED; the oracle's own record runs until the tuner ends it.
            assert oracle.trials[trial.trial_id].status == "RUNNING"
            break
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    return epochs, oracle.trials[trial.trial_id]


@pytest.mark.parametrize("name", [
    "random", "grid", pytest.param("bayesian", marks=pytest.mark.slow), "lipo", "tpe"])
def test_every_oracle_prunes_after_the_warmup(tmp_path, name):
    if name == "tpe":
        pytest.importorskip("optuna")
    oracle = _oracle(name, tmp_path, pruning.MedianPruner(warmup=2, min_trials=5))
    for curve in COMPLETED_CURVES:
        assert _run(oracle, curve)[0] == 4
    # Worse than the median from the first epoch: still runs the two warm-up epochs, then
    # stops at the end of the third. It ends COMPLETED, scored by its best epoch.
    epochs, trial = _run(oracle, [0.1, 0.2, 0.3, 0.4])
    assert epochs == 3 and oracle.pruned_trials == {trial.trial_id: 3}
    assert trial.status == "COMPLETED" and trial.score == pytest.approx(0.3)
    # A good trial is not stopped.
    assert _run(oracle, [0.6, 0.8, 0.9, 0.95])[0] == 4
    assert len(oracle.trials) == 7  # pruned or not, each trial counts toward max_trials


def test_pruned_trials_are_not_the_median_s_reference(tmp_path):
    oracle = _oracle("random", tmp_path, pruning.MedianPruner(warmup=0, min_trials=1))
    _run(oracle, [0.5, 0.5])
    assert _run(oracle, [0.1, 0.1])[0] == 1  # pruned
    # Against the one completed, unpruned trial (0.5), not the median of 0.5 and 0.1.
    assert _run(oracle, [0.2, 0.2])[0] == 1


def test_without_a_pruner_no_trial_stops(tmp_path):
    oracle = _oracle("random", tmp_path, None)
    for curve in COMPLETED_CURVES:
        _run(oracle, curve)
    assert _run(oracle, [0.0, 0.0, 0.0, 0.0])[0] == 4 and oracle.pruned_trials == {}


def test_a_resumed_oracle_prunes_as_the_uninterrupted_one(tmp_path):
    pruner = pruning.MedianPruner(warmup=1, min_trials=5)
    oracle = _oracle("random", tmp_path, pruner)
    for curve in COMPLETED_CURVES:
        _run(oracle, curve)
    pruned_id = _run(oracle, [0.1, 0.2, 0.3, 0.4])[1].trial_id
    oracle.save()
    # A new process: the histories come back from the trials' files, the pruned trials from
    # the oracle's state.
    resumed = _oracle("random", tmp_path, pruner)
    resumed.reload()
    assert resumed.pruned_trials == {pruned_id: 2}
    history = resumed.trials["00"].metrics.get_history("val_accuracy")
    assert [o.step for o in history] == [0, 1, 2, 3]
    assert _run(resumed, [0.1, 0.2, 0.3])[0] == 2  # judged against the reloaded curves
    assert _run(resumed, [0.4, 0.8, 0.9])[0] == 3


def test_a_trial_handed_out_again_starts_a_fresh_history(tmp_path):
    oracle = _oracle("random", tmp_path, pruning.MedianPruner(warmup=0, min_trials=1))
    _run(oracle, [0.9, 0.9])
    trial = oracle.create_trial("tuner0")
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.1}, step=0)  # pruned ...
    assert trial.trial_id in oracle.pruned_trials
    # ... then its worker restarts under the same name: the oracle hands the trial out again.
    again = oracle.create_trial("tuner0")
    assert again.trial_id == trial.trial_id and trial.trial_id not in oracle.pruned_trials
    assert not again.metrics.exists("val_accuracy")

"""`kfound.tuning.tuners`: the grid oracle hands out points to several workers at once."""

import keras_tuner as kt

from kfound import _compat
from kfound.tuning import tuners


def test_the_grid_hands_a_point_to_each_waiting_worker(tmp_path):
    hp = kt.HyperParameters()
    hp.Choice("learning_rate", [0.003, 0.03])
    hp.Choice("units", [4, 8, 12])
    oracle = tuners.GridOracle(objective="val_accuracy", hyperparameters=hp)
    _compat.set_project_dir(oracle, str(tmp_path), "grid")
    # KerasTuner's own grid answers IDLE to the second worker until the first trial ends.
    trials = [oracle.create_trial(f"worker{i}") for i in range(6)]
    assert [t.status for t in trials] == ["RUNNING"] * 6
    points = {tuple(sorted(t.hyperparameters.values.items())) for t in trials}
    assert len(points) == 6
    # The grid is handed out: a seventh worker waits for the running trials to end.
    assert oracle.create_trial("worker6").status == "IDLE"
    for trial in trials:
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert oracle.create_trial("worker6").status == "STOPPED"

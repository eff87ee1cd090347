"""Fixtures of the search tests."""

import pytest
from keras_tuner.engine.trial import TrialStatus

from kfound import _compat

KERASTUNER_VARIABLES = ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID")


@pytest.fixture(autouse=True)
def _no_kerastuner_role(monkeypatch):
    """Each test starts and ends with no distributed role in the environment.

    `search.main` with `--role` sets KerasTuner's variables in `os.environ`, as a CLI should;
    left behind, they would make every later search in the same pytest worker a worker.
    """
    for name in KERASTUNER_VARIABLES:
        monkeypatch.setenv(name, "")  # records the original value, restored after the test
        monkeypatch.delenv(name)


@pytest.fixture
def run_trials():
    """Runs trials on an oracle through KerasTuner's Oracle API, as a tuner does.

    `run_trials(oracle, f, trials, directory=None, tuner_id="tuner0", resume=False)`: with
    `directory`, points the oracle at a project there first (and with `resume`, reloads the
    search saved there); then up to `trials` times, `create_trial`, the objective's value
    `f(values)` (the trial's hyperparameter values) through `update_trial`, and `end_trial`,
    stopping when the oracle hands out no running trial; then `save`, as
    `BaseTuner.on_trial_end` does after `end_trial`. Returns the oracle.
    """
    def run(oracle, f, trials, directory=None, tuner_id="tuner0", resume=False):
        oracle.verbose = 0
        if directory is not None:
            _compat.set_project_dir(oracle, str(directory), "oracle")
            if resume:
                oracle.reload()
        for _ in range(trials):
            trial = oracle.create_trial(tuner_id)
            if trial.status != TrialStatus.RUNNING:
                break
            oracle.update_trial(trial.trial_id,
                                {oracle.objective.name: f(trial.hyperparameters.values)})
            trial.status = TrialStatus.COMPLETED
            oracle.end_trial(trial)
        oracle.save()
        return oracle

    return run

"""Pruning: an oracle that stops hopeless trials after each epoch (the median rule).

KerasTuner 1.4 leaves early stopping of trials undone: `Tuner.on_epoch_end` is empty and
`Oracle.update_trial` carries a TODO ("To signal early stopping, set Trial.status to
STOPPED"). kfound fills both seams. The tuner (`kfound.tuning.tuners`) reports each
epoch's metrics through `oracle.update_trial(trial_id, metrics, step=epoch)`; an oracle
with `PruningOracle` mixed in asks its pruner, and when the pruner says stop it returns
the trial with the status `STOPPED`; the tuner then sets `model.stop_training = True`.
The rule lives in the oracle, so the workers of a distributed search, whose oracle is the
chief's, are pruned too: KerasTuner's gRPC client passes `update_trial`'s trial (and so
its status) back to the worker.

A pruned trial ends as `COMPLETED`, scored by its best epoch so far, as any trial is: it
counts toward `max_trials`, and the oracles learn from it like any result. The oracle
remembers which trials it pruned (`pruned_trials`, saved with its state), and the rule
reads the per-epoch histories that KerasTuner saves in every `trial.json`, so a resumed
search prunes exactly as the uninterrupted one would.
"""

import copy
import math

import keras_tuner as kt
import numpy as np
from keras_tuner.engine.trial import TrialStatus

from kfound import checks

PRUNERS = ("none", "median")
WARMUP = 2  # epochs of every trial that are never pruned (--prune-warmup)
MIN_TRIALS = 5  # completed trials that must have reached an epoch to judge it (--prune-min-trials)


class MedianPruner:
    """The median stopping rule: stop a trial whose best so far is worse than the median.

    At the end of epoch `step` (0-based, as Keras counts), a trial stops when its best
    objective over epochs `0..step` is worse than the median of the objective that the
    completed trials had at epoch `step` itself. This is Google Vizier's median stopping
    rule (Golovin et al., 2017), with the semantics of Optuna's `MedianPruner`: the
    trials compared against are the completed ones that were not pruned, and a trial
    whose values so far are all NaN stops.

    Args:
        warmup: the number of epochs at the start of every trial that are never pruned
            (Optuna's `n_warmup_steps`): the earliest a trial can stop is at the end of
            epoch `warmup + 1`. Defaults to `2`.
        min_trials: the number of completed trials that must have reached an epoch
            before any trial is judged at that epoch (Optuna's `n_startup_trials`, counted
            at that epoch). Defaults to `5`.

    Example:

    ```python
    pruner = MedianPruner(warmup=2, min_trials=5)
    pruner.should_prune([0.5, 0.6, 0.62], [0.8, 0.7, 0.9, 0.75, 0.85], step=2,
                        direction="max")  # True: 0.62 < median 0.8
    ```

    Reference:
        Golovin et al., "Google Vizier: A Service for Black-Box Optimization", KDD 2017.
    """

    def __init__(self, warmup=WARMUP, min_trials=MIN_TRIALS):
        self.warmup = checks.non_negative_int("warmup", warmup)
        self.min_trials = checks.positive_int("min_trials", min_trials)

    def should_prune(self, values, reference, step, direction):
        """Whether a trial stops at the end of epoch `step`.

        Args:
            values: the trial's objective at each epoch so far (`0..step`).
            reference: the objective of each completed, unpruned trial at epoch `step`.
            step: the epoch just ended, 0-based.
            direction: `"max"` or `"min"`.

        Returns:
            A bool.
        """
        if step < self.warmup or len(reference) < self.min_trials:
            return False
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return True
        median = float(np.nanmedian(reference))
        if direction == "max":
            return max(finite) < median
        return min(finite) > median

    def get_config(self):
        return {"warmup": self.warmup, "min_trials": self.min_trials}


def make_pruner(name, warmup=WARMUP, min_trials=MIN_TRIALS):
    """The pruner called `name` (one of `PRUNERS`); `None` for `"none"`."""
    checks.one_of("prune", name, PRUNERS)
    return None if name == "none" else MedianPruner(warmup=warmup, min_trials=min_trials)


class PruningOracle:
    """Mixin for a `keras_tuner.Oracle`: `update_trial` stops trials its pruner rejects.

    Mix it in before the oracle class (`class O(PruningOracle, kt.oracles.RandomSearchOracle)`).
    With no pruner the oracle behaves as its base.

    Args:
        pruner: an object with `should_prune(values, reference, step, direction)`, such as
            `MedianPruner`, or `None` (the default) for no pruning.
        *args, **kwargs: the oracle's own arguments.
    """

    def __init__(self, *args, pruner=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pruner = pruner
        self.pruned_trials = {}  # trial_id -> the epochs it had run when it was stopped

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        """Records the metrics; returns the trial, with status `STOPPED` if it must stop.

        The returned trial is a copy when it is stopped: the oracle's own record stays
        `RUNNING` until the tuner ends it.
        """
        trial = super().update_trial(trial_id, metrics, step=step)
        if self.pruner is None:
            return trial
        if trial_id not in self.pruned_trials:
            if not self._should_prune(trial, step):
                return trial
            self.pruned_trials[trial_id] = int(step) + 1
        stopped = copy.copy(trial)
        stopped.status = TrialStatus.STOPPED
        return stopped

    def _should_prune(self, trial, step):
        name = self.objective.name
        if not trial.metrics.exists(name):
            return False
        values = [obs.mean() for obs in trial.metrics.get_history(name) if obs.step <= step]
        reference = [
            value for other in self.trials.values()
            if other.status == TrialStatus.COMPLETED and other.trial_id != trial.trial_id
            and other.trial_id not in self.pruned_trials
            and (value := step_value(other, name, step)) is not None
        ]
        return self.pruner.should_prune(values, reference, step, self.objective.direction)

    def trial_handed_out(self, trial):
        """Forgets that a trial handed out again (a retry, or a resume) was pruned."""
        super().trial_handed_out(trial)
        self.pruned_trials.pop(trial.trial_id, None)

    def get_state(self):
        state = super().get_state()
        state.setdefault("kfound", {})["pruned"] = self.pruned_trials
        return state

    def set_state(self, state):
        super().set_state(state)
        self.pruned_trials = dict(state.get("kfound", {}).get("pruned", {}))


def step_value(trial, name, step):
    """A trial's metric `name` at epoch `step` (averaged over its executions), or `None`."""
    if not trial.metrics.exists(name):
        return None
    for observation in trial.metrics.get_history(name):
        if observation.step == step:
            return observation.mean()
    return None

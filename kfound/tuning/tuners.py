"""KerasTuner's tuners (and the LIPO oracle), made safe to kill and resume.

`make_tuner` builds a `keras_tuner.Tuner` around one of KerasTuner's oracles. The oracles
are KerasTuner's own, with three additions that a search killed with `kill -9` needs:

- every state file (`oracle.json`, `trial.json`, the tuner's file) is written atomically,
  so a kill never leaves a truncated file;
- on reload, a trial whose file was written but whose oracle state was not (a kill
  between the two writes) is reconciled: a trial that finished is not run again, and a
  trial that was never recorded is proposed afresh;
- the grid oracle rebuilds its cursor from the trials, which KerasTuner does not save
  (keras-tuner #1055: a resumed `GridSearch` dies with a `KeyError`).

They also time each trial, remember which worker ran it, and call a `reporter` when a
trial ends (on the chief, in a distributed search), which writes `trials.json`.
"""

import functools
import gc
import json
import os
import time

import keras
import keras_tuner as kt
from keras_tuner.src.tuners.gridsearch import LinkedList

from kfound import io_utils
from kfound.tuning.lipo_oracle import LIPOOracle
from kfound.tuning.tpe_oracle import TPEOracle

TUNERS = ("grid", "random", "bayesian", "hyperband", "lipo", "tpe")
_FINISHED = ("COMPLETED", "FAILED")
IDLE_SECONDS = 0.1  # how long a worker told to wait (an IDLE trial) waits before asking again


class ResumableOracle:
    """Mixin for a `keras_tuner.Oracle`: atomic state files, kill-safe reload, trial timing.

    Args:
        reporter: an optional `reporter(oracle, trial)` called after each trial ends.
        *args, **kwargs: the oracle's own arguments.
    """

    def __init__(self, *args, reporter=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.reporter = reporter
        self.trial_started = {}  # trial_id -> time.time() when handed out
        self.trial_seconds = {}  # trial_id -> seconds from hand-out to end
        self.trial_workers = {}  # trial_id -> tuner_id that ran it

    def create_trial(self, tuner_id):
        trial = self._create_trial(tuner_id)
        if trial.status == "IDLE":
            # KerasTuner's workers ask again at once: slow them down, outside the lock.
            time.sleep(IDLE_SECONDS)
        return trial

    @kt.synchronized
    def _create_trial(self, tuner_id):
        trial = super().create_trial(tuner_id)
        if trial.status == "RUNNING":
            self.trial_started[trial.trial_id] = time.time()
            self.trial_workers[trial.trial_id] = tuner_id
        return trial

    @kt.synchronized
    def end_trial(self, trial):
        started = self.trial_started.get(trial.trial_id)
        if started is not None:
            self.trial_seconds[trial.trial_id] = time.time() - started
        super().end_trial(trial)
        if self.reporter is not None:
            self.reporter(self, self.trials[trial.trial_id])

    def get_state(self):
        state = super().get_state()
        state["kfound"] = {"seconds": self.trial_seconds, "workers": self.trial_workers}
        return state

    def set_state(self, state):
        super().set_state(state)
        self.trial_seconds = dict(state.get("kfound", {}).get("seconds", {}))
        self.trial_workers = dict(state.get("kfound", {}).get("workers", {}))

    def save(self):
        io_utils.write_text(self._get_oracle_fname(), json.dumps(self.get_state()))

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        io_utils.write_text(path, json.dumps(trial.get_state()))

    def reload(self):
        super().reload()  # Loads the trials and the state; ongoing trials go to the retry queue.
        # Killed after a new trial's file was written but before the oracle's: the oracle
        # never handed it out as far as its state knows, so it is proposed afresh.
        for trial_id in [t for t in self.trials if t not in self.start_order]:
            del self.trials[trial_id]
        # Killed after a finished trial's file was written but before the oracle's.
        for trial_id in list(self._retry_queue):
            if self.trials[trial_id].status in _FINISHED:
                self._retry_queue.remove(trial_id)
                if trial_id not in self.end_order:
                    self.end_order.append(trial_id)


class GridOracle(ResumableOracle, kt.oracles.GridSearchOracle):
    """KerasTuner's grid search, resumable, and parallel in a distributed search.

    KerasTuner steps past a grid point only once its trial has ended, in case that trial
    declares new (conditional) hyperparameters; meanwhile other workers are told to wait,
    so that a distributed grid runs one trial at a time. This oracle hands out the point
    after the last one handed out instead. Points that new hyperparameters reveal are
    still added when the trials that declared them end, as KerasTuner does.
    """

    def _grid_order(self):
        return functools.cmp_to_key(lambda a, b: self._compare(
            self.trials[a].hyperparameters.values, self.trials[b].hyperparameters.values))

    def populate_space(self, trial_id):
        result = super().populate_space(trial_id)
        if result["status"] != "IDLE" or not self.start_order:
            return result
        last = max(self.start_order, key=self._grid_order())
        values = self._get_next_combination(self.trials[last].hyperparameters.values)
        if values is None:  # The grid is handed out; wait for its last trials to end.
            return result
        self._ordered_ids.insert(trial_id, last)
        return {"status": "RUNNING", "values": values}

    def reload(self):
        super().reload()
        # KerasTuner does not save the grid's cursor (keras-tuner #1055). Rebuild it: the
        # trials in grid order, and every trial as a place to look for the next point.
        self._ordered_ids = LinkedList()
        for trial_id in sorted(self.start_order, key=self._grid_order()):
            self._ordered_ids.insert(trial_id)
        self._populate_next = list(self.start_order)


class RandomOracle(ResumableOracle, kt.oracles.RandomSearchOracle):
    """KerasTuner's random search, resumable."""


class BayesianOracle(ResumableOracle, kt.oracles.BayesianOptimizationOracle):
    """KerasTuner's Gaussian-process Bayesian optimization, resumable."""


class HyperbandOracle(ResumableOracle, kt.oracles.HyperbandOracle):
    """KerasTuner's Hyperband, resumable."""


class ResumableLIPOOracle(ResumableOracle, LIPOOracle):
    """kfound's AdaLIPO oracle, resumable."""


class ResumableTPEOracle(ResumableOracle, TPEOracle):
    """Optuna's TPE sampler as an oracle, resumable."""


class _TunerMixin:
    """Writes the tuner's file atomically and keeps the garbage collector off the trials' path.

    KerasTuner frees the previous trial's model and graph before each build
    (`Tuner._try_build` calls `keras.utils.clear_session()` and `gc.collect()`), so memory
    does not grow across trials (measured by `benchmarks/tuning.py`). Each full collection
    walks every object the process tracks, about half a million once TensorFlow and Keras
    are imported: 0.3-0.7 s on a 2-core CPU, twice a trial, often more than a small trial's
    training. `search` therefore freezes (`gc.freeze()`) the objects alive when it starts,
    so that collections during the search walk only what the search itself created, and
    unfreezes them when it ends. Only reference cycles among those pre-existing objects
    that die during the search wait until its end to be freed. When the process has
    already frozen objects, `search` leaves the collector as it is.
    """

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        io_utils.write_text(self._get_tuner_fname(), json.dumps(self.get_state()))

    def on_search_begin(self):
        super().on_search_begin()
        # KerasTuner resumes only when the tuner's file exists, and writes it first when a
        # trial ends: a kill during the first trial would otherwise start over.
        self.save()

    def search(self, *fit_args, **fit_kwargs):
        freeze = gc.get_freeze_count() == 0
        if freeze:
            gc.collect()
            gc.freeze()
        try:
            super().search(*fit_args, **fit_kwargs)
        finally:
            # KerasTuner frees a trial's model when the next one is built: free the last.
            keras.utils.clear_session(free_memory=True)
            if freeze:
                gc.unfreeze()


class Tuner(_TunerMixin, kt.Tuner):
    """`keras_tuner.Tuner` with atomic state files and a frozen heap while it searches."""


class HyperbandTuner(_TunerMixin, kt.Hyperband):
    """`keras_tuner.Hyperband`'s trial logic (epochs per round, warm starts) on a given oracle."""

    def __init__(self, oracle, **kwargs):
        # `kt.Hyperband.__init__` builds its own oracle; take ours instead.
        kt.Tuner.__init__(self, oracle=oracle, **kwargs)


def default_distribution_strategy():
    """`tf.distribute.MirroredStrategy` over every GPU when more than one is visible."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return None


def make_oracle(name, objective, max_trials=None, seed=None, max_epochs=None, reporter=None):
    """Builds a resumable oracle for tuner `name`.

    Args:
        name: one of `TUNERS`.
        objective: a `keras_tuner.Objective` or metric name.
        max_trials: the most trials; `None` runs a grid to its end (and the default of
            10 elsewhere).
        seed: the random seed.
        max_epochs: Hyperband's largest number of epochs for one trial.
        reporter: an optional `reporter(oracle, trial)` called after each trial ends.

    Returns:
        A `keras_tuner.Oracle`.
    """
    if name not in TUNERS:
        raise ValueError(
            f"Argument `tuner` must be one of {list(TUNERS)}. Received: tuner={name!r}"
        )
    common = {"objective": objective, "seed": seed, "reporter": reporter}
    if name == "hyperband":
        oracle = HyperbandOracle(max_epochs=max_epochs or 10, **common)
        oracle.max_trials = max_trials
        return oracle
    if name == "grid":
        return GridOracle(max_trials=max_trials, **common)
    cls = {"random": RandomOracle, "bayesian": BayesianOracle, "lipo": ResumableLIPOOracle,
           "tpe": ResumableTPEOracle}[name]
    return cls(max_trials=max_trials or 10, **common)


def make_tuner(name, hypermodel, objective, directory, max_trials=None, seed=None,
               max_epochs=None, project_name="keras_tuner", overwrite=False,
               executions_per_trial=1, distribution_strategy="auto", reporter=None):
    """Builds a resumable KerasTuner tuner.

    Args:
        name: one of `TUNERS`: `grid`, `random`, `bayesian`, `hyperband`, `lipo` or `tpe`
            (Optuna's TPE sampler; needs the `kfound[tpe]` extra).
        hypermodel: a `keras_tuner.HyperModel`.
        objective: a `keras_tuner.Objective` or metric name.
        directory: the folder holding KerasTuner's project folder.
        max_trials, seed, max_epochs, reporter: as for `make_oracle`.
        project_name: KerasTuner's project folder name. Defaults to `"keras_tuner"`.
        overwrite: start over instead of resuming. Defaults to `False`.
        executions_per_trial: models trained per trial, their scores averaged.
        distribution_strategy: a `tf.distribute.Strategy`, `None`, or `"auto"`
            (default): `MirroredStrategy` when more than one GPU is visible.

    Returns:
        A `keras_tuner.Tuner`. Running the same call again resumes the search.

    Example:

    ```python
    tuner = make_tuner("lipo", MLPHyperModel((8, 8, 1), 10), "val_accuracy", "runs/")
    tuner.search(x, y, validation_data=(x_val, y_val), verbose=0)
    ```
    """
    if distribution_strategy == "auto":
        distribution_strategy = default_distribution_strategy()
    oracle = make_oracle(name, objective, max_trials, seed, max_epochs, reporter)
    cls = HyperbandTuner if name == "hyperband" else Tuner
    return cls(oracle=oracle, hypermodel=hypermodel, directory=os.fspath(directory),
               project_name=project_name, overwrite=overwrite,
               executions_per_trial=executions_per_trial,
               distribution_strategy=distribution_strategy)

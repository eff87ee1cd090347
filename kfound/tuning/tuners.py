"""KerasTuner's tuners (and the LIPO oracle), made safe to kill and resume.

`make_tuner` builds a `keras_tuner.Tuner` around one of KerasTuner's oracles. The oracles
are KerasTuner's own, with three additions that a search killed with `kill -9` needs:

- every state file (`oracle.json`, `trial.json`, the tuner's file) is written atomically,
  so a kill never leaves a truncated file;
- on reload, a trial whose file was written but whose oracle state was not (a kill
  between the two writes) is reconciled: a trial that finished is not run again, and a
  trial that was never recorded is proposed afresh;
- the grid oracle derives its next point from the trials, so it needs no cursor, which
  KerasTuner's does not save (keras-tuner #1055: a resumed `GridSearch` dies with a
  `KeyError`).

They also time each trial, remember which worker ran it and on which devices, and call
a `reporter` when a trial ends (on the chief, in a distributed search), which writes
`trials.json`.

The tuner reports every epoch's metrics to the oracle (`oracle.update_trial(trial_id,
metrics, step=epoch)`), so each trial's `trial.json` holds its learning curve, and every
oracle but Hyperband's can prune (`kfound.tuning.pruning`): when `update_trial` returns
a `STOPPED` trial, the tuner stops the fit (`model.stop_training = True`). A trial's
score is its best epoch, as in KerasTuner; with several executions per trial, each
epoch's value is the mean over the executions.
"""

import gc
import itertools
import json
import os
import time
import warnings

import keras
import keras_tuner as kt
from keras_tuner.engine.trial import TrialStatus

from kfound import _compat, distribution, io_utils
from kfound.tuning.lipo_oracle import LIPOOracle
from kfound.tuning.pruning import PruningOracle
from kfound.tuning.tpe_oracle import TPEOracle

TUNERS = ("grid", "random", "bayesian", "hyperband", "lipo", "tpe")
FINISHED = (TrialStatus.COMPLETED, TrialStatus.FAILED)
IDLE_SECONDS = 0.1  # how long a worker told to wait (an IDLE trial) waits before asking again


class ResumableOracle(_compat.TrialFileHook):
    """Mixin for a `keras_tuner.Oracle`: atomic state files, kill-safe reload, trial timing.

    Args:
        reporter: an optional `reporter(oracle, trial)` called after each trial ends.
        devices: an optional `devices(tuner_id)`: the device list of the tuner (worker)
            a trial is handed to, recorded with the trial.
        *args, **kwargs: the oracle's own arguments.
    """

    def __init__(self, *args, reporter=None, devices=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.reporter = reporter
        self.devices = devices
        self.trial_devices = {}  # trial_id -> the device list of the worker that ran it
        self.trial_started = {}  # trial_id -> time.time() when handed out
        self.trial_seconds = {}  # trial_id -> seconds from hand-out to end
        self.trial_workers = {}  # trial_id -> tuner_id that ran it

    def create_trial(self, tuner_id):
        trial = self._create_trial(tuner_id)
        if trial.status == TrialStatus.IDLE:
            # KerasTuner's workers ask again at once: slow them down, outside the lock.
            time.sleep(IDLE_SECONDS)
        return trial

    @kt.synchronized
    def _create_trial(self, tuner_id):
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.RUNNING:
            self.trial_started[trial.trial_id] = time.time()
            self.trial_workers[trial.trial_id] = tuner_id
            if self.devices is not None:
                self.trial_devices[trial.trial_id] = self.devices(tuner_id)
            self.trial_handed_out(trial)
        return trial

    def trial_handed_out(self, trial):
        """Clears the per-epoch metrics of a trial handed out again (a retry, a resume):
        it trains from its first epoch, so its old epochs must not mix with the new."""
        trial.metrics.metrics.clear()

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
        state["kfound"] = {"seconds": self.trial_seconds, "workers": self.trial_workers,
                           "devices": self.trial_devices}
        return state

    def set_state(self, state):
        super().set_state(state)
        self.trial_seconds = dict(state.get("kfound", {}).get("seconds", {}))
        self.trial_workers = dict(state.get("kfound", {}).get("workers", {}))
        self.trial_devices = dict(state.get("kfound", {}).get("devices", {}))

    def save(self):
        io_utils.write_text(_compat.oracle_state_file(self), json.dumps(self.get_state()))

    def save_trial(self, trial):
        """Writes `trial`'s `trial.json` atomically (KerasTuner calls it for every change)."""
        io_utils.write_text(_compat.trial_state_file(self, trial.trial_id),
                            json.dumps(trial.get_state()))

    def reload(self):
        super().reload()  # Loads the trials and the state; ongoing trials go to the retry queue.
        # Killed after a new trial's file was written but before the oracle's: the oracle
        # never handed it out as far as its state knows, so it is proposed afresh.
        for trial_id in [t for t in self.trials if t not in self.start_order]:
            del self.trials[trial_id]
        # Killed after a finished trial's file was written but before the oracle's: it
        # is not retried, and it counts as ended.
        state = self.get_state()
        finished = [t for t in state["retry_queue"] if self.trials[t].status in FINISHED]
        if finished:
            state["retry_queue"] = [t for t in state["retry_queue"] if t not in finished]
            state["end_order"] += [t for t in finished if t not in state["end_order"]]
            self.set_state(state)


class GridOracle(PruningOracle, ResumableOracle, kt.Oracle):
    """A grid search over every combination of the space's values, resumable and parallel.

    The grid is KerasTuner's: each hyperparameter's `values` (an unstepped `Float` gives
    10 samples), its default first, the last hyperparameter varying fastest. Each new
    trial takes the first point no trial has taken, so the oracle keeps no cursor: a
    resumed search goes on where it stopped, and in a distributed search every idle worker
    gets a point of its own (KerasTuner's grid makes workers wait for the running trial to
    end, so that it runs one trial at a time). Hyperparameters that a trial declares are
    added to the grid when it ends (`update_space`), as KerasTuner does.

    Args: as `keras_tuner.Oracle`; `max_trials=None` runs the whole grid.
    """

    def populate_space(self, trial_id):
        taken = {_point_key(t.hyperparameters.values) for t in self.trials.values()}
        for values in grid_points(self.get_space()):
            if _point_key(values) not in taken:
                return {"status": TrialStatus.RUNNING, "values": values}
        if self.ongoing_trials:  # The grid is handed out; wait for its last trials to end.
            return {"status": TrialStatus.IDLE, "values": None}
        return {"status": TrialStatus.STOPPED, "values": None}


def grid_axis(hp):
    """The values a grid search takes for one hyperparameter: its default, then the others."""
    return [hp.default, *(v for v in hp.values if v != hp.default)]


def grid_points(hyperparameters):
    """Yields every point of the grid of a `keras_tuner.HyperParameters`, in grid order.

    Each point is a dict of the values of the hyperparameters active at that point.
    """
    space = hyperparameters.space
    names = [hp.name for hp in space]
    conditional = any(hp.conditions for hp in space)
    seen = set()
    for combination in itertools.product(*(grid_axis(hp) for hp in space)):
        values = dict(zip(names, combination, strict=True))
        if conditional:
            hps = hyperparameters.copy()
            hps.values = values
            values = {hp.name: values[hp.name] for hp in space if hps.is_active(hp)}
            if _point_key(values) in seen:
                continue
            seen.add(_point_key(values))
        yield values


def _point_key(values):
    return tuple(sorted((k, repr(v)) for k, v in values.items()))


class RandomOracle(PruningOracle, ResumableOracle, kt.oracles.RandomSearchOracle):
    """KerasTuner's random search, resumable, with optional pruning."""


class BayesianOracle(PruningOracle, ResumableOracle, kt.oracles.BayesianOptimizationOracle):
    """KerasTuner's Gaussian-process Bayesian optimization, resumable, with optional pruning."""


class HyperbandOracle(ResumableOracle, kt.oracles.HyperbandOracle):
    """KerasTuner's Hyperband, resumable."""


class ResumableLIPOOracle(PruningOracle, ResumableOracle, LIPOOracle):
    """kfound's LIPO oracle (dlib's MaxLIPO+TR), resumable, with optional pruning."""


class ResumableTPEOracle(PruningOracle, ResumableOracle, TPEOracle):
    """Optuna's TPE sampler as an oracle, resumable, with optional pruning."""


class _TunerMixin:
    """Writes the tuner's file atomically and keeps the garbage collector off the trials' path.

    KerasTuner frees the previous trial's model and graph before each build (it calls
    `keras.utils.clear_session()` and `gc.collect()`), so memory does not grow across
    trials. Each full collection walks every object the process tracks, about half a
    million once TensorFlow and Keras are imported, twice a trial: on a small CPU that can
    take longer than a small trial's training (`benchmarks/tuning.py` measures it, and
    the README quotes the figures). `search` therefore freezes (`gc.freeze()`) the objects
    alive when it starts, so that collections during the search walk only what the search
    itself created, and unfreezes them when it ends. Only reference cycles among those
    pre-existing objects that die during the search wait until its end to be freed. When
    the process has already frozen objects, `search` leaves the collector as it is.
    """

    trial_log = None  # `make_tuner`'s: called with one line per trial this process ends.

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self.trial_began = time.time()
        self.trial_pruned_after = None  # epochs run when the oracle stopped the trial

    def on_epoch_end(self, trial, model, epoch, logs=None):
        """Reports the epoch's metrics to the oracle; stops the fit if the oracle says so."""
        super().on_epoch_end(trial, model, epoch, logs=logs)
        if not logs or not self.oracle.objective.has_value(logs):
            return
        metrics = {name: float(value) for name, value in logs.items()}
        reported = self.oracle.update_trial(trial.trial_id, metrics, step=epoch)
        if reported.status == TrialStatus.STOPPED:
            model.stop_training = True
            self.trial_pruned_after = epoch + 1

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.trial_log is not None:
            # The oracle (the chief's, in a distributed search) has scored the trial.
            ended = self.oracle.get_trial(trial.trial_id)
            score = "" if ended.score is None else (
                f" {self.oracle.objective.name}={ended.score:.4f}")
            pruned = ("" if self.trial_pruned_after is None
                      else f", pruned after {self.trial_pruned_after} epoch"
                      f"{'' if self.trial_pruned_after == 1 else 's'}")
            self.trial_log(f"[{self.tuner_id}] trial {trial.trial_id} {ended.status}{score} "
                           f"in {time.time() - self.trial_began:.1f}s{pruned}")

    def load_model(self, trial):
        """KerasTuner's, or the hypermodel's own `load_trial(hp, checkpoint)` if it has one.

        `FinetuneHyperModel`'s head trials on a pretrained backbone checkpoint the head
        alone, which its `load_trial` puts back on the rebuilt classifier.
        """
        load_trial = getattr(self.hypermodel, "load_trial", None)
        if load_trial is None:
            return super().load_model(trial)
        return load_trial(trial.hyperparameters,
                          _compat.trial_checkpoint_file(self, trial.trial_id))

    def save(self):
        if not _compat.is_worker(self):
            self.oracle.save()
        io_utils.write_text(_compat.tuner_state_file(self), json.dumps(self.get_state()))

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
            with warnings.catch_warnings():
                # KerasTuner deprecates reporting metrics from inside `run_trial`, which our
                # per-epoch `update_trial` (its own seam for intermediate results) is to it.
                warnings.filterwarnings(
                    "ignore", message="The use case of calling `self.oracle.update_trial",
                    category=DeprecationWarning)
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
        _compat.init_tuner_with_oracle(self, oracle, **kwargs)


def check_pruner(name, pruner):
    """Refuses a pruner for Hyperband, whose schedule of rounds prunes already."""
    if name == "hyperband" and pruner is not None:
        raise ValueError(
            "Argument `prune` does not apply to tuner `hyperband`, which prunes by its own "
            "schedule (successive halving); use another tuner, or hyperband without "
            f"pruning. Received: prune={type(pruner).__name__.removesuffix('Pruner').lower()!r}"
        )


def make_oracle(name, objective, max_trials=None, seed=None, max_epochs=None, reporter=None,
                devices=None, pruner=None):
    """Builds a resumable oracle for tuner `name`.

    Args:
        name: one of `TUNERS`.
        objective: a `keras_tuner.Objective` or metric name.
        max_trials: the most trials; `None` runs a grid to its end (and the default of
            10 elsewhere).
        seed: the random seed.
        max_epochs: Hyperband's largest number of epochs for one trial.
        reporter: an optional `reporter(oracle, trial)` called after each trial ends.
        devices: an optional `devices(tuner_id)`, the device list each trial records.
        pruner: a `kfound.tuning.pruning.MedianPruner` that stops hopeless trials after
            an epoch, or `None` (the default). Not for Hyperband.

    Returns:
        A `keras_tuner.Oracle`.
    """
    if name not in TUNERS:
        raise ValueError(
            f"Argument `tuner` must be one of {list(TUNERS)}. Received: tuner={name!r}"
        )
    check_pruner(name, pruner)
    common = {"objective": objective, "seed": seed, "reporter": reporter, "devices": devices}
    if name == "hyperband":
        oracle = HyperbandOracle(max_epochs=max_epochs or 10, **common)
        oracle.max_trials = max_trials
        return oracle
    if name == "grid":
        return GridOracle(max_trials=max_trials, pruner=pruner, **common)
    cls = {"random": RandomOracle, "bayesian": BayesianOracle, "lipo": ResumableLIPOOracle,
           "tpe": ResumableTPEOracle}[name]
    return cls(max_trials=max_trials or 10, pruner=pruner, **common)


def make_tuner(name, hypermodel, objective, directory, max_trials=None, seed=None,
               max_epochs=None, project_name="keras_tuner", overwrite=False,
               executions_per_trial=1, distribution_strategy="auto", reporter=None,
               trial_log=None, devices=None, pruner=None):
    """Builds a resumable KerasTuner tuner.

    Args:
        name: one of `TUNERS`: `grid`, `random`, `bayesian`, `hyperband`, `lipo` or `tpe`
            (Optuna's TPE sampler; needs the `kfound[tpe]` extra).
        hypermodel: a `keras_tuner.HyperModel`.
        objective: a `keras_tuner.Objective` or metric name.
        directory: the folder holding KerasTuner's project folder.
        max_trials, seed, max_epochs, reporter, devices, pruner: as for `make_oracle`.
        project_name: KerasTuner's project folder name. Defaults to `"keras_tuner"`.
        overwrite: start over instead of resuming. Defaults to `False`.
        executions_per_trial: models trained per trial, their scores averaged.
        distribution_strategy: a `tf.distribute.Strategy`, `None`, or `"auto"`
            (default): `kfound.distribution.setup()`'s (MirroredStrategy over several
            GPUs under TensorFlow; under JAX, DataParallel over several devices is set
            for the process instead).
        trial_log: an optional callable given one line per trial that this process
            ends (`[worker1] trial 03 COMPLETED val_accuracy=0.9421 in 4.2s`): a worker's
            progress, since the `reporter` runs on the chief.

    Returns:
        A `keras_tuner.Tuner`. Running the same call again resumes the search.

    Example:

    ```python
    tuner = make_tuner("lipo", MLPHyperModel((8, 8, 1), 10), "val_accuracy", "runs/")
    tuner.search(x, y, validation_data=(x_val, y_val), verbose=0)
    ```
    """
    if distribution_strategy == "auto":
        distribution_strategy = distribution.setup().strategy
    oracle = make_oracle(name, objective, max_trials, seed, max_epochs, reporter, devices,
                         pruner)
    cls = HyperbandTuner if name == "hyperband" else Tuner
    tuner = cls(oracle=oracle, hypermodel=hypermodel, directory=os.fspath(directory),
                project_name=project_name, overwrite=overwrite,
                executions_per_trial=executions_per_trial,
                distribution_strategy=distribution_strategy)
    tuner.trial_log = trial_log
    return tuner

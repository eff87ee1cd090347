"""Every touch of a private Keras or KerasTuner API, in one place.

Each function below stands in for a public API that the library lacks; its comment names
what is missing. `tests/test_compat.py` checks that the installed versions still have
every one of them, so that an upgrade that removes one fails there, by name, rather
than deep inside a search; it also checks that no other module imports `keras.src`.
setup.cfg gives the versions tested.

## Keras

No private touch remains. The three that were, and the public seams that replaced them:

- `SparseInitializer` subclassed `keras.src...RandomInitializer`; it now subclasses the
  public `keras.initializers.Initializer` and keeps Keras's seed semantics itself.
- `replace_batchnorm` imported `Functional` from `keras.src` to test a model's kind; it
  now tests `isinstance(model, keras.Sequential)` or a `keras.Model` with `outputs`
  (what Functional models have and subclassed ones lack), and edits the graph with
  `keras.models.clone_model(clone_function=..., call_function=..., recursive=True)`.
- `WeightNorm` wrote the wrapped layer's private `_kernel` with `object.__setattr__`; it
  now calls the layer inside a `keras.StatelessScope` that maps its kernel variables to
  the normalized kernels, the seam `Layer.stateless_call` and the JAX trainer use.

tests/test_compat.py checks the public behaviour each of them relies on.

## KerasTuner

The functions below.
"""

import importlib
import os

# --- KerasTuner ---------------------------------------------------------------------------
# Tested with the keras-tuner versions that setup.cfg allows (1.4.7 and later).

KERAS_TUNER_PRIVATE = {
    # object path: the private attributes kfound uses on it.
    "keras_tuner.Oracle": ("_get_oracle_fname", "_get_trial_dir", "_save_trial",
                           "_set_project_dir"),
    "keras_tuner.Tuner": ("_get_checkpoint_fname", "_get_tuner_fname", "_is_worker"),
    "keras_tuner.src.engine.tuner_utils": ("SaveBestEpoch",),
    "keras_tuner.src.protos": ("get_service_grpc",),
    "keras_tuner.src.distribute.oracle_chief": ("OracleServicer", "exit_chief"),
}


def missing_keras_tuner_private():
    """The private KerasTuner names kfound uses that the installed KerasTuner lacks."""
    missing = []
    for path, names in KERAS_TUNER_PRIVATE.items():
        module_name, _, attribute = path.rpartition(".")
        try:
            if path.startswith("keras_tuner.src"):
                owner = importlib.import_module(path)
            else:
                owner = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError):
            missing.extend(f"{path}.{name}" for name in names)
            continue
        missing.extend(f"{path}.{name}" for name in names if not hasattr(owner, name))
    return missing


def oracle_state_file(oracle):
    """The path of an oracle's `oracle.json`.

    Missing public API: KerasTuner writes it in `Oracle.save()` with no atomic option,
    and exposes its path only as `Oracle._get_oracle_fname()`.
    """
    return oracle._get_oracle_fname()


def trial_state_file(oracle, trial_id):
    """The path of a trial's `trial.json` (its folder is created).

    Missing public API: the oracle's trial folders (`Oracle._get_trial_dir`).
    """
    return os.path.join(oracle._get_trial_dir(trial_id), "trial.json")


def tuner_state_file(tuner):
    """The path of a tuner's own state file.

    Missing public API: `Tuner._get_tuner_fname()`, written by `Tuner.save()`.
    """
    return tuner._get_tuner_fname()


def trial_checkpoint_file(tuner, trial_id):
    """The path of the weights file a trial's best epoch is saved to (`SaveBestEpoch`'s).

    Missing public API: `Tuner.load_model(trial)` reads it, and names it only through
    `Tuner._get_checkpoint_fname(trial_id)`.
    """
    return tuner._get_checkpoint_fname(trial_id)


def is_worker(tuner):
    """Whether `tuner` is a worker of a distributed search (its oracle is the chief's).

    Missing public API: `BaseTuner._is_worker()`.
    """
    return tuner._is_worker()


def set_project_dir(oracle, directory, project_name):
    """Points an oracle made outside a tuner at its project folder.

    Missing public API: a tuner does this in its constructor (`Oracle._set_project_dir`).
    """
    oracle._set_project_dir(directory, project_name)


class TrialFileHook:
    """Mixin for a `keras_tuner.Oracle`: every `trial.json` is written by `save_trial`.

    Missing public API: KerasTuner writes a trial's file in the private
    `Oracle._save_trial(trial)`, the only place to make that write atomic.
    """

    def _save_trial(self, trial):
        self.save_trial(trial)


def init_tuner_with_oracle(tuner, oracle, **kwargs):
    """Runs `keras_tuner.Tuner.__init__` on `tuner` (a `kt.Hyperband`) with our oracle.

    Missing public API: `kt.Hyperband.__init__` builds its own `HyperbandOracle` and takes
    none; its trial logic (epochs per round, warm starts) is what we want, on our oracle.
    """
    import keras_tuner as kt

    kt.Tuner.__init__(tuner, oracle=oracle, **kwargs)


def best_epoch_checkpoint(objective, filepath):
    """The checkpoint a KerasTuner trial saves its best epoch with (`Tuner.run_trial`'s).

    Args:
        objective: a `keras_tuner.Objective`.
        filepath: where the best epoch's weights go (`.weights.h5`).

    Missing public API: `SaveBestEpoch` lives in `keras_tuner.src.engine.tuner_utils`.
    """
    from keras_tuner.src.engine.tuner_utils import SaveBestEpoch

    return SaveBestEpoch(objective, filepath)


def is_best_epoch_checkpoint(callback):
    """Whether `callback` is the checkpoint a KerasTuner trial saves its best epoch with.

    Missing public API: `SaveBestEpoch` lives in `keras_tuner.src.engine.tuner_utils`.
    """
    from keras_tuner.src.engine.tuner_utils import SaveBestEpoch

    return isinstance(callback, SaveBestEpoch)


def add_oracle_servicer(oracle, server):
    """Serves `oracle` on a `grpc.server`; returns the servicer.

    Missing public API: KerasTuner's chief is `oracle_chief.start_server`, which reads its
    address from the environment and polls every 20 seconds; its servicer and protocol
    (`keras_tuner.src.protos`) have no public names.
    """
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    return servicer


def chief_may_exit(oracle, servicer):
    """Whether a chief may stop: its workers were told to stop and none is running.

    Missing public API: `oracle_chief.exit_chief` and `OracleServicer.stop_triggered`.
    """
    from keras_tuner.src.distribute import oracle_chief

    return servicer.stop_triggered and oracle_chief.exit_chief(oracle)

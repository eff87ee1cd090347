"""kfound's private Keras and KerasTuner touches live in kfound/_compat.py, and still hold."""

import os
import re

import keras
import keras_tuner as kt
import numpy as np
import pytest

import kfound
import kfound._compat
from kfound import _compat

PACKAGE = os.path.dirname(kfound.__file__)
PRIVATE_KERAS = re.compile(r"\bkeras\.src\b|\bfrom keras import src\b")


def test_no_module_but_compat_imports_keras_src():
    offenders = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or os.path.samefile(path, kfound._compat.__file__):
                continue
            with open(path, encoding="utf-8") as file:
                for number, line in enumerate(file, 1):
                    if PRIVATE_KERAS.search(line):
                        where = f"{os.path.relpath(path, PACKAGE)}:{number}"
                        offenders.append(f"{where}: {line.strip()}")
    assert not offenders, (
        "Private Keras APIs belong in kfound/_compat.py, with a comment naming the missing "
        "public API and a test:\n" + "\n".join(offenders)
    )


PRIVATE_IMPORT = re.compile(r"^\s*(from|import)\s+(keras|keras_tuner)\.src\b"
                            r"|^\s*from\s+(keras|keras_tuner)\s+import\s+src\b")


def test_nothing_but_compat_imports_keras_or_keras_tuner_internals():
    # The library, its tests, benchmarks, recipes and CLIs reach private APIs through
    # kfound/_compat.py only.
    root = os.path.dirname(PACKAGE)
    offenders = []
    for top in ("kfound", "tests", "benchmarks", "recipes", "tuning"):
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in files:
                path = os.path.join(folder, name)
                if not name.endswith(".py") or os.path.samefile(path, kfound._compat.__file__):
                    continue
                with open(path, encoding="utf-8") as file:
                    offenders += [f"{os.path.relpath(path, root)}:{number}: {line.strip()}"
                                  for number, line in enumerate(file, 1)
                                  if PRIVATE_IMPORT.search(line)]
    assert not offenders, "Import private APIs through kfound/_compat.py:\n" + "\n".join(offenders)


def _require(condition, seam, user):
    if not condition:
        pytest.fail(
            f"Keras {keras.version()} no longer has {seam}, which {user} relies on; "
            "see kfound/_compat.py."
        )


def test_stateless_scope_maps_variables_and_passes_gradients():
    # WeightNorm calls the wrapped layer with its kernel variables read as tensors.
    layer = keras.layers.Dense(2, use_bias=False)
    layer.build((1, 3))
    kernel = np.arange(6, dtype="float32").reshape(3, 2)
    with keras.StatelessScope(state_mapping=[(layer.kernel, kernel)]) as scope:
        out = layer(np.ones((1, 3), "float32"))
        mapped = scope.get_current_value(layer.kernel)
    _require(
        np.allclose(keras.ops.convert_to_numpy(out), kernel.sum(0, keepdims=True))
        and mapped is not None,
        "a keras.StatelessScope whose state_mapping a layer's call reads",
        "kfound.layers.WeightNorm",
    )
    assert np.all(keras.ops.convert_to_numpy(layer.kernel) != kernel)


def test_clone_model_takes_a_clone_and_a_call_function():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    calls = []

    def call(layer, *args, **kwargs):
        calls.append(layer.name)
        return layer(*args, **kwargs)

    try:
        copy = keras.models.clone_model(
            model, clone_function=lambda layer: layer.__class__.from_config(layer.get_config()),
            call_function=call, recursive=True,
        )
    except TypeError as error:
        _require(False, f"clone_model(call_function=, recursive=) ({error})",
                 "kfound.layers.replace_batchnorm")
    _require(calls and hasattr(copy, "outputs"), "clone_model's call_function",
             "kfound.layers.replace_batchnorm")
    # Subclassed models have no `outputs`, which is how replace_batchnorm tells them apart.

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    _require(not hasattr(Subclassed(), "outputs"), "Functional-only `outputs`",
             "kfound.layers.replace_batchnorm")


def test_seed_generators_serialize():
    # SparseInitializer keeps a SeedGenerator seed in its config, as Keras's initializers do.
    generator = keras.random.SeedGenerator(3)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(generator)
    )
    _require(isinstance(restored, keras.random.SeedGenerator),
             "serializable keras.random.SeedGenerator", "kfound.initializers.SparseInitializer")


def test_keras_tuner_has_every_private_name_kfound_uses():
    missing = _compat.missing_keras_tuner_private()
    assert not missing, (
        f"KerasTuner {kt.__version__} lacks private APIs that kfound/_compat.py uses: "
        f"{', '.join(missing)}. Update kfound/_compat.py, or pin keras-tuner in setup.cfg."
    )


def test_a_missing_keras_tuner_name_is_reported_by_its_path(monkeypatch):
    monkeypatch.setitem(_compat.KERAS_TUNER_PRIVATE, "keras_tuner.Oracle", ("_no_such_hook",))
    monkeypatch.setitem(_compat.KERAS_TUNER_PRIVATE, "keras_tuner.src.no_such_module",
                        ("Thing",))
    assert set(_compat.missing_keras_tuner_private()) == {
        "keras_tuner.Oracle._no_such_hook", "keras_tuner.src.no_such_module.Thing"}



def test_the_best_epoch_checkpoint_is_the_one_a_keras_tuner_trial_adds(tmp_path):
    # `FinetuneHyperModel.fit` finds KerasTuner's checkpoint among a trial's callbacks.
    seen = []

    class Recorder(kt.HyperModel):
        def build(self, hp):
            return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])

        def fit(self, hp, model, *args, callbacks=(), **kwargs):
            seen.extend(callbacks)
            return 0.0

    objective = kt.Objective("score", "min")
    kt.RandomSearch(Recorder(), objective=objective, max_trials=1,
                    directory=str(tmp_path)).search(verbose=0)
    assert sum(map(_compat.is_best_epoch_checkpoint, seen)) == 1
    assert _compat.is_best_epoch_checkpoint(
        _compat.best_epoch_checkpoint(objective, str(tmp_path / "best.weights.h5")))
    assert not _compat.is_best_epoch_checkpoint(keras.callbacks.ModelCheckpoint(
        str(tmp_path / "model.keras")))

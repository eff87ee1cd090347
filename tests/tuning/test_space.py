"""Search-space files: parsing, and a clear error for each kind of malformed file."""

import json
import os
import pathlib
import subprocess
import sys

import keras_tuner as kt
import pytest

from kfound.tuning import space

ROOT = pathlib.Path(__file__).resolve().parents[2]

GOOD = {
    "model": "mlp",
    "dataset": "digits",
    "objective": "val_accuracy",
    "hyperparameters": {
        "learning_rate": {"type": "float", "min": 1e-4, "max": 1e-1, "sampling": "log"},
        "units": {"type": "int", "min": 16, "max": 64, "step": 16},
        "activation": {"type": "choice", "values": ["relu", "tanh"]},
        "use_bias": {"type": "bool", "default": False},
    },
}


def _with(**changes):
    config = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if key.startswith("hp_"):
            config["hyperparameters"][key[3:]] = value
        elif value is None:
            config.pop(key)
        else:
            config[key] = value
    return config


def test_parse_maps_entries_onto_keras_tuner():
    parsed = space.parse_space(GOOD)
    assert parsed.objective == kt.Objective("val_accuracy", "max")
    hp = parsed.declare(kt.HyperParameters())
    kinds = {h.name: type(h).__name__ for h in hp.space}
    assert kinds == {"learning_rate": "Float", "units": "Int", "activation": "Choice",
                     "use_bias": "Boolean"}
    assert hp.space[0].sampling == "log"
    assert hp.get("use_bias") is False
    # An unstepped float: KerasTuner's 10 samples, and its default (the minimum) first.
    assert parsed.grid_size() == 11 * 4 * 2 * 2


def test_example_spaces_all_parse():
    files = sorted(ROOT.joinpath("tuning", "spaces").glob("*.*"))
    assert {space.load_space(f).model for f in files} == {"mlp", "cnn", "finetune"}


@pytest.mark.parametrize("config, match", [
    ([1, 2], r"must hold a mapping"),
    (_with(extra=1), r"unknown key 'extra'.*Received: extra=1"),
    (_with(model=None), r"'model' is required"),
    (_with(model="resnet"), r"`model` must be one of .*Received: model='resnet'"),
    (_with(dataset="tfds:mnist"), r"model 'mlp' cannot search on dataset 'tfds:mnist': it "
     r"takes \['digits'\], and tfds:NAME is for model finetune\. Received: dataset='tfds:mnist'"),
    (_with(dataset="embedded"), r"cannot search on dataset 'embedded'.*Received: dataset="),
    (_with(dataset="imagenet"), r"`dataset` must be one of \['digits', 'embedded', 'tfds:NAME', "
     r"'folder:PATH'\].*Received: dataset='imagenet'"),
    (_with(dataset="tfds:"), r"NAME and PATH non-empty\)\. Received: dataset='tfds:'"),
    (_with(objective="val_auc"), r"metric the model reports.*Received: objective='val_auc'"),
    (_with(objective={"name": "val_loss", "direction": "down"}), r"`min` or `max`"),
    (_with(hyperparameters={}), r"non-empty mapping"),
    (_with(hp_momentum={"type": "float", "min": 0, "max": 1}),
     r"'momentum' is not used by model 'mlp'.*Received: momentum="),
    (_with(hp_units={"type": "integer", "min": 1, "max": 2}), r"'units': unknown type 'integer'"),
    (_with(hp_units=[16, 32]), r"'units': an entry must be a mapping"),
    (_with(hp_units={"type": "int", "min": 64, "max": 16}),
     r"'units': `min` \(64\) must be <= `max` \(16\).*Received: units="),
    (_with(hp_units={"type": "int", "max": 16}), r"'units': `min` is required"),
    (_with(hp_units={"type": "int", "min": 1.5, "max": 16}), r"'units': `min` must be an integer"),
    (_with(hp_learning_rate={"type": "float", "min": 0.0, "max": 0.1, "sampling": "log"}),
     r"'learning_rate': log sampling needs `min` > 0"),
    (_with(hp_learning_rate={"type": "float", "min": 0.1, "max": 0.2, "sampling": "cubic"}),
     r"`sampling` must be one of \['linear', 'log'\]"),
    (_with(hp_dropout={"type": "float", "min": 0.0, "max": 0.5, "step": -0.1}),
     r"'dropout': `step` must be > 0"),
    (_with(hp_dropout={"type": "float", "min": 0.0, "max": 0.5, "default": 0.9}),
     r"'dropout': `default` 0.9 is outside"),
    (_with(hp_dropout={"type": "float", "min": 0.0, "max": 1.5}),
     r"'dropout': value 1.5 is invalid"),
    (_with(hp_activation={"type": "choice", "values": []}), r"'activation': `values` .* non-empty"),
    (_with(hp_activation={"type": "choice", "values": ["relu", "relu"]}), r"duplicates"),
    (_with(hp_activation={"type": "choice", "values": ["relu", 3]}), r"one type"),
    (_with(hp_activation={"type": "choice", "values": ["relu"], "default": "tanh"}),
     r"`default` 'tanh' is not one of `values`"),
    (_with(hp_activation={"type": "choice", "values": ["relu", "swishy"]}),
     r"'activation': value 'swishy' is invalid: expected a Keras activation"),
    (_with(hp_activation={"type": "choice", "values": ["relu"], "min": 1}),
     r"key 'min' does not apply to type 'choice'"),
    (_with(hp_optimizer={"type": "choice", "values": ["adam", "lbfgs"]}),
     r"'optimizer': value 'lbfgs' is invalid"),
    (_with(hp_normalization={"type": "choice", "values": ["batch", "layer"]}),
     r"'normalization': value 'layer' is invalid"),
    (_with(hp_initializer={"type": "choice", "values": ["he_normal", "zeros?"]}),
     r"'initializer': value 'zeros\?' is invalid"),
    (_with(hp_layers={"type": "float", "min": 1, "max": 3}), r"'layers': takes a int"),
    (_with(hp_layers={"type": "int", "min": 0, "max": 3}), r"'layers': value 0 is invalid"),
    (_with(hp_use_bias={"type": "bool", "default": "yes"}), r"`default` of a bool"),
    (_with(hp_batch_size={"type": "choice", "values": [16.0, 32.5]}), r"'batch_size': takes a int"),
])
def test_malformed_spaces_are_rejected(config, match):
    with pytest.raises(ValueError, match=match):
        space.parse_space(config, source="bad.yaml")


def test_load_space_reads_through_the_bounded_reader(tmp_path):
    # kfound.tuning.space_file's bounds apply to `load_space` (tests/tuning/test_space_file.py).
    path = tmp_path / "aliases.yaml"
    path.write_text("model: mlp\ndataset: digits\nhyperparameters:\n"
                    "  units: &range {type: int, min: 4, max: 32}\n  layers: *range\n"
                    "  learning_rate: {type: float, min: 1e-4, max: 1e-2}\n")
    parsed = space.load_space(path)
    assert parsed.hyperparameters["layers"].max == 32
    assert parsed.hyperparameters["learning_rate"].min == 1e-4
    path.write_text("model: mlp\ndataset: digits\nmodel: cnn\nhyperparameters: {}\n")
    with pytest.raises(ValueError, match=r"aliases\.yaml: the file is refused: the key 'model' "
                       r"is given twice"):
        space.load_space(path)


def test_long_values_are_cut_in_messages():
    config = {**GOOD, "model": "x" * 100_000}
    with pytest.raises(ValueError, match=r"Received: model='x+\.\.\.x+'$") as error:
        space.parse_space(config, source="long.yaml")
    assert len(str(error.value)) < 400


def test_reading_an_mlp_or_cnn_space_imports_no_tensorflow():
    # The models' rules live apart from the hypermodels, which reach TensorFlow through
    # kfound.finetune. Under JAX, Keras and KerasTuner do not import it either.
    code = ("import sys; from kfound.tuning import space; "
            "[space.load_space(f'tuning/spaces/{name}') for name in ('mlp.yaml', 'cnn.yaml', "
            "'mlp_grid.json')]; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                        "KERAS_BACKEND": "jax"}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"

"""`tuning/search.py` without TensorFlow, and under DataParallel over two JAX devices.

Each test runs its searches in fresh JAX processes, whatever this process's backend, so
they run once, in the TensorFlow pass of `make test`.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="runs its own JAX processes; once, in the TensorFlow pass, is enough")

FIXED = {  # One point, so that two runs train the same model.
    "model": "mlp", "dataset": "digits", "objective": "val_loss",
    "hyperparameters": {"units": {"type": "choice", "values": [16]},
                        "batch_size": {"type": "choice", "values": [32]}},
}


def _jax(code, tmp_path, devices=1):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_an_mlp_and_a_cnn_search_run_without_tensorflow(tmp_path):
    code = f"""
import sys
sys.modules["tensorflow"] = None  # As if TensorFlow were not installed.
from kfound.tuning import search
for model in ("mlp", "cnn"):
    search.main(["--space", f"tuning/spaces/{{model}}.yaml", "--smoke", "--max-trials", "1",
                 "--quiet", "--output", f"{tmp_path}/{{model}}"])
print(sys.modules["tensorflow"])
"""
    assert _jax(code, tmp_path).strip().splitlines()[-1] == "None"
    for model in ("mlp", "cnn"):
        best = json.loads((tmp_path / model / "best.json").read_text())
        assert best["distribution"] == {"kind": "none", "devices": 1}
        assert (tmp_path / model / "best_model.keras").exists()
        # TensorBoard's HParams dashboard is written without TensorFlow too.
        assert (tmp_path / model / "tensorboard" / "0" / "events.out.tfevents.kfound").exists()


def test_data_parallel_over_two_devices_equals_one_device(tmp_path):
    space = tmp_path / "fixed.json"
    space.write_text(json.dumps(FIXED))
    scores = {}
    for devices in (1, 2):
        output = tmp_path / f"run{devices}"
        code = f"""
from kfound import distribution
from kfound.tuning import search
search.main(["--space", "{space}", "--smoke", "--max-trials", "1", "--quiet",
             "--output", "{output}"])
import keras_tuner as kt
from kfound.tuning import hypermodels
model = hypermodels.MLPHyperModel((8, 8, 1), 10).build(kt.HyperParameters())
print("devices per variable:", {{len(w.value.sharding.device_set) for w in model.weights}})
try:
    distribution.check_batch_size(33)
except ValueError as e:
    print(e)
"""
        printed = _jax(code, tmp_path, devices)
        best = json.loads((output / "best.json").read_text())
        scores[devices] = best["score"]
        assert f"devices per variable: {{{devices}}}" in printed
        if devices == 2:
            assert best["distribution"] == {"kind": "DataParallel", "devices": 2}
            assert ("Argument `batch_size` must be divisible by the 2 devices that "
                    "keras.distribution.DataParallel splits each batch across. "
                    "Received: batch_size=33") in printed
        else:
            assert best["distribution"] == {"kind": "none", "devices": 1}
    assert scores[2] == pytest.approx(scores[1], rel=1e-4)


def test_a_finetune_search_trains_under_data_parallel_over_two_devices(tmp_path):
    weights = tmp_path / "small.weights.h5"
    shared = tmp_path / "shared.json"  # head trials on one pretrained backbone
    shared.write_text(json.dumps({
        "model": "finetune", "dataset": "embedded",
        "hyperparameters": {"state": {"type": "choice", "values": ["head"]},
                            "weights": {"type": "choice", "values": [str(weights)]},
                            "learning_rate": {"type": "float", "min": 0.01, "max": 0.1}}}))
    code = f"""
from kfound import backbones
from kfound.tuning import search
search.main(["--space", "tuning/spaces/finetune.yaml", "--tuner", "random", "--smoke",
             "--max-trials", "1", "--quiet", "--output", "{tmp_path / 'run'}"])
backbones.small_conv_net(16).save_weights("{weights}")
shared = search.main(["--space", "{shared}", "--tuner", "random", "--smoke",
                      "--max-trials", "2", "--quiet", "--output", "{tmp_path / 'shared'}"])
import keras_tuner as kt
from kfound.tuning import finetune_hypermodel
hypermodel = finetune_hypermodel.FinetuneHyperModel("embedded")
hp = kt.HyperParameters()
model = hypermodel.build(hp)
print("devices per variable:", {{len(w.value.sharding.device_set) for w in model.weights}})
print("validation images:", hypermodel.data(hp).val_examples)
import keras
import kfound.finetune
best = keras.saving.load_model("{tmp_path / 'shared' / 'best_model.keras'}")
best.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
_, accuracy = best.evaluate(hypermodel.data(hp).val, verbose=0)
print("best model scores its trial's score:", abs(accuracy - shared["score"]) < 1e-6)
"""
    printed = _jax(code, tmp_path, devices=2)
    assert "devices per variable: {2}" in printed
    assert "validation images: 878" in printed  # 879, cut so that every batch splits
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["distribution"] == {"kind": "DataParallel", "devices": 2}
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["COMPLETED"]
    # The second head trial trains on the first one's compiled head, split the same way.
    trials = json.loads((tmp_path / "shared" / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["COMPLETED", "COMPLETED"]
    assert "best model scores its trial's score: True" in printed

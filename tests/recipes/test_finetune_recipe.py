import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import warnings

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from finetune_test_utils import write_image_folder

from kfound import backbones

RECIPE = pathlib.Path(__file__).resolve().parents[2] / "recipes" / "finetune.py"

METRIC_KEYS = {
    "state", "backbone", "weights", "dataset", "num_classes", "train_examples", "val_examples",
    "val_accuracy", "val_loss", "epochs", "train_seconds", "examples_per_second", "skipped_files",
}

def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_all_states_on_the_embedded_default(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    rows = recipe.main(["--smoke", "--output", str(out)])
    assert [r["state"] for r in rows] == ["head", "full", "scratch", "predict"]
    table = capsys.readouterr().out
    assert "state    val_accuracy  trainable_params  seconds" in table
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["rows"] == json.loads(json.dumps(rows))
    for state in ("head", "full", "scratch"):
        folder = out / state
        metrics = json.loads((folder / "metrics.json").read_text())
        assert METRIC_KEYS <= set(metrics) and metrics["state"] == state
        assert json.loads((folder / "classes.json").read_text()) == ["even", "odd"]
        for name in ("model.keras", "history.csv", "curves.png"):
            assert (folder / name).stat().st_size > 0
        assert not (folder / "backup").exists()
    head, full = (json.loads((out / s / "metrics.json").read_text()) for s in ("head", "full"))
    assert head["trainable_params"] < full["trainable_params"]
    assert head["weights"].endswith(".keras")  # the backbone pretrained on half A
    predictions = _read_csv(out / "predict" / "predictions.csv")
    assert {p["label"] for p in predictions} <= {"even", "odd"}
    assert (out / "args.json").exists() and (out / "curves.png").exists()
    history = _read_csv(out / "full" / "history.csv")
    full = json.loads((out / "full" / "metrics.json").read_text())
    assert full["epochs_trained"] == len(history) == 3
    assert full["train_seconds"] > 0
    # The same command again reuses every finished state instead of training anew; a
    # different output folder for the feature cache changes no result.
    recipe.main(["--smoke", "--output", str(out), "--feature-cache", str(tmp_path / "f")])
    assert capsys.readouterr().out.count("finished earlier with the same arguments") == 3
    # Another result-changing argument is refused before any work, naming what differs.
    with pytest.raises(ValueError, match=r"--learning-rate 0\.003 -> 0\.01.*--overwrite"):
        recipe.main(["--smoke", "--output", str(out), "--learning-rate", "0.01"])


def test_head_on_tfds_with_a_mobilenet(recipe, tmp_path):
    with tfds.testing.mock_data(num_examples=8):
        metrics = recipe.main([
            "--smoke", "--state", "head", "--dataset", "tfds:tf_flowers", "--backbone",
            "MobileNet", "--alpha", "0.25", "--image-size", "32", "--weights", "none",
            "--batch-size", "4", "--output", str(tmp_path),
        ])
    assert metrics["num_classes"] == 5 and metrics["weights"] is None
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert model.input_shape == (None, 32, 32, 3)


def test_full_on_a_folder_then_predict_files(recipe, tmp_path, shared_weights_dir):
    photos = write_image_folder(tmp_path / "photos", per_class=5)
    weights = str(shared_weights_dir / "mobilenet_2_5_224_tf_no_top.h5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = recipe.main([
            "--smoke", "--state", "full", "--dataset", f"folder:{photos}", "--backbone",
            "MobileNet", "--alpha", "0.25", "--image-size", "32", "--weights", weights,
            "--batch-size", "4", "--unfreeze-from", "0.5", "--augment", "--balance",
            "--output", str(tmp_path / "full"),
        ])
        # The one warning is the folder's: no trainer runs out of data (the pipelines know
        # their lengths), and the saved model loads without a stale optimizer.
        predicted = recipe.main([
            "--state", "predict", "--model", str(tmp_path / "full" / "model.keras"),
            "--images", str(photos), "--output", str(tmp_path / "predict"),
        ])
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and "fewer than 5 validation images" in messages[0], messages
    assert metrics["skipped_files"] == 2 and metrics["num_classes"] == 2
    assert [os.path.basename(f) for f in metrics["corrupt_files"]] == ["broken.jpg"]
    rows = _read_csv(tmp_path / "predict" / "predictions.csv")
    assert len(rows) == 10 and predicted["skipped_files"] == 2
    assert predicted["corrupt_files"] == metrics["corrupt_files"]
    assert {r["label"] for r in rows} <= {"china", "flower"}


def test_head_on_a_class_without_a_readable_image_is_refused_without_args_json(recipe,
                                                                              tmp_path):
    photos = write_image_folder(tmp_path / "photos", per_class=5)
    for image in (photos / "flower").glob("*.png"):
        image.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"flower.*Received: "):
        recipe.main(["--smoke", "--state", "head", "--dataset", f"folder:{photos}",
                     "--image-size", "16", "--output", str(tmp_path / "head")])
    assert not (tmp_path / "head" / "args.json").exists()


def test_head_on_a_folder_names_its_corrupt_files_without_a_checking_pass(recipe, tmp_path,
                                                                          capsys):
    photos = write_image_folder(tmp_path / "photos", per_class=5)
    argv = ["--smoke", "--state", "head", "--dataset", f"folder:{photos}", "--image-size",
            "16", "--output", str(tmp_path / "head")]
    with pytest.warns(UserWarning, match=r"fewer than 5 validation images"):
        metrics = recipe.main(argv)
    assert "1 files skipped (corrupt files are dropped as they" in capsys.readouterr().out
    assert metrics["skipped_files"] == 2 and metrics["features"]["source"] == "computed"
    assert [os.path.basename(f) for f in metrics["corrupt_files"]] == ["broken.jpg"]
    assert metrics["train_examples"] + metrics["val_examples"] == 10


@pytest.mark.parametrize("argv, match", [
    (["--backbone", "MobileNetV9"], r"must be one of SmallConvNet.*Received: backbone="),
    (["--dataset", "s3:bucket"], r"must be one of embedded.*Received: dataset='s3:bucket'"),
    (["--backbone", "MobileNet", "--image-size", "16", "--weights", "none"],
     r"below the minimum.*Received: image_size=16"),
    (["--state", "predict"], r"`images` is required.*Received: images=None"),
    (["--state", "predict", "--model", "nowhere/model.keras"],
     r"saved by this recipe.*Received: model='nowhere/model.keras'"),
])
def test_bad_command_lines_are_clear_errors(recipe, tmp_path, argv, match):
    with pytest.raises(ValueError, match=match):
        recipe.main([*argv, "--smoke", "--output", str(tmp_path)])


@pytest.mark.parametrize("argv, match", [
    (["--epochs", "0"], r"`--epochs` must be a positive integer\. Received: epochs=0$"),
    (["--epochs", "-1"], r"Received: epochs=-1$"),
    (["--fine-tune-epochs", "-1"], r"`--fine-tune-epochs`.*Received: fine_tune_epochs=-1$"),
    (["--learning-rate", "nan"], r"`--learning-rate` must be a finite positive number\. "
                                 r"Received: learning_rate=nan$"),
    (["--learning-rate", "-1"], r"Received: learning_rate=-1\.0$"),
    (["--fine-tune-learning-rate", "inf"], r"Received: fine_tune_learning_rate=inf$"),
    (["--image-size", "0"], r"`--image-size` must be a positive integer\. Received: image_size=0$"),
    (["--image-size", "4"], r"at least 8 for backbone SmallConvNet\. Received: image_size=4$"),
    (["--unfreeze-from", "1.5"], r"in \[0, 1\), or a layer name\. Received: unfreeze_from=1\.5$"),
    (["--unfreeze-from", "no_such_layer"], r"must name a layer.*"
                                           r"Received: unfreeze_from='no_such_layer'$"),
    (["--seed", "-1"], r"`--seed` must be an integer in \[0, 4294967295\]\. Received: seed=-1$"),
])
def test_bad_flags_are_refused_before_any_work(recipe, tmp_path, argv, match):
    with pytest.raises(ValueError, match=match):
        recipe.main([*argv, "--output", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()  # no args.json, no backup, no pretraining


def test_the_recipe_mirrors_the_library_constants(recipe):
    assert recipe.SMALL_BACKBONE == backbones.SMALL_BACKBONE
    assert recipe.SMALL_BACKBONE_MIN_SIZE == backbones.SMALL_BACKBONE_MIN_SIZE
    for name in backbones.backbone_names()[:3]:
        assert recipe.default_image_size(name) == backbones.default_image_size(name)


def _run_recipe(code, tmp_path, **env):
    """Runs `code` in a fresh Python; `env` adds variables, or removes those set to `None`."""
    environment = {**os.environ, "KERAS_HOME": str(tmp_path / "keras_home"), **env}
    environment = {key: value for key, value in environment.items() if value is not None}
    # `python recipes/finetune.py` puts recipes/ on sys.path; runpy.run_path does not.
    code = f"import sys\nsys.path.insert(0, {str(RECIPE.parent)!r})\n{code}"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, timeout=300, cwd=tmp_path)


def test_a_bad_flag_fails_at_once_without_importing_tensorflow(tmp_path):
    code = (
        "import os, runpy, sys\n"
        "sys.argv = ['finetune.py', '--epochs', '0']\n"
        f"try:\n    runpy.run_path({str(RECIPE)!r}, run_name='__main__')\n"
        "except SystemExit as exit:\n    print(exit.code)\n"
        "print('imported:', sorted({'tensorflow', 'keras', 'kfound'} & set(sys.modules)))\n"
        "print('allocator:', os.environ.get('TF_CPU_ALLOCATOR_USE_BFC'))\n"
    )
    error = "finetune.py: error: Argument `--epochs` must be a positive integer. Received: epochs=0"
    result = _run_recipe(code, tmp_path, TF_CPU_ALLOCATOR_USE_BFC=None)
    # TensorFlow's CPU allocator is chosen before TensorFlow starts, which reads it then.
    assert result.stdout.splitlines() == [error, "imported: []", "allocator: true"], result.stderr
    result = _run_recipe(code, tmp_path, TF_CPU_ALLOCATOR_USE_BFC="false")  # the user's wins
    assert result.stdout.splitlines()[-1] == "allocator: false", result.stderr


_OFFLINE_ARGS = ["--weights", "imagenet", "--backbone", "MobileNet", "--alpha", "0.25",
                 "--image-size", "32", "--state", "head", "--smoke"]


# keras.applications warns that ImageNet weights exist for 128-224 px only: the test asks for
# 32 px on purpose, to stay fast.
@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square:UserWarning")
def test_offline_imagenet_weights_are_a_clear_error(recipe, tmp_path):
    name = "mobilenet_2_5_224_tf_no_top.h5"
    home = os.environ.get("KERAS_HOME", os.path.expanduser(os.path.join("~", ".keras")))
    if (pathlib.Path(home) / "models" / name).exists():
        pytest.skip(f"{name} is in the Keras cache, so nothing is downloaded")
    try:
        with pytest.raises(ValueError, match=r"needs the internet.*--weights PATH\. "
                                             r"Received: weights='imagenet'$"):
            recipe.main([*_OFFLINE_ARGS, "--output", str(tmp_path / "run")])
    except pytest.fail.Exception:
        pytest.skip("the ImageNet weights were downloaded: this machine is online")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_offline_imagenet_weights_are_one_line_without_a_traceback(tmp_path):
    # KERAS_HOME is empty, so the weights must be downloaded; this machine is offline.
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['finetune.py', *{_OFFLINE_ARGS!r}, '--output', 'run']\n"
        f"runpy.run_path({str(RECIPE)!r}, run_name='__main__')\n"
    )
    result = _run_recipe(code, tmp_path)
    if result.returncode == 0:
        pytest.skip("the ImageNet weights were downloaded: this machine is online")
    lines = [line for line in result.stderr.splitlines() if line.startswith("finetune.py:")]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert "needs the internet" in lines[0] and "--weights PATH" in lines[0]
    assert lines[0].endswith("Received: weights='imagenet'")
    assert not (tmp_path / "run").exists()


def test_check_rerun_names_every_differing_argument_and_overwrite_starts_over(recipe, tmp_path):
    out = tmp_path / "run"
    (out / "full" / "backup").mkdir(parents=True)
    (out / "features").mkdir()
    old = recipe.parse_args(["--epochs", "30", "--augment", "--output", str(out)])
    (out / "args.json").write_text(json.dumps(vars(old)))
    new = recipe.parse_args(["--epochs", "10", "--output", str(out), "--feature-cache", "x"])
    with pytest.raises(ValueError) as error:
        recipe.check_rerun(out, new)
    message = str(error.value)
    assert "--epochs 30 -> 10" in message and "--augment True -> False" in message
    assert "feature" not in message and "pass --overwrite to start over" in message
    assert message.endswith(f"Received: output={str(out)!r}")
    new.overwrite = True
    recipe.check_rerun(out, new)
    assert sorted(p.name for p in out.iterdir()) == ["features"]  # caches are kept
    new.overwrite = False
    recipe.check_rerun(out, new)  # nothing left to disagree with


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    argv = [sys.executable, str(RECIPE), "--state", "full", "--weights", "none",
            "--epochs", "10", "--fine-tune-epochs", "10"]
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras_home")}
    subprocess.run([*argv, "--output", "whole"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=600)
    process = subprocess.Popen([*argv, "--output", "killed"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (tmp_path / "killed" / "backup" / "phase2" / "epoch-0013").exists():
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    subprocess.run([*argv, "--output", "killed"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=600)
    whole, resumed = (json.loads((tmp_path / run / "metrics.json").read_text())
                      for run in ("whole", "killed"))
    assert resumed["val_accuracy"] == pytest.approx(whole["val_accuracy"], abs=1e-6)
    assert resumed["val_loss"] == pytest.approx(whole["val_loss"], rel=1e-5)
    assert resumed["epochs_trained"] == 20
    assert len(_read_csv(tmp_path / "killed" / "history.csv")) == 20


def _run_under_jax(tmp_path, devices, state, *flags, check=True):
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    output = tmp_path / f"devices{devices}"
    run = subprocess.run([sys.executable, str(RECIPE), "--smoke", "--state", state,
                          "--output", str(output), *flags], env=env, capture_output=True,
                         text=True)
    assert not check or run.returncode == 0, run.stderr[-3000:]
    return output, run


@pytest.mark.backend_independent  # its subprocess runs JAX, whatever this backend
def test_two_jax_devices_fine_tune_under_data_parallel(tmp_path):
    one, _ = _run_under_jax(tmp_path, 1, "head")
    two, run = _run_under_jax(tmp_path, 2, "all")
    single = json.loads((one / "metrics.json").read_text())
    assert single["distribution"] == {"kind": "none", "devices": 1}
    for state in ("head", "full", "scratch"):
        metrics = json.loads((two / state / "metrics.json").read_text())
        assert metrics["distribution"] == {"kind": "DataParallel", "devices": 2}, state
        # The smoke task's 895 validation images lose one, so that every batch splits.
        assert (metrics["train_examples"], metrics["val_examples"]) == (4, 894)
    assert "1 validation images left out so that every batch splits across the 2 devices" \
        in run.stdout
    # The same training batches on one device and on two give the same losses.
    losses = [[float(row["loss"]) for row in _read_csv(folder / "history.csv")]
              for folder in (one, two / "head")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    head = json.loads((two / "head" / "metrics.json").read_text())
    assert head["val_accuracy"] == pytest.approx(single["val_accuracy"], abs=1 / 894 + 1e-6)
    assert (two / "predict" / "predictions.csv").exists()


@pytest.mark.backend_independent  # its subprocess runs JAX, whatever this backend
def test_a_batch_size_that_does_not_split_across_the_devices_is_refused(tmp_path):
    output, run = _run_under_jax(tmp_path, 2, "head", "--batch-size", "3", check=False)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].endswith(
        "error: Argument `batch_size` must be divisible by the 2 devices that "
        "keras.distribution.DataParallel splits each batch across. Received: batch_size=3")
    assert not output.exists()  # refused before the run started


def test_predict_with_a_model_of_an_unregistered_kfound_class_says_so(recipe, tmp_path):
    from test_io_utils import save_model_with_an_unregistered_class

    save_model_with_an_unregistered_class(tmp_path / "model.keras")
    (tmp_path / "classes.json").write_text('["a", "b"]')
    with pytest.raises(ValueError, match=r"uses the class `kfound>Vanished`.*`import kfound`.*"
                                         r"Received: model='.*model\.keras'$"):
        recipe.main(["--state", "predict", "--model", str(tmp_path / "model.keras"),
                     "--images", str(tmp_path), "--output", str(tmp_path / "predict")])
    assert not (tmp_path / "predict").exists()

import csv
import json

import keras
import pytest
import tensorflow_datasets as tfds
from finetune_test_utils import write_image_folder

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
    # The same command again reuses every finished state instead of training anew.
    recipe.main(["--smoke", "--output", str(out)])
    assert capsys.readouterr().out.count("finished earlier with the same arguments") == 3


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
    metrics = recipe.main([
        "--smoke", "--state", "full", "--dataset", f"folder:{photos}", "--backbone", "MobileNet",
        "--alpha", "0.25", "--image-size", "32", "--weights", weights, "--batch-size", "4",
        "--unfreeze-from", "0.5", "--augment", "--balance", "--output", str(tmp_path / "full"),
    ])
    assert metrics["skipped_files"] == 2 and metrics["num_classes"] == 2
    predicted = recipe.main([
        "--state", "predict", "--model", str(tmp_path / "full" / "model.keras"),
        "--images", str(photos), "--output", str(tmp_path / "predict"),
    ])
    rows = _read_csv(tmp_path / "predict" / "predictions.csv")
    assert len(rows) == 10 and predicted["skipped_files"] == 2
    assert {r["label"] for r in rows} <= {"china", "flower"}


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

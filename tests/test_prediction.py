import csv

import keras
import numpy as np
import pytest
from finetune_test_utils import (
    embedded_data,
    small_classifier,
    with_top_weights_file,
    write_image_folder,
)

from kfound import data, prediction


def test_predict_writes_class_names_not_indices(tmp_path):
    loaded = data.load_image_data(f"folder:{write_image_folder(tmp_path / 'img', per_class=3)}",
                                  image_size=16, batch_size=4)
    classifier = small_classifier(loaded)
    prediction.save_classifier(classifier.model, loaded.class_names, tmp_path / "run")
    model, names = prediction.load_classifier(tmp_path / "run" / "model.keras")
    assert names == ["china", "flower"]
    rows, skipped = prediction.predict_files(model, tmp_path / "img", names)
    assert skipped == 2 and len(rows) == 6
    prediction.write_predictions_csv(tmp_path / "predictions.csv", rows)
    with open(tmp_path / "predictions.csv") as f:
        read = list(csv.DictReader(f))
    assert {r["label"] for r in read} <= {"china", "flower"}
    assert all(0.0 <= float(r["probability"]) <= 1.0 for r in read)


def test_predict_files_keeps_each_prediction_with_its_file(tmp_path, capsys):
    root = write_image_folder(tmp_path / "img", per_class=5)
    model = small_classifier(embedded_data(image_size=24)).model
    rows, skipped = prediction.predict_files(model, root, ["even", "odd"], batch_size=4,
                                           verbose=1)
    assert "11/11" in capsys.readouterr().out  # the progress bar counts the 11 image files
    files = [f for f in data.image_candidates(str(root))[0] if not f.endswith("broken.jpg")]
    assert skipped == 2 and [f for f, _, _ in rows] == files
    images = np.stack([x for _, x in
                       data.named_image_files_dataset(files, 24).as_numpy_iterator()])
    probabilities = model.predict(images, verbose=0)
    np.testing.assert_allclose([p for _, _, p in rows], probabilities.max(axis=-1), rtol=1e-5)
    assert [label for _, label, _ in rows] == [
        ["even", "odd"][i] for i in probabilities.argmax(axis=-1)
    ]


@pytest.mark.parametrize("files, match", [
    ({}, r"at least one readable image \(0 files skipped\)\. Received: images="),
    ({"broken.jpg": b"not a jpeg", "notes.txt": b"text"},
     r"at least one readable image \(2 files skipped\)\. Received: images="),
])
def test_predict_files_without_readable_images_is_a_clear_error(tmp_path, files, match):
    for name, contents in files.items():
        (tmp_path / name).write_bytes(contents)
    model = small_classifier(embedded_data()).model
    with pytest.raises(ValueError, match=match):
        prediction.predict_files(model, tmp_path, ["even", "odd"])


def test_imagenet_classifier_from_awith_top_weights_file(tmp_path):
    _, path = with_top_weights_file(tmp_path)
    model, decode = prediction.imagenet_classifier("MobileNet", path, image_size=32, alpha=0.25)
    assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 1000)
    assert decode is keras.applications.mobilenet.decode_predictions

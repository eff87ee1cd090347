import collections
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from finetune_test_utils import write_image_folder
from sklearn.datasets import load_digits

from kfound import data


def test_embedded_is_digits_5_to_9_with_a_small_training_set():
    loaded = data.load_image_data("embedded", image_size=16, batch_size=8, train_per_class=3)
    assert loaded.class_names == ["5", "6", "7", "8", "9"]
    assert loaded.train_examples == 15
    assert loaded.train_examples + loaded.val_examples == int(np.sum(load_digits().target >= 5))
    images, labels = next(iter(loaded.train))
    assert images.shape == (8, 16, 16, 3) and images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
    assert float(tf.reduce_max(images)) > 100.0  # [0, 255], not [0, 1]
    assert set(labels.numpy().tolist()) <= set(range(5))


def test_embedded_source_and_target_tasks_do_not_share_digits():
    (x, y), (x_val, y_val), names = data.embedded_digits("source")
    assert names == ["0", "1", "2", "3", "4"] and y.max() == 4 and y_val.max() == 4
    assert x.shape[1:] == (8, 8, 1)
    (_, y_t), _, names_t = data.embedded_digits("target", train_per_class=4)
    assert names_t == ["5", "6", "7", "8", "9"]
    assert collections.Counter(y_t.tolist()) == {c: 4 for c in range(5)}


def test_folder_of_real_images_skips_and_counts_bad_files(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=5)
    loaded = data.load_image_data(f"folder:{root}", image_size=24, batch_size=4,
                                  validation_fraction=0.2)
    assert loaded.class_names == ["china", "flower"]
    assert loaded.skipped_files == 2
    assert loaded.train_examples + loaded.val_examples == 10
    assert loaded.val_examples == 2
    seen = 0
    for images, labels in loaded.train:
        assert images.shape[1:] == (24, 24, 3)
        seen += int(labels.shape[0])
    assert seen == loaded.train_examples


def test_folder_with_train_and_val_subfolders(tmp_path):
    write_image_folder(tmp_path / "split" / "train", per_class=4, corrupt=False)
    write_image_folder(tmp_path / "split" / "val", per_class=2)
    loaded = data.load_image_data(f"folder:{tmp_path / 'split'}", image_size=16)
    assert (loaded.train_examples, loaded.val_examples, loaded.skipped_files) == (8, 4, 2)


def test_tfds_dataset_through_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        loaded = data.load_image_data("tfds:tf_flowers", image_size=20, batch_size=4)
        images, labels = next(iter(loaded.train))
    assert loaded.class_names == ["dandelion", "daisy", "tulips", "sunflowers", "roses"]
    assert images.shape == (4, 20, 20, 3) and labels.dtype == tf.int32
    assert loaded.train_examples > 0 and loaded.val_examples > 0


def test_balance_makes_classes_equally_likely():
    labels = np.array([0] * 90 + [1] * 10, dtype="int32")
    dataset = tf.data.Dataset.from_tensor_slices((labels.astype("float32"), labels))
    counts = collections.Counter()
    for seed in range(5):
        balanced = data.balance_classes(dataset, 2, 100, seed=seed)
        counts.update(int(y) for _, y in balanced.as_numpy_iterator())
    assert sum(counts.values()) == 500
    assert abs(counts[1] / 500 - 0.5) < 0.08  # was 0.1 before resampling


def test_balanced_pipeline_keeps_the_epoch_length():
    loaded = data.load_image_data("embedded", image_size=8, batch_size=5, balance=True,
                                  train_per_class=2)
    assert sum(int(y.shape[0]) for _, y in loaded.train) == 10


def test_augmentation_keeps_shapes():
    augment = data.augmentation_layers(seed=1)
    images = tf.random.uniform((2, 16, 16, 3), 0, 255)
    assert augment(images, training=True).shape == (2, 16, 16, 3)
    loaded = data.load_image_data("embedded", image_size=16, augment=augment, train_per_class=2)
    assert loaded.augmented and next(iter(loaded.train))[0].shape[1:] == (16, 16, 3)


def _one_class(tmp_path):
    write_image_folder(tmp_path / "one", per_class=3, corrupt=False)
    shutil.rmtree(tmp_path / "one" / "flower")
    return f"folder:{tmp_path / 'one'}"


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return f"folder:{tmp_path / 'empty'}"


def _no_images(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "noimg" / name).mkdir(parents=True)
        (tmp_path / "noimg" / name / "x.txt").write_text("text")
    return f"folder:{tmp_path / 'noimg'}"


@pytest.mark.parametrize(
    "make_spec, match",
    [
        (lambda p: "imagenet", r"`dataset` must be one of embedded.*Received: dataset='imagenet'"),
        (lambda p: "hf:beans", r"must be one of.*Received: dataset='hf:beans'"),
        (_empty, r"no sub-folders\. Received: dataset='folder:.*empty'"),
        (lambda p: f"folder:{p / 'missing'}", r"existing folder\. Received: dataset="),
        (_one_class, r"at least two classes.*Received: dataset='folder:.*one'"),
        (_no_images, r"readable images.*2 files skipped\)\. Received: dataset="),
        (lambda p: "tfds:no_such_dataset_xyz", r"names no TFDS dataset.*Received: dataset="),
    ],
)
def test_bad_datasets_are_clear_errors(tmp_path, make_spec, match):
    with pytest.raises(ValueError, match=match):
        data.load_image_data(make_spec(tmp_path), image_size=16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 0}, r"`image_size` must be a positive integer\. Received: image_size=0"),
        ({"image_size": 8, "batch_size": 1.5}, r"Received: batch_size=1\.5"),
        ({"image_size": 8, "validation_fraction": 1.0}, r"Received: validation_fraction=1\.0"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load_image_data("embedded", **kwargs)

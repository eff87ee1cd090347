import collections
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from finetune_test_utils import write_image_folder
from sklearn.datasets import load_digits

from kfound import data


def test_embedded_is_digit_parity_with_a_small_training_set():
    loaded = data.load_image_data("embedded", image_size=16, batch_size=8, train_per_class=3)
    assert loaded.class_names == ["even", "odd"]
    assert loaded.train_examples == 6
    (x, _), (x_val, _), _ = data.embedded_digits("source")
    half_b = len(load_digits().target) - len(x) - len(x_val)
    assert loaded.train_examples + loaded.val_examples == half_b
    images, labels = next(iter(loaded.train))
    assert images.shape == (6, 16, 16, 3) and images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
    assert float(tf.reduce_max(images)) > 100.0  # [0, 255], not [0, 1]
    assert set(labels.numpy().tolist()) <= {0, 1}


def _keys(x):
    return {row.tobytes() for row in x.reshape(len(x), -1)}


def test_embedded_source_and_target_tasks_share_no_image():
    (x, y), (x_val, y_val), names = data.embedded_digits("source")
    assert names == [str(d) for d in range(10)] and set(y.tolist()) == set(range(10))
    assert x.shape[1:] == (8, 8, 1) and len(x) + len(x_val) in (898, 899)
    (x_t, y_t), (x_tv, y_tv), names_t = data.embedded_digits("target", train_per_class=4)
    assert names_t == ["even", "odd"]
    assert collections.Counter(y_t.tolist()) == {0: 4, 1: 4}
    assert len(x) + len(x_val) + len(x_t) + len(x_tv) == len(load_digits().target)
    # Disjoint halves (the 1,797 images are pairwise distinct): no source image is a
    # target image.
    assert not _keys(np.concatenate([x, x_val])) & _keys(np.concatenate([x_t, x_tv]))
    # Parity is the label: even digits have label 0, odd digits label 1.
    digits = load_digits()
    by_image = {}
    for image, digit in zip(digits.images, digits.target, strict=True):
        by_image.setdefault((image / 16.0).astype("float32").tobytes(), set()).add(digit % 2)
    for image, label in zip(x_t.reshape(len(x_t), -1), y_t, strict=True):
        assert label in by_image[image.tobytes()]


def test_named_files_dataset_decodes_once_and_drops_corrupt_files(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=2)
    files, others = data.image_candidates(str(root))
    assert others == 1  # notes.txt: wrong extension, not read
    assert [f.rsplit("/", 2)[-2:] for f in files] == [
        ["china", "00.jpg"], ["china", "01.jpg"], ["china", "broken.jpg"],
        ["flower", "00.png"], ["flower", "01.png"],
    ]
    pairs = list(data.named_image_files_dataset(files, 24).as_numpy_iterator())
    good = [f for f in files if not f.endswith("broken.jpg")]
    assert [name.decode() for name, _ in pairs] == good  # order kept, corrupt file dropped
    for (_, image), name in zip(pairs, good, strict=True):
        reference = tf.image.resize(tf.io.decode_image(tf.io.read_file(name), channels=3,
                                                       expand_animations=False), (24, 24))
        assert image.shape == (24, 24, 3) and image.dtype == np.float32
        np.testing.assert_array_equal(image, reference.numpy())


def test_a_folder_is_listed_without_decoding_and_checked_in_one_pass(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=5)
    loaded = data.load_image_data(f"folder:{root}", image_size=24, batch_size=4,
                                  validation_fraction=0.2)
    assert loaded.class_names == ["china", "flower"]
    # Listing decodes nothing (the labels come from the folders), so the corrupt
    # broken.jpg is still counted as an image; only notes.txt is skipped, for its name.
    assert not loaded.files_checked and loaded.corrupt_files == []
    assert (loaded.train_examples + loaded.val_examples, loaded.skipped_files) == (11, 1)
    assert loaded.check_files() is loaded and loaded.files_checked
    assert [p.rsplit("/", 2)[-2:] for p in loaded.corrupt_files] == [["china", "broken.jpg"]]
    assert loaded.skipped_files == 2  # notes.txt and broken.jpg
    assert loaded.train_examples + loaded.val_examples == 10
    # Exact lengths, so that no trainer has to run out of data to find an epoch's end.
    assert loaded.train.cardinality() == -(-loaded.train_examples // 4)
    assert loaded.val.cardinality() == -(-loaded.val_examples // 16)
    seen = 0
    for _ in range(2):  # the check pass filled the cache: the epochs decode nothing
        for images, labels in loaded.train:
            assert images.shape[1:] == (24, 24, 3)
            seen += int(labels.shape[0])
    assert seen == 2 * loaded.train_examples
    assert sum(int(y.shape[0]) for _, y in loaded.val) == loaded.val_examples


def test_check_files_takes_the_names_a_pass_decoded(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=4)
    loaded = data.load_image_data(f"folder:{root}", image_size=16, batch_size=2)
    names = [[f.decode() for f, _, _ in loaded.named_split(split).as_numpy_iterator()]
             for split in ("train", "val")]
    assert not any(name.endswith("broken.jpg") for split in names for name in split)
    loaded.check_files(readable=names)
    assert loaded.folder.filled == set()  # nothing was cached by this pass
    assert (loaded.train_examples, loaded.val_examples) == tuple(map(len, names))
    assert len(loaded.corrupt_files) == 1 and loaded.skipped_files == 2
    assert sum(int(y.shape[0]) for _, y in loaded.train) == loaded.train_examples


def test_folder_with_train_and_val_subfolders(tmp_path):
    write_image_folder(tmp_path / "split" / "train", per_class=4, corrupt=False)
    write_image_folder(tmp_path / "split" / "val", per_class=2)
    loaded = data.load_image_data(f"folder:{tmp_path / 'split'}", image_size=16)
    loaded.check_files()
    assert (loaded.train_examples, loaded.val_examples, loaded.skipped_files) == (8, 4, 2)
    assert [p.rsplit("/", 3)[-3:] for p in loaded.corrupt_files] == [
        ["val", "china", "broken.jpg"]]


def test_tfds_dataset_through_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        loaded = data.load_image_data("tfds:tf_flowers", image_size=20, batch_size=4)
        images, labels = next(iter(loaded.train))
    assert loaded.class_names == ["dandelion", "daisy", "tulips", "sunflowers", "roses"]
    assert images.shape == (4, 20, 20, 3) and labels.dtype == tf.int32
    assert loaded.train_examples > 0 and loaded.val_examples > 0


def test_tfds_offline_runs_the_real_download_path_to_a_one_line_error(tmp_path, monkeypatch):
    # TFDS's real builder, split and download code, with nothing mocked but where the
    # network would be: a proxy on a closed local port refuses every connection (so a
    # machine with internet downloads nothing either), and TFDS's retry count is 0, so the
    # failure comes at once rather than after ten retries with backoff.
    from tensorflow_datasets.core.download import downloader

    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setattr(downloader, "MAX_RETRIES", 0)
    with pytest.raises(ValueError, match=r"TFDS dataset 'tf_flowers', which is not prepared in "
                                         r".*could not be downloaded \(ProxyError.*needs the "
                                         r"internet once.*Received: dataset='tfds:tf_flowers'"):
        data.load_image_data("tfds:tf_flowers", image_size=16, data_dir=str(tmp_path))


def test_augmentation_keeps_shapes():
    augment = data.augmentation_layers(seed=1)
    images = tf.random.uniform((2, 16, 16, 3), 0, 255)
    assert augment(images, training=True).shape == (2, 16, 16, 3)
    loaded = data.load_image_data("embedded", image_size=16, augment=augment, train_per_class=2)
    assert loaded.augmented and next(iter(loaded.train))[0].shape[1:] == (16, 16, 3)


def test_augmentation_includes_pca_lighting_only_in_training():
    augment = data.augmentation_layers(flip=None, rotation=0, zoom=0, contrast=0, seed=1)
    assert [type(layer).__name__ for layer in augment.layers] == ["RandomPCALighting"]
    images = tf.fill((2, 4, 4, 3), 128.0)
    shifted = keras.ops.convert_to_numpy(augment(images, training=True))
    assert not np.allclose(shifted, 128.0)
    # One RGB offset per image, the same at every pixel.
    assert np.allclose(shifted, shifted[:, :1, :1, :])
    assert np.array_equal(
        keras.ops.convert_to_numpy(augment(images, training=False)), images.numpy()
    )
    assert data.augmentation_layers(pca_lighting=0).layers[-1].__class__.__name__ != (
        "RandomPCALighting"
    )
    with pytest.raises(ValueError, match=r"at least one augmentation.*augment=None"):
        data.augmentation_layers(flip=None, rotation=0, zoom=0, contrast=0, pca_lighting=0)


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
    "task, kwargs, match",
    [
        ("train", {}, r"`task` must be 'source' or 'target'\. Received: task='train'"),
        ("target", {"train_per_class": 0},
         r"`train_per_class` must be a positive integer\. Received: train_per_class=0"),
        ("target", {"train_per_class": 500},
         r"must leave validation images in every class.*Received: train_per_class=500"),
    ],
)
def test_bad_embedded_arguments_are_clear_errors(task, kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.embedded_digits(task, **kwargs)


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


def test_rebatch_shares_the_images_and_keeps_the_settings():
    loaded = data.load_image_data("embedded", image_size=8, batch_size=16, balance=True)
    rebatched = data.rebatch(loaded, batch_size=4)
    assert rebatched.batch_size == 4 and rebatched.balance and loaded.batch_size == 16
    assert rebatched.train_unshuffled is loaded.train_unshuffled
    batches = list(rebatched.train)
    assert [len(y) for _, y in batches] == [4] * 5  # 20 examples, one epoch


def test_rebatching_a_folder_decodes_nothing_until_its_first_pass(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=5)
    loaded = data.load_image_data(f"folder:{root}", image_size=16, batch_size=4)
    rebatched = data.rebatch(loaded, batch_size=2)
    assert not rebatched.files_checked and rebatched.folder.filled == set()
    assert not loaded.files_checked
    # The feature pass decodes each file once, and the counts and batches become exact.
    names = [[f.decode() for f, _, _ in rebatched.named_split(split).as_numpy_iterator()]
             for split in ("train", "val")]
    rebatched.check_files(readable=names)
    assert rebatched.folder.filled == set()  # the images were not cached
    assert rebatched.train_examples == len(names[0]) and len(rebatched.corrupt_files) == 1
    assert rebatched.train.cardinality() == -(-rebatched.train_examples // 2)
    assert [len(y) for _, y in rebatched.train][:-1] == [2] * (len(rebatched.train) - 1)


def test_rebatch_keeps_the_augmentation():
    layers = data.augmentation_layers(flip=None, rotation=0, zoom=0, contrast=0, seed=1)
    loaded = data.load_image_data("embedded", image_size=8, augment=layers, train_per_class=2)
    images, _ = next(iter(data.rebatch(loaded, batch_size=2).train))
    raw, _ = next(iter(loaded.train_unshuffled.batch(4)))
    # PCA lighting shifts every pixel of an image by its own colour offset.
    assert images.shape == (2, 8, 8, 3) and not np.isin(images.numpy(), raw.numpy()).all()


def test_bad_rebatch_arguments_are_clear_errors():
    loaded = data.load_image_data("embedded", image_size=8)
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer\. "
                                         r"Received: batch_size=0$"):
        data.rebatch(loaded, 0)


@pytest.mark.parametrize("spec", ["embedded", "folder"])
def test_trim_to_multiple_makes_every_batch_split_evenly(spec, tmp_path):
    if spec == "folder":
        spec = f"folder:{write_image_folder(tmp_path / 'photos', per_class=10)}"
    loaded = data.load_image_data(spec, image_size=8, batch_size=4, val_batch_size=8,
                                  train_per_class=3, validation_fraction=0.3)
    loaded.check_files()  # what trim_to_multiple does first, so the counts are exact
    before = (loaded.train_examples, loaded.val_examples, dict(loaded.fingerprint))
    dropped = loaded.trim_to_multiple(4)
    assert any(dropped) and max(dropped) < 4
    assert (loaded.train_examples + dropped[0], loaded.val_examples + dropped[1]) == before[:2]
    assert loaded.train_examples % 4 == 0 and loaded.val_examples % 4 == 0
    for split, examples in ((loaded.train, loaded.train_examples),
                            (loaded.val, loaded.val_examples)):
        sizes = [len(y) for _, y in split]
        assert all(size % 4 == 0 for size in sizes) and sum(sizes) == examples, sizes
    assert loaded.fingerprint == {**before[2], "trimmed_to_multiple_of": 4}
    assert loaded.trim_to_multiple(4) == (0, 0)
    with pytest.raises(ValueError, match=r"`multiple` must leave examples.*Received: "
                                         r"multiple=1000$"):
        loaded.trim_to_multiple(1000)


def test_a_class_without_a_readable_image_is_refused_by_name(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=3)
    for path in (root / "flower").glob("*.png"):
        path.write_bytes(b"not a png")  # every image of the class is corrupt
    loaded = data.load_image_data(f"folder:{root}", image_size=16)
    with pytest.raises(ValueError, match=r"readable images in every class; found none in "
                                         r"'flower' \(5 files skipped\)\. Received: dataset="):
        loaded.check_files()


def test_a_class_with_few_validation_images_warns(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=6, corrupt=False)
    for path in sorted((root / "flower").glob("*.png"))[1:]:
        path.unlink()  # one image left in the class
    loaded = data.load_image_data(f"folder:{root}", image_size=16, min_val_per_class=2)
    with pytest.warns(UserWarning, match=r"fewer than 2 validation images.*'flower': [01]"):
        loaded.check_files()

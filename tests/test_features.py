import os

import numpy as np
import pytest
from finetune_test_utils import embedded_data, small_classifier, write_image_folder

from kfound import data, features


def _features(classifier, loaded, cache_dir):
    messages = []
    arrays, report = features.cached_features(classifier, loaded, cache_dir, batch_size=5,
                                              log=messages.append)
    return arrays, report, messages


def test_features_are_computed_once_then_read_back(tmp_path):
    loaded = embedded_data()
    classifier = small_classifier(loaded)
    first, report, _ = _features(classifier, loaded, tmp_path)
    assert report["source"] == "computed" and os.path.isfile(report["path"])
    second, report, messages = _features(classifier, loaded, tmp_path)
    assert report["source"] == "cache" and "read the cached" in messages[0]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    x, y, x_val, y_val = first
    assert (len(x), len(x_val)) == (loaded.train_examples, loaded.val_examples)
    expected_y = np.concatenate([b for _, b in loaded.train_unshuffled.batch(64)])
    np.testing.assert_array_equal(y, expected_y)  # labels from the same pass, in order


def test_extraction_batch_size_changes_no_feature(tmp_path):
    loaded = embedded_data()
    classifier = small_classifier(loaded)
    (x, *_), _ = features.cached_features(classifier, loaded, batch_size=3, log=print)
    (x64, *_), _ = features.cached_features(classifier, loaded, batch_size=64, log=print)
    np.testing.assert_allclose(x, x64, rtol=1e-5, atol=1e-6)


def test_other_weights_or_data_get_another_entry(tmp_path):
    loaded = embedded_data()
    classifier = small_classifier(loaded)
    key, _ = features.cache_key(classifier, loaded)
    other = small_classifier(loaded)  # another random initialisation
    assert features.cache_key(other, loaded)[0] != key
    reseeded = embedded_data(seed=1)
    assert features.cache_key(classifier, reseeded)[0] != key


def test_a_changed_image_file_invalidates_the_entry(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=4, size=24, corrupt=False)
    loaded = data.load_image_data(f"folder:{root}", 16, batch_size=4)
    classifier = small_classifier(loaded)
    key, _ = features.cache_key(classifier, loaded)
    image = next((root / "china").iterdir())
    status = image.stat()
    os.utime(image, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))
    reloaded = data.load_image_data(f"folder:{root}", 16, batch_size=4)
    assert features.cache_key(classifier, reloaded)[0] != key


def test_a_corrupt_entry_is_reported_and_recomputed(tmp_path):
    loaded = embedded_data()
    classifier = small_classifier(loaded)
    first, report, _ = _features(classifier, loaded, tmp_path)
    with open(report["path"], "r+b") as f:  # a write cut short
        f.truncate(os.path.getsize(report["path"]) // 2)
    second, report, messages = _features(classifier, loaded, tmp_path)
    assert report["source"] == "computed"
    assert "unreadable" in messages[0] and report["path"] in messages[0]
    np.testing.assert_array_equal(first[0], second[0])
    assert _features(classifier, loaded, tmp_path)[1]["source"] == "cache"  # rewritten


def test_a_stale_entry_is_reported_and_recomputed(tmp_path):
    loaded = embedded_data()
    classifier = small_classifier(loaded)
    _, report, _ = _features(classifier, loaded, tmp_path)
    other = small_classifier(loaded)
    _, other_report, _ = _features(other, loaded, tmp_path / "other")
    os.replace(other_report["path"], report["path"])  # an entry made from other weights
    _, report, messages = _features(classifier, loaded, tmp_path)
    assert report["source"] == "computed" and "stale" in messages[0]


def test_bad_feature_batch_size_is_a_clear_error():
    from kfound import finetune

    loaded = embedded_data()
    with pytest.raises(ValueError, match=r"`feature_batch_size` must be a positive integer\. "
                                         r"Received: feature_batch_size=0"):
        finetune.fit_head(small_classifier(loaded), loaded, epochs=1, feature_batch_size=0)


def test_the_same_backbone_built_twice_shares_its_entry():
    loaded = embedded_data()
    first, second = small_classifier(loaded), small_classifier(loaded)
    second.backbone.set_weights(first.backbone.get_weights())
    assert features.cache_key(first, loaded)[0] == features.cache_key(second, loaded)[0]


def test_a_folder_is_decoded_once_by_the_feature_pass_which_names_its_corrupt_files(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=4, size=24)
    loaded = data.load_image_data(f"folder:{root}", 16, batch_size=4)
    classifier = small_classifier(loaded)
    (x, y, x_val, y_val), report, _ = _features(classifier, loaded, tmp_path / "cache")
    assert report["source"] == "computed" and loaded.files_checked
    assert [os.path.basename(f) for f in loaded.corrupt_files] == ["broken.jpg"]
    assert loaded.folder.filled == set()  # the pass cached no image: none is read again
    assert (len(x), len(x_val)) == (loaded.train_examples, loaded.val_examples) == (
        len(y), len(y_val))
    labels = dict(zip(loaded.folder.train_files, loaded.folder.train_labels, strict=True))
    survivors = [f for f in loaded.folder.train_files if f not in loaded.corrupt_files]
    np.testing.assert_array_equal(y, [labels[f] for f in survivors])  # from the file list
    # A rerun reads the entry, and with it which files were corrupt.
    reloaded = data.load_image_data(f"folder:{root}", 16, batch_size=4)
    cached, report, _ = _features(classifier, reloaded, tmp_path / "cache")
    assert report["source"] == "cache" and reloaded.corrupt_files == loaded.corrupt_files
    assert (reloaded.train_examples, reloaded.val_examples) == (len(x), len(x_val))
    np.testing.assert_array_equal(cached[0], x)

"""The finetune hypermodel: kfound.finetune's head-only and full states under KerasTuner."""

import json
import os
import pathlib

import h5py
import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow_datasets as tfds
from finetune_test_utils import write_image_folder

from kfound import _compat, backbones, features, prediction
from kfound.tuning import finetune_hypermodel, search, space

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _space(dataset="embedded", **entries):
    return space.parse_space({"model": "finetune", "dataset": dataset,
                              "hyperparameters": entries or {"dropout": {"type": "float",
                                                                         "min": 0.0, "max": 0.5}}})


def _one(value):
    return {"type": "choice", "values": [value]}


def _trial(model_space, **kwargs):
    hypermodel = finetune_hypermodel.FinetuneHyperModel(model_space.dataset, space=model_space,
                                                max_epochs=1, **kwargs)
    hp = model_space.declare(kt.HyperParameters())
    return hypermodel, hp, hypermodel.build(hp)


def test_head_trial_trains_the_head_on_cached_features_and_checkpoints_the_whole_model(
        tmp_path):
    model_space = _space(state=_one("head"), image_size=_one(8), batch_size=_one(4),
                         optimizer=_one("sgd"), learning_rate=_one(0.05), dropout=_one(0.3))
    hypermodel, hp, model = _trial(model_space)
    backbone_before = [w.numpy().copy() for w in hypermodel._classifier.backbone.weights]
    checkpoint = _compat.best_epoch_checkpoint(kt.Objective("val_accuracy", "max"),
                                               str(tmp_path / "best.weights.h5"))
    history = hypermodel.fit(hp, model, callbacks=[checkpoint], verbose=0)
    assert isinstance(history, keras.callbacks.History) and history.epoch == [0]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    classifier = hypermodel._classifier
    assert isinstance(classifier.head.optimizer, keras.optimizers.SGD)  # cached: the head fit
    assert classifier.head.get_layer("dropout").rate == 0.3
    for old, new in zip(backbone_before, classifier.backbone.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    # The checkpoint (of the one epoch) is the whole trained classifier, which loads into
    # the next `build(hp)`, though the head alone was fit.
    trained = [w.numpy() for w in model.weights]
    reloaded = hypermodel.build(hp)
    assert not np.allclose(reloaded.get_layer("head").weights[-2].numpy(), trained[-2])
    reloaded.load_weights(tmp_path / "best.weights.h5")
    for old, new in zip(trained, reloaded.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())


def test_full_trial_unfreezes_from_the_depth_fraction():
    model_space = _space(state=_one("full"), image_size=_one(8), unfreeze_from=_one(0.5),
                         fine_tune_learning_rate=_one(1e-3), fine_tune_epochs=_one(3))
    hypermodel, hp, model = _trial(model_space)
    history = hypermodel.fit(hp, model, verbose=0)
    assert history.epoch == [0, 1]  # max_epochs=1 caps each phase
    backbone = hypermodel._classifier.backbone
    first = len(backbone.layers) // 2
    # From `first` on, every layer trains but BatchNormalization, which stays in inference
    # mode (kfound.finetune.freeze_batchnorm).
    assert [layer.trainable for layer in backbone.layers] == [
        i >= first and not isinstance(layer, keras.layers.BatchNormalization)
        for i, layer in enumerate(backbone.layers)]
    assert any(layer.trainable for layer in backbone.layers[first:])
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)


def test_data_is_loaded_once_per_image_size_and_rebatched():
    model_space = _space(image_size={"type": "choice", "values": [8, 12]},
                         batch_size={"type": "choice", "values": [4, 32]})
    hypermodel = finetune_hypermodel.FinetuneHyperModel("embedded", space=model_space)
    hp = model_space.declare(kt.HyperParameters())
    hp.values.update(image_size=12, batch_size=4)
    data = hypermodel.data(hp)
    assert (data.image_size, data.batch_size) == (12, 4)
    assert sorted(hypermodel._loaded) == [8, 12]
    assert data.train_unshuffled is hypermodel._loaded[12].train_unshuffled
    assert hypermodel.data(hp) is data  # rebatched once: every trial reads the same
    assert hypermodel.build(hp).input_shape == (None, 12, 12, 3)


def test_defaults_are_kfound_finetunes():
    hypermodel = finetune_hypermodel.FinetuneHyperModel("embedded")
    model = hypermodel.build(kt.HyperParameters())
    assert model.input_shape == (None, 16, 16, 3) and model.output_shape == (None, 2)
    assert hypermodel._classifier.backbone_name == "SmallConvNet"


def test_tfds_dataset_through_mock_data():
    model_space = _space("tfds:tf_flowers", image_size=_one(8), batch_size=_one(4))
    with tfds.testing.mock_data(num_examples=12):
        hypermodel, hp, model = _trial(model_space)
        history = hypermodel.fit(hp, model, verbose=0)
    assert hypermodel.num_classes == 5 and model.output_shape == (None, 5)
    assert len(history.history["val_accuracy"]) == 1


def test_folder_dataset(tmp_path):
    folder = write_image_folder(tmp_path / "photos", per_class=4)
    model_space = _space(f"folder:{folder}", image_size=_one(8), batch_size=_one(4))
    hypermodel, hp, model = _trial(model_space)
    assert hypermodel.fit(hp, model, verbose=0).epoch == [0]
    assert hypermodel._loaded[8].class_names == ["china", "flower"]


def test_search_cli_on_the_example_space(tmp_path):
    output = tmp_path / "run"
    best = search.main(["--space", str(ROOT / "tuning" / "spaces" / "finetune.yaml"),
                        "--tuner", "random", "--smoke", "--max-trials", "1", "--quiet",
                        "--output", str(output)])
    trials = json.loads((output / "trials.json").read_text())
    assert [t["status"] for t in trials] == ["COMPLETED"]
    model = keras.saving.load_model(output / "best_model.keras")
    hypermodel = finetune_hypermodel.FinetuneHyperModel("embedded")
    # Its class names lie beside it, as for a model the fine-tuning recipe saved.
    _, class_names = prediction.load_classifier(str(output / "best_model.keras"))
    assert class_names == hypermodel.class_names
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, accuracy = model.evaluate(hypermodel.data(kt.HyperParameters()).val, verbose=0)
    # Not exact: a random backbone leaves near-ties that batch composition can flip.
    assert accuracy == pytest.approx(best["score"], abs=0.01)


@pytest.mark.parametrize("config, match", [
    ({"dataset": "digits"}, r"model 'finetune' cannot search on dataset 'digits': it takes "
     r"\['embedded', 'tfds:NAME', 'folder:PATH'\], and digits is for model cnn, mlp\. "
     r"Received: dataset='digits'"),
    ({"dataset": "folder:/no/such/folder"},
     r"existing folder of images\. Received: dataset='folder:/no/such/folder'"),
    ({"hp_layers": {"type": "int", "min": 1, "max": 3}},
     r"'layers' is not used by model 'finetune'.*Received: layers="),
    ({"hp_state": {"type": "choice", "values": ["head", "predict"]}},
     r"'state': value 'predict' is invalid: expected one of \['head', 'full'\]"),
    ({"hp_state": {"type": "bool"}}, r"'state': takes a choice of strings"),
    ({"hp_unfreeze_from": {"type": "float", "min": 0.0, "max": 1.0}},
     r"'unfreeze_from': value 1\.0 is invalid: expected a fraction"),
    ({"hp_backbone": {"type": "choice", "values": ["ResNet99"]}},
     r"'backbone': value 'ResNet99' is invalid.*Received: backbone="),
    ({"hp_weights": {"type": "choice", "values": ["/no/such/weights.h5"]}},
     r"'weights': value '/no/such/weights\.h5' is invalid: expected none, imagenet"),
    ({"hp_image_size": {"type": "int", "min": 4, "max": 32}},
     r"'image_size': value 4 is invalid: expected an integer >= 8"),
    ({"hp_fine_tune_epochs": {"type": "int", "min": 0, "max": 3}},
     r"'fine_tune_epochs': value 0 is invalid"),
])
def test_bad_finetune_spaces_are_rejected(config, match):
    full = {"model": "finetune", "dataset": "embedded",
            "hyperparameters": {"dropout": {"type": "float", "min": 0.0, "max": 0.5}}}
    for key, value in config.items():
        if key.startswith("hp_"):
            full["hyperparameters"][key[3:]] = value
        else:
            full[key] = value
    with pytest.raises(ValueError, match=match):
        space.parse_space(full, source="bad.yaml")


def test_mlp_rejects_finetune_names():
    with pytest.raises(ValueError, match=r"'state' is not used by model 'mlp'.*Received: state="):
        space.parse_space({"model": "mlp", "dataset": "digits",
                           "hyperparameters": {"state": _one("head")}})


def test_fit_refuses_data_and_epochs():
    hypermodel, hp, model = _trial(_space(image_size=_one(8)))
    with pytest.raises(ValueError, match=r"takes no data.*Received: ndarray, epochs, "
                                         r"initial_epoch"):
        hypermodel.fit(hp, model, np.zeros(1), epochs=2, initial_epoch=1)
    other = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)], name="other")
    with pytest.raises(ValueError, match=r"`model` must be the model.*Received: model='other'"):
        hypermodel.fit(hp, other)


def test_bad_datasets_fail_before_any_trial(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"model": "finetune", "dataset": "tfds:no_such_dataset_xyz",
                                "hyperparameters": {"dropout": _one(0.1)}}))
    output = tmp_path / "run"
    with pytest.raises(ValueError, match=r"names no TFDS dataset.*Received: dataset="):
        search.main(["--space", str(path), "--smoke", "--output", str(output)])
    assert not (output / "keras_tuner").exists()


def test_hyperband_is_refused_for_finetune(tmp_path):
    with pytest.raises(ValueError, match=r"Hyperband's epoch schedule.*"
                                         r"Received: tuner='hyperband'"):
        search.main(["--space", str(ROOT / "tuning" / "spaces" / "finetune.yaml"),
                     "--tuner", "hyperband", "--smoke", "--output", str(tmp_path / "run")])


def test_the_best_epoch_is_kept_in_memory_and_written_once_when_the_fit_ends(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "best.weights.h5"
    checkpoint = _compat.best_epoch_checkpoint(kt.Objective("val_accuracy", "max"), str(path))
    once = finetune_hypermodel._BestEpochOnce(checkpoint, model)
    once.set_model(model)
    best = [w.copy() for w in model.get_weights()]
    once.on_epoch_end(0, {"val_accuracy": 0.5})
    model.set_weights([w + 1.0 for w in best])
    last = [w.copy() for w in model.get_weights()]
    once.on_epoch_end(1, {"val_accuracy": 0.4})  # worse: not kept
    assert not path.exists() and checkpoint.best_value == 0.5
    once.on_train_end()
    for kept, now in zip(last, model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, now)  # the model keeps its last epoch
    model.load_weights(path)
    for kept, loaded in zip(best, model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, loaded)  # the file holds the best epoch


def test_head_trials_share_their_pretrained_backbone_and_full_trials_build_their_own(
        tmp_path):
    weights = tmp_path / "small.weights.h5"
    backbones.small_conv_net(8).save_weights(weights)
    model_space = _space(state={"type": "choice", "values": ["head", "full"]},
                         image_size=_one(8), batch_size=_one(4), weights=_one(str(weights)))
    hypermodel = finetune_hypermodel.FinetuneHyperModel(model_space.dataset, space=model_space,
                                                        max_epochs=1)
    hp = model_space.declare(kt.HyperParameters())

    def backbone(state):
        hp.values["state"] = state
        model = hypermodel.build(hp)
        hypermodel.fit(hp, model, verbose=0)
        return hypermodel._classifier.backbone

    first = backbone("head")
    loaded = [w.numpy().copy() for w in first.weights]
    assert backbone("head") is first  # the second head trial wraps a new head around it
    full = backbone("full")
    assert full is not first  # a full trial trains its backbone: its own
    assert backbone("head") is first
    for before, after in zip(loaded, first.weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())  # the full trial left it as is
    os.utime(weights, ns=(0, 0))  # the file changed: built and loaded again
    assert backbone("head") is not first
    hp.values["weights"] = "none"  # random initialisation: every trial its own
    assert backbone("head") is not backbone("head")


def _head_space(weights):
    return _space(state=_one("head"), image_size=_one(8), batch_size=_one(4),
                  optimizer=_one("sgd"), learning_rate=_one(0.05), weights=_one(str(weights)))


def test_a_head_trial_on_a_pretrained_backbone_checkpoints_its_head_alone(tmp_path):
    weights = tmp_path / "small.weights.h5"
    backbones.small_conv_net(8).save_weights(weights)
    model_space = _head_space(weights)
    hypermodel, hp, model = _trial(model_space)
    path = tmp_path / "trial" / "checkpoint.weights.h5"
    path.parent.mkdir()
    checkpoint = _compat.best_epoch_checkpoint(kt.Objective("val_accuracy", "max"), str(path))
    hypermodel.fit(hp, model, callbacks=[checkpoint], verbose=0)
    trained = [w.numpy() for w in model.weights]
    with h5py.File(path) as f:
        stored = []
        f.visititems(lambda name, item: stored.append(name)
                     if isinstance(item, h5py.Dataset) and name.startswith("layers/") else None)
    head = hypermodel._classifier.head
    assert len(stored) == len(head.weights) < len(model.weights)  # no copy of the backbone
    # A new hypermodel (a new process) loads the backbone from its file, then the head.
    fresh = finetune_hypermodel.FinetuneHyperModel(model_space.dataset, space=model_space)
    reloaded = fresh.load_trial(hp, path)
    assert reloaded is fresh._classifier.model
    for old, new in zip(trained, reloaded.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    # A checkpoint with no record beside it is a whole classifier's (an older search's).
    whole = tmp_path / "older" / "checkpoint.weights.h5"
    whole.parent.mkdir()
    model.save_weights(whole)
    for old, new in zip(trained, fresh.load_trial(hp, whole).weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    os.utime(weights, ns=(0, 0))  # a copy with another time: the same weights, it loads
    other = finetune_hypermodel.FinetuneHyperModel(model_space.dataset, space=model_space)
    for old, new in zip(trained, other.load_trial(hp, path).weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    backbones.small_conv_net(8).save_weights(weights)  # other weights: the head can't fit
    with pytest.raises(ValueError, match=r"Argument `weights`: the checkpoint .* holds a head "
                                         r"trained on other backbone weights .*--overwrite"
                                         r".*Received: weights='.*small"):
        other.load_trial(hp, path)


def test_head_trials_on_a_shared_backbone_hash_its_weights_once(tmp_path, monkeypatch):
    weights = tmp_path / "small.weights.h5"
    backbones.small_conv_net(8).save_weights(weights)
    model_space = _head_space(weights)
    hypermodel, hp, model = _trial(model_space, feature_cache=tmp_path / "features")
    hashed = []
    digest = features.weights_digest

    def counted(backbone):
        hashed.append(backbone)
        return digest(backbone)

    monkeypatch.setattr(features, "weights_digest", counted)
    hypermodel.fit(hp, model, verbose=0)  # the first trial computes the features
    classifier = hypermodel._classifier
    assert classifier.features_report["source"] == "computed"
    second = hypermodel.build(hp)  # the second reads them back
    hypermodel.fit(hp, second, verbose=0)
    assert hypermodel._classifier.features_report["source"] == "cache"
    assert hashed == [] and hypermodel._shared_backbone[3] == digest(classifier.backbone)
    # The key is the one that hashing the weights again gives.
    data = hypermodel.data(hp)
    recorded = features.cache_key(classifier, data, hypermodel._shared_backbone[3])
    assert recorded == features.cache_key(classifier, data)
    assert len(hashed) == 1


def test_head_trials_on_a_shared_backbone_train_one_compiled_head(tmp_path):
    weights = tmp_path / "small.weights.h5"
    backbones.small_conv_net(8).save_weights(weights)
    model_space = _head_space(weights)
    hypermodel, hp, model = _trial(model_space)
    trained = []

    class Seen(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            trained.append((self.model, self.model.train_function))

    hypermodel.fit(hp, model, callbacks=[Seen()], verbose=0)
    first_head = hypermodel._classifier.head
    hp.values["learning_rate"] = 0.01  # another learning rate: the same compiled copy
    second = hypermodel.build(hp)
    hypermodel.fit(hp, second, callbacks=[Seen()], verbose=0)
    (copy, function), (again, function_again) = trained
    assert again is copy and function_again is function  # traced once for both trials
    assert copy not in (first_head, hypermodel._classifier.head)
    for mine, fitted in zip(hypermodel._classifier.head.weights, copy.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), fitted.numpy())  # given back


def test_the_best_model_of_a_search_of_head_trials_is_the_trained_classifier(tmp_path):
    weights = tmp_path / "small.weights.h5"
    backbones.small_conv_net(16).save_weights(weights)
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps({
        "model": "finetune", "dataset": "embedded",
        "hyperparameters": {"state": _one("head"), "weights": _one(str(weights)),
                            "learning_rate": {"type": "float", "min": 0.01, "max": 0.1}}}))
    output = tmp_path / "run"
    best = search.main(["--space", str(space_file), "--tuner", "random", "--smoke",
                        "--max-trials", "2", "--quiet", "--output", str(output)])
    records = list(output.rglob(finetune_hypermodel.BACKBONE_RECORD))
    assert len(records) == 2  # each trial checkpointed its head
    model = keras.saving.load_model(output / "best_model.keras")
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hypermodel = finetune_hypermodel.FinetuneHyperModel("embedded")
    _, accuracy = model.evaluate(hypermodel.data(kt.HyperParameters()).val, verbose=0)
    assert accuracy == pytest.approx(best["score"], abs=1e-6)

import csv

import keras
import numpy as np
import pytest
from finetune_test_utils import write_image_folder

from kfound import data, finetune

SHARED_MOBILENET = "mobilenet_2_5_224_tf_no_top.h5"


def _embedded(image_size=16, **kwargs):
    return data.load_image_data("embedded", image_size, batch_size=16, train_per_class=4,
                                **kwargs)


def _small_classifier(data_, frozen_bn=True):
    backbone = finetune.build_backbone("SmallConvNet", image_size=data_.image_size)
    return finetune.Classifier(backbone, "SmallConvNet", data_.num_classes, frozen_bn=frozen_bn)


def test_backbone_names_cover_keras_applications():
    names = finetune.backbone_names()
    assert names[0] == "SmallConvNet"
    for name in ("MobileNet", "MobileNetV2", "MobileNetV3Small", "ResNet50", "EfficientNetB0",
                 "VGG16"):
        assert name in names


@pytest.mark.parametrize("backbone, module", [
    ("MobileNet", keras.applications.mobilenet),
    ("ResNet50", keras.applications.resnet),
    ("EfficientNetB0", keras.applications.efficientnet),
])
def test_preprocessing_is_the_backbones_own(backbone, module):
    images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    layer = finetune.BackbonePreprocessing(backbone)
    expected = module.preprocess_input(images.copy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(images)), expected, rtol=1e-5,
                               atol=1e-4)
    clone = finetune.BackbonePreprocessing.from_config(layer.get_config())
    assert clone.backbone == backbone


def test_head_on_cached_features_matches_the_full_model():
    loaded = _embedded()
    classifier = _small_classifier(loaded)
    before = [w.numpy().copy() for w in classifier.backbone.weights]
    messages = []
    history = finetune.fit_head(classifier, loaded, epochs=3, verbose=0,
                                log=messages.append)
    assert "runs once" in messages[0]
    assert history["epoch"] == [1, 2, 3]
    for old, new in zip(before, classifier.backbone.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())  # frozen, BatchNorm included
    # The head trained on cached features is the head of the saved model: same numbers.
    classifier.model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, accuracy = classifier.model.evaluate(loaded.val, verbose=0)
    assert accuracy == pytest.approx(history["val_accuracy"][-1], abs=1e-6)
    assert finetune.trainable_params(classifier.model) == 64 * 2 + 2  # even, odd


def test_feature_eval_batch_size_must_be_a_positive_integer():
    loaded = _embedded(image_size=8)
    for value in (0, 2.5, True):
        expected = rf"positive integer\. Received: feature_eval_batch_size={value}$"
        with pytest.raises(ValueError, match=r"`feature_eval_batch_size` must be a " + expected):
            finetune.fit_head(_small_classifier(loaded), loaded, epochs=1, verbose=0,
                              feature_eval_batch_size=value)


@pytest.mark.parametrize("state", ["head", "full"])
def test_optimizer_is_chosen_by_name(state):
    loaded = _embedded(image_size=8)
    classifier = _small_classifier(loaded)
    if state == "head":
        finetune.fit_head(classifier, loaded, epochs=1, learning_rate=0.1, verbose=0,
                          log=lambda _: None, optimizer="sgd")
        optimizer = classifier.head.optimizer
    else:
        finetune.fit_full(classifier, loaded, epochs=1, fine_tune_epochs=1,
                          fine_tune_learning_rate=0.01, verbose=0, log=lambda _: None,
                          optimizer="rmsprop")
        optimizer = classifier.model.optimizer
    expected = {"head": (keras.optimizers.SGD, 0.1), "full": (keras.optimizers.RMSprop, 0.01)}
    assert isinstance(optimizer, expected[state][0])
    assert float(optimizer.learning_rate) == pytest.approx(expected[state][1])


def test_augmentation_turns_feature_caching_off_and_says_why():
    loaded = _embedded(augment=data.augmentation_layers(flip=None, seed=0))
    messages = []
    finetune.fit_head(_small_classifier(loaded), loaded, epochs=1, verbose=0,
                      log=messages.append)
    assert "caching is off" in messages[0] and "augmentation" in messages[0]


def _batchnorm_state(backbone):
    return {
        layer.name: [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]
        for layer in finetune.batchnorm_layers(backbone)
    }


def _kernel(layer):
    return keras.ops.convert_to_numpy(layer.kernel).copy()


@pytest.mark.parametrize("unfreeze_from", [None, "block1_conv0"])
def test_full_fine_tuning_keeps_every_batchnorm_in_inference_mode(tmp_path, unfreeze_from):
    loaded = _embedded()
    classifier = _small_classifier(loaded)
    before = _batchnorm_state(classifier.backbone)
    assert len(before) == 4
    first = classifier.backbone.get_layer("block0_conv0")
    last = classifier.backbone.get_layer("block1_conv1")
    first_kernel, last_kernel = _kernel(first), _kernel(last)
    history = finetune.fit_full(classifier, loaded, epochs=1, fine_tune_epochs=2,
                                fine_tune_learning_rate=1e-2, unfreeze_from=unfreeze_from,
                                backup_dir=tmp_path / "backup", verbose=0, log=lambda m: None)
    assert history["phase"] == [1, 2, 2] and history["epoch"] == [1, 2, 3]
    after = _batchnorm_state(classifier.backbone)
    for name, weights in before.items():  # gamma, beta, moving mean and variance
        for old, new in zip(weights, after[name], strict=True):
            np.testing.assert_array_equal(new, old, err_msg=name)
    assert not np.allclose(_kernel(last), last_kernel)  # phase 2 did train the backbone
    first_trained = not np.allclose(_kernel(first), first_kernel)
    assert first_trained == (unfreeze_from is None)  # and only from unfreeze_from on
    assert not (tmp_path / "backup").exists()


def test_unfrozen_application_backbone_keeps_every_batchnorm_in_inference_mode():
    loaded = _embedded(image_size=32)
    backbone = finetune.build_backbone("MobileNet", image_size=32, alpha=0.25)
    classifier = finetune.Classifier(backbone, "MobileNet", loaded.num_classes)
    before = _batchnorm_state(backbone)
    assert len(before) == 27
    classifier.unfreeze(None)
    assert all(not layer.trainable for layer in finetune.batchnorm_layers(backbone))
    finetune._compile(classifier.model, 1e-2, "auto")
    classifier.model.fit(loaded.train, epochs=1, verbose=0)
    after = _batchnorm_state(backbone)
    for name, weights in before.items():
        for old, new in zip(weights, after[name], strict=True):
            np.testing.assert_array_equal(new, old, err_msg=name)


def test_scratch_classifier_trains_its_batchnorm():
    loaded = _embedded()
    classifier = _small_classifier(loaded, frozen_bn=False)
    before = _batchnorm_state(classifier.backbone)
    finetune.fit_scratch(classifier, loaded, epochs=1, verbose=0)
    after = _batchnorm_state(classifier.backbone)
    moving_mean = 2
    for name, weights in before.items():
        assert not np.allclose(after[name][moving_mean], weights[moving_mean]), name


def test_unfreeze_from_name_index_and_fraction():
    backbone = finetune.small_conv_net(16)
    n = len(backbone.layers)
    assert finetune.unfreeze_index(backbone, None) == 0
    assert finetune.unfreeze_index(backbone, "block1_conv0") == [
        layer.name for layer in backbone.layers].index("block1_conv0")
    assert finetune.unfreeze_index(backbone, 3) == 3
    assert finetune.unfreeze_index(backbone, -1) == n - 1
    assert finetune.unfreeze_index(backbone, 0.5) == n // 2


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt("simulated kill")


def test_head_training_resumes_after_an_interruption(tmp_path):
    loaded = _embedded()
    backup = tmp_path / "backup"
    classifier = _small_classifier(loaded)
    with pytest.raises(KeyboardInterrupt):
        finetune.fit_head(classifier, loaded, epochs=4, backup_dir=backup,
                          callbacks=[_Interrupt(at_epoch=1)], verbose=0, log=lambda m: None)
    trained = classifier.head.get_weights()
    keras.utils.clear_session()
    fresh = _small_classifier(loaded)  # a new process would rebuild everything
    history = finetune.fit_head(fresh, loaded, epochs=4, backup_dir=backup, verbose=0,
                                log=lambda m: None)
    assert history["epoch"] == [3, 4]  # resumed after the last finished epoch (2)
    assert not backup.exists()
    assert not np.allclose(fresh.head.get_weights()[0], trained[0])  # trained on from there


def test_full_training_resumes_in_phase_two(tmp_path):
    loaded = _embedded()
    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        finetune.fit_full(_small_classifier(loaded), loaded, epochs=1, fine_tune_epochs=3,
                          backup_dir=backup, callbacks=[_Interrupt(at_epoch=2)], verbose=0,
                          log=lambda m: None)
    messages = []
    history = finetune.fit_full(_small_classifier(loaded), loaded, epochs=1, fine_tune_epochs=3,
                                backup_dir=backup, verbose=0, log=messages.append)
    assert "phase 1 finished earlier" in messages[0]
    assert history["epoch"] == [1, 4] and history["phase"] == [1, 2]


def test_scratch_baseline_trains_everything():
    loaded = _embedded()
    classifier = _small_classifier(loaded, frozen_bn=False)
    history = finetune.fit_scratch(classifier, loaded, epochs=1, verbose=0)
    assert len(history["val_accuracy"]) == 1
    assert finetune.trainable_params(classifier.model) == finetune.trainable_params(
        _small_classifier(loaded).model) + 64 * 2 + 2 - (64 * 2 + 2)


def test_pretrained_small_backbone_is_cached(tmp_path):
    messages = []
    path = finetune.pretrain_small_backbone(tmp_path, image_size=8, epochs=1, log=messages.append)
    assert finetune.pretrain_small_backbone(tmp_path, image_size=8, epochs=1,
                                            log=messages.append) == path
    assert "reusing" in messages[-1]
    backbone = finetune.build_backbone("SmallConvNet", weights=path, image_size=8)
    source = keras.saving.load_model(path)
    for a, b in zip(backbone.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_predict_writes_class_names_not_indices(tmp_path):
    loaded = data.load_image_data(f"folder:{write_image_folder(tmp_path / 'img', per_class=3)}",
                                  image_size=16, batch_size=4)
    classifier = _small_classifier(loaded)
    finetune.save_classifier(classifier.model, loaded.class_names, tmp_path / "run")
    model, names = finetune.load_classifier(tmp_path / "run" / "model.keras")
    assert names == ["china", "flower"]
    rows, skipped = finetune.predict_files(model, tmp_path / "img", names)
    assert skipped == 2 and len(rows) == 6
    finetune.write_predictions_csv(tmp_path / "predictions.csv", rows)
    with open(tmp_path / "predictions.csv") as f:
        read = list(csv.DictReader(f))
    assert {r["label"] for r in read} <= {"china", "flower"}
    assert all(0.0 <= float(r["probability"]) <= 1.0 for r in read)


def test_predict_files_keeps_each_prediction_with_its_file(tmp_path, capsys):
    root = write_image_folder(tmp_path / "img", per_class=5)
    model = _small_classifier(_embedded(image_size=24)).model
    rows, skipped = finetune.predict_files(model, root, ["even", "odd"], batch_size=4,
                                           verbose=1)
    assert "11/11" in capsys.readouterr().out  # the progress bar counts the 11 image files
    files, _ = data.list_images(str(root))
    assert skipped == 2 and [f for f, _, _ in rows] == files
    images = np.stack([x for x in data.image_files_dataset(files, 24).as_numpy_iterator()])
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
    model = _small_classifier(_embedded()).model
    with pytest.raises(ValueError, match=match):
        finetune.predict_files(model, tmp_path, ["even", "odd"])


def test_shared_imagenet_weights_file_without_top(shared_weights_dir):
    path = str(shared_weights_dir / SHARED_MOBILENET)
    backbone = finetune.build_backbone("MobileNet", weights=path, image_size=32, alpha=0.25)
    variance = backbone.get_layer("conv1_bn").moving_variance.numpy()
    assert not np.allclose(variance, 1.0)  # trained statistics, not the initial ones
    classifier = finetune.Classifier(backbone, "MobileNet", 3)
    assert classifier.model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 3)


def _with_top_file(tmp_path):
    network = keras.applications.MobileNet(include_top=True, weights=None, alpha=0.25,
                                           input_shape=(32, 32, 3))
    path = str(tmp_path / "mobilenet_top.weights.h5")
    network.save_weights(path)
    return network, path


def test_weights_file_with_top_loads_the_body(tmp_path):
    network, path = _with_top_file(tmp_path)
    backbone = finetune.build_backbone("MobileNet", weights=path, image_size=32, alpha=0.25)
    for name in ("conv1", "conv_pw_13_bn"):
        for a, b in zip(backbone.get_layer(name).get_weights(),
                        network.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    assert "conv_preds" not in [layer.name for layer in backbone.layers]


def test_imagenet_classifier_from_a_with_top_file(tmp_path):
    _, path = _with_top_file(tmp_path)
    model, decode = finetune.imagenet_classifier("MobileNet", path, image_size=32, alpha=0.25)
    assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 1000)
    assert decode is keras.applications.mobilenet.decode_predictions


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "ResNet51"}, r"`backbone` must be one of SmallConvNet, ConvNeXtBase.*"
                               r"MobileNetV2.*Received: backbone='ResNet51'"),
        ({"name": "MobileNet", "image_size": 16},
         r"`image_size` is below the minimum.*32x32.*Received: image_size=16"),
        ({"name": "InceptionV3", "image_size": 64}, r"75x75.*Received: image_size=64"),
        ({"name": "SmallConvNet", "image_size": 4},
         r"at least 8 for backbone SmallConvNet\. Received: image_size=4"),
        ({"name": "ResNet50", "alpha": 0.5}, r"MobileNet family only.*Received: alpha=0.5"),
        ({"name": "SmallConvNet", "weights": "imagenet"},
         r"no ImageNet weights.*Received: weights='imagenet'"),
        ({"name": "MobileNet", "weights": "/no/such/file.h5"},
         r"existing weights file\. Received: weights='/no/such/file.h5'"),
    ],
)
def test_bad_backbones_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        finetune.build_backbone(**kwargs)


def test_mismatched_weights_file_is_a_clear_error(tmp_path):
    _, path = _with_top_file(tmp_path)
    with pytest.raises(ValueError, match=r"neither without nor with its classification top.*"
                                         r"Received: weights='.*mobilenet_top\.weights\.h5'"):
        finetune.build_backbone("MobileNet", weights=path, image_size=32, alpha=0.5)
    small = str(tmp_path / "small.keras")
    finetune.small_conv_net(8).save(small)
    with pytest.raises(ValueError, match=r"matches backbone MobileNetV2.*neither.*Received: "
                                         r"weights='.*small\.keras'"):
        finetune.build_backbone("MobileNetV2", weights=small, image_size=32)
    dense = str(tmp_path / "dense.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(dense)
    with pytest.raises(ValueError, match=r"does not match backbone SmallConvNet at image size "
                                         r"16.*Received: weights='.*dense\.keras'"):
        finetune.build_backbone("SmallConvNet", weights=dense, image_size=16)


def test_mismatched_shared_weights_file(shared_weights_dir):
    path = str(shared_weights_dir / SHARED_MOBILENET)
    with pytest.raises(ValueError, match=r"matches backbone MobileNetV2.*Received: weights="):
        finetune.build_backbone("MobileNetV2", weights=path, image_size=32, alpha=0.35)


@pytest.mark.parametrize("value, match", [
    ("no_such_layer", r"must name a layer of small_conv_net.*Received: unfreeze_from="),
    (1.5, r"fraction of depth must be in \[0, 1\)\. Received: unfreeze_from=1.5"),
    (999, r"index below \d+.*Received: unfreeze_from=999"),
])
def test_bad_unfreeze_from(value, match):
    with pytest.raises(ValueError, match=match):
        finetune.unfreeze_index(finetune.small_conv_net(16), value)

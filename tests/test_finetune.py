import keras
import numpy as np
import pytest
from finetune_test_utils import (
    embedded_data,
    small_classifier,
)

from kfound import backbones, data, finetune


def _quiet(**kwargs):
    return finetune.TrainingOptions(**{"verbose": 0, "log": lambda message: None, **kwargs})


def test_head_on_cached_features_matches_the_full_model():
    loaded = embedded_data()
    classifier = small_classifier(loaded)
    before = [w.numpy().copy() for w in classifier.backbone.weights]
    messages = []
    history = finetune.fit_head(classifier, loaded, epochs=3,
                                options=_quiet(log=messages.append))
    assert "runs once" in messages[0]
    assert history["epoch"] == [1, 2, 3]
    for old, new in zip(before, classifier.backbone.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())  # frozen, BatchNorm included
    # The head trained on cached features is the head of the saved model: same numbers.
    classifier.model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, accuracy = classifier.model.evaluate(loaded.val, verbose=0)
    assert accuracy == pytest.approx(history["val_accuracy"][-1], abs=1e-6)
    assert finetune.trainable_params(classifier.model) == 64 * 2 + 2  # even, odd


def test_steps_per_execution_on_cached_features_changes_no_result():
    loaded = data.load_image_data("embedded", 8, batch_size=2, train_per_class=7)
    results = []
    for steps_per_execution in (1, 32):  # 7 steps an epoch: 32 runs them as one
        keras.utils.set_random_seed(0)
        classifier = small_classifier(loaded)
        history = finetune.fit_head(classifier, loaded, epochs=3, options=_quiet(),
                                    feature_steps_per_execution=steps_per_execution)
        results.append((history, [w.numpy() for w in classifier.head.weights]))
    (history, weights), (fused_history, fused_weights) = results
    assert history == fused_history
    for a, b in zip(weights, fused_weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_feature_eval_batch_size_must_be_a_positive_integer():
    loaded = embedded_data(image_size=8)
    for value in (0, 2.5, True):
        expected = rf"positive integer\. Received: feature_eval_batch_size={value}$"
        with pytest.raises(ValueError, match=r"`feature_eval_batch_size` must be a " + expected):
            finetune.fit_head(small_classifier(loaded), loaded, epochs=1, options=_quiet(),
                              feature_eval_batch_size=value)


@pytest.mark.parametrize("state", ["head", "full"])
def test_optimizer_is_chosen_by_name(state):
    loaded = embedded_data(image_size=8)
    classifier = small_classifier(loaded)
    if state == "head":
        finetune.fit_head(classifier, loaded, epochs=1,
                          options=_quiet(learning_rate=0.1, optimizer="sgd"))
        optimizer = classifier.head.optimizer
    else:
        finetune.fit_full(classifier, loaded, epochs=1, fine_tune_epochs=1,
                          fine_tune_learning_rate=0.01, options=_quiet(optimizer="rmsprop"))
        optimizer = classifier.model.optimizer
    expected = {"head": (keras.optimizers.SGD, 0.1), "full": (keras.optimizers.RMSprop, 0.01)}
    assert isinstance(optimizer, expected[state][0])
    assert float(optimizer.learning_rate) == pytest.approx(expected[state][1])


def test_augmentation_turns_feature_caching_off_and_says_why():
    loaded = embedded_data(augment=data.augmentation_layers(flip=None, seed=0))
    messages = []
    finetune.fit_head(small_classifier(loaded), loaded, epochs=1,
                      options=_quiet(log=messages.append))
    assert "caching is off" in messages[0] and "augmentation" in messages[0]


def _batchnorm_state(backbone):
    return {
        layer.name: [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]
        for layer in backbones.batchnorm_layers(backbone)
    }


def _kernel(layer):
    return keras.ops.convert_to_numpy(layer.kernel).copy()


@pytest.mark.parametrize("unfreeze_from", [None, "block1_conv0"])
def test_full_fine_tuning_keeps_every_batchnorm_in_inference_mode(tmp_path, unfreeze_from):
    loaded = embedded_data()
    classifier = small_classifier(loaded)
    before = _batchnorm_state(classifier.backbone)
    assert len(before) == 4
    first = classifier.backbone.get_layer("block0_conv0")
    last = classifier.backbone.get_layer("block1_conv1")
    first_kernel, last_kernel = _kernel(first), _kernel(last)
    history = finetune.fit_full(classifier, loaded, epochs=1, fine_tune_epochs=2,
                                fine_tune_learning_rate=1e-2, unfreeze_from=unfreeze_from,
                                backup_dir=tmp_path / "backup", options=_quiet())
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
    loaded = embedded_data(image_size=32)
    backbone = backbones.build_backbone("MobileNet", image_size=32, alpha=0.25)
    classifier = finetune.Classifier(backbone, "MobileNet", loaded.num_classes)
    before = _batchnorm_state(backbone)
    assert len(before) == 27
    classifier.unfreeze(None)
    assert all(not layer.trainable for layer in backbones.batchnorm_layers(backbone))
    finetune.compile_classifier(classifier.model, learning_rate=1e-2)
    classifier.model.fit(loaded.train, epochs=1, verbose=0, shuffle=False)  # it shuffles
    after = _batchnorm_state(backbone)
    for name, weights in before.items():
        for old, new in zip(weights, after[name], strict=True):
            np.testing.assert_array_equal(new, old, err_msg=name)


def test_scratch_classifier_trains_its_batchnorm():
    loaded = embedded_data()
    classifier = small_classifier(loaded, frozen_bn=False)
    before = _batchnorm_state(classifier.backbone)
    finetune.fit_scratch(classifier, loaded, epochs=1, options=_quiet())
    after = _batchnorm_state(classifier.backbone)
    moving_mean = 2
    for name, weights in before.items():
        assert not np.allclose(after[name][moving_mean], weights[moving_mean]), name


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt("simulated kill")


def test_head_training_resumes_after_an_interruption(tmp_path):
    loaded = embedded_data()
    backup = tmp_path / "backup"
    classifier = small_classifier(loaded)
    with pytest.raises(KeyboardInterrupt):
        finetune.fit_head(classifier, loaded, epochs=4, backup_dir=backup,
                          options=_quiet(callbacks=[_Interrupt(at_epoch=1)]))
    trained = classifier.head.get_weights()
    keras.utils.clear_session()
    fresh = small_classifier(loaded)  # a new process would rebuild everything
    messages = []
    history = finetune.fit_head(fresh, loaded, epochs=4, backup_dir=backup,
                                options=_quiet(log=messages.append))
    assert any("restored epoch 2" in m for m in messages)
    assert history["epoch"] == [1, 2, 3, 4]  # the epochs before the interruption too
    assert len(fresh.epoch_seconds) == 4 and all(s > 0 for s in fresh.epoch_seconds)
    assert not backup.exists()
    assert not np.allclose(fresh.head.get_weights()[0], trained[0])  # trained on from there


def test_full_training_resumes_in_phase_two(tmp_path):
    loaded = embedded_data()
    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        finetune.fit_full(small_classifier(loaded), loaded, epochs=1, fine_tune_epochs=3,
                          backup_dir=backup, options=_quiet(callbacks=[_Interrupt(at_epoch=2)]))
    messages = []
    history = finetune.fit_full(small_classifier(loaded), loaded, epochs=1, fine_tune_epochs=3,
                                backup_dir=backup, options=_quiet(log=messages.append))
    assert any("phase 1 finished earlier" in m for m in messages)
    assert history["epoch"] == [1, 2, 3, 4] and history["phase"] == [1, 2, 2, 2]


def _train(state, backup=None, callbacks=(), balance=False, augment=False):
    """One state from a fresh session, as a new process would run it."""
    keras.utils.clear_session(free_memory=False)
    keras.utils.set_random_seed(7)
    layers = data.augmentation_layers(seed=3) if augment else None
    loaded = data.load_image_data("embedded", 8, batch_size=2, train_per_class=3,
                                  balance=balance, augment=layers, val_batch_size=512)
    classifier = small_classifier(loaded, frozen_bn=state != "scratch")
    options = _quiet(callbacks=list(callbacks))
    if state == "head":
        history = finetune.fit_head(classifier, loaded, epochs=3, options=options,
                                    backup_dir=backup)
    elif state == "full":
        history = finetune.fit_full(classifier, loaded, epochs=2, fine_tune_epochs=2,
                                    fine_tune_learning_rate=1e-2, options=options,
                                    backup_dir=backup)
    else:
        history = finetune.fit_scratch(classifier, loaded, epochs=3, options=options,
                                       backup_dir=backup)
    return history, classifier.model.get_weights()


@pytest.mark.parametrize("state, at_epoch, balance, augment", [
    ("head", 0, True, False),  # dropout and the class-balanced resampling
    ("full", 2, False, False),  # in phase 2, after phase 1's end state was kept
    ("head", 1, False, True),  # the augmentation's random draws
    pytest.param("full", 0, False, False, marks=pytest.mark.slow),  # in phase 1
    pytest.param("scratch", 1, False, False, marks=pytest.mark.slow),
])
def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path, state, at_epoch, balance, augment):
    kwargs = {"balance": balance, "augment": augment}
    expected, expected_weights = _train(state, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        _train(state, tmp_path / "backup", [_Interrupt(at_epoch)], **kwargs)
    history, weights = _train(state, tmp_path / "backup", **kwargs)
    assert history["epoch"] == expected["epoch"]
    for key in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-6, err_msg=key)
    for got, want in zip(weights, expected_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_scratch_baseline_trains_everything():
    loaded = embedded_data()
    classifier = small_classifier(loaded, frozen_bn=False)
    classifier.freeze_backbone()  # fit_scratch must unfreeze it
    conv = classifier.backbone.get_layer("block0_conv0")
    kernel = _kernel(conv)
    history = finetune.fit_scratch(classifier, loaded, epochs=1, options=_quiet())
    assert len(history["val_accuracy"]) == 1
    moving_statistics = sum(
        2 * int(layer.moving_mean.shape[0])
        for layer in backbones.batchnorm_layers(classifier.backbone)
    )
    assert finetune.trainable_params(classifier.model) == (
        classifier.model.count_params() - moving_statistics)
    assert not np.allclose(_kernel(conv), kernel)


_TWO_DEVICES = """
import json
import keras
from finetune_test_utils import small_classifier
from kfound import data, distribution, finetune
placement = distribution.setup()
loaded = data.load_image_data("embedded", 8, batch_size=2, train_per_class=3,
                              val_batch_size=512)
messages = []
with placement.scope():
    classifier = small_classifier(loaded)
    options = finetune.TrainingOptions(verbose=0, log=messages.append)
    history = finetune.fit_full(classifier, loaded, epochs=1, fine_tune_epochs=1,
                                fine_tune_learning_rate=1e-3, options=options)
print(json.dumps({"record": placement.record(), "messages": messages,
                  "sizes": [loaded.train_examples, loaded.val_examples],
                  "epochs": history["epoch"]}))
"""


@pytest.mark.backend_independent  # its subprocess runs JAX, whatever this backend
def test_full_fine_tuning_trims_its_images_for_data_parallel_itself(tmp_path):
    import json
    import os
    import pathlib
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "jax",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": os.pathsep.join([str(pathlib.Path(__file__).parent),
                                          os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", _TWO_DEVICES], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["record"] == {"kind": "DataParallel", "devices": 2}
    # This task's 893 validation images lose one, so that every batch splits.
    assert result["sizes"] == [6, 892] and result["epochs"] == [1, 2]
    assert ("data: 0 training and 1 validation images left out so that every batch splits "
            "across the 2 devices") in result["messages"], result["messages"]

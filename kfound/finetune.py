"""Fine-tuning a pretrained backbone: the training states of the textbook chapter.

The chapter's transfer-learning section lists three ways to reuse a network trained on a
large dataset; `kfound.prediction` serves the first, this module the other two:

2. **head**: freeze the backbone and train only a new classification head (`fit_head`).
   With no augmentation the backbone's features are computed once and the head trains on
   that cache, so epochs 2..N never run the backbone.
3. **full**: the keras.io transfer-learning recipe (`fit_full`): the head on the frozen
   backbone first, then unfreeze the backbone from `unfreeze_from` and continue with a low
   learning rate. Every BatchNormalization layer of the backbone stays frozen, so it runs in
   inference mode even when the rest is unfrozen: its moving statistics and its gamma and
   beta stay as loaded (small, differently distributed batches would otherwise wreck them).

`fit_scratch` trains the same architecture from random initialisation: the baseline that
measures what pretraining is worth (fine-tuning "is equivalent to continuing training, the
difference is the initialization"; the baseline makes that difference a number).

The three `fit_*` functions take their shared settings (optimizer, learning rate,
callbacks, compilation, logging) as one `TrainingOptions`, and everything else by keyword.
Backbones come from `kfound.backbones`.
"""

import dataclasses
import os
import random
import shutil
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from kfound import checks, distribution, prebuild, resume
from kfound.backbones import freeze_batchnorm, unfreeze_index
from kfound.features import cached_features
from kfound.layers.backbone_preprocessing import BackbonePreprocessing

# The shuffle buffer of image training pipelines: `load_image_data`'s and `rebatch`'s default.
IMAGE_SHUFFLE_BUFFER = 1024


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """The settings every training state shares.

    Attributes:
        learning_rate: the learning rate of the head (phase 1 of `fit_full`) and of
            `fit_scratch`. Defaults to `1e-3`.
        optimizer: a Keras optimizer name (`"adam"`, `"sgd"`, ...); each phase compiles a
            fresh one. Defaults to `"adam"`.
        callbacks: more Keras callbacks, for every phase. Defaults to none.
        jit_compile: passed to `compile`. Defaults to `"auto"`.
        verbose: `fit`'s verbosity. Defaults to `"auto"`.
        log: where progress messages go. Defaults to `print`.
    """

    learning_rate: float = 1e-3
    optimizer: str = "adam"
    callbacks: Sequence[keras.callbacks.Callback] = ()
    jit_compile: bool | str = "auto"
    verbose: int | str = "auto"
    log: Callable[[str], None] = print


class Classifier:
    """A backbone and a new head, and the views of them that training needs.

    Attributes:
        model: the full model, raw images -> class probabilities (what is saved).
        backbone: the backbone (`keras.Model`).
        features: raw images -> pooled backbone features (the feature cache's source).
        head: pooled features -> probabilities: dropout then `Dense(num_classes)`; its
            layers are shared with `model`.
        backbone_name: the backbone's name.
        frozen_bn: whether the backbone's BatchNormalization layers stay frozen.
        features_report: where the last `fit_head` got its cached features from (see
            `fit_head`), or `None`.
        epoch_seconds: the wall time of each epoch of the last `fit_*` call, those of an
            interrupted run that it resumed included, or `None`.
    """

    def __init__(self, backbone, backbone_name, num_classes, dropout=0.2, frozen_bn=True):
        self.backbone = backbone
        self.backbone_name = backbone_name
        self.frozen_bn = frozen_bn
        self.features_report = None
        self.epoch_seconds = None
        size = backbone.input_shape[1]
        images = keras.Input((size, size, 3), name="images")
        x = BackbonePreprocessing(backbone_name, name="preprocessing")(images)
        # Calling the backbone with training=False is not enough: in Keras 3 the outer
        # model's training=True still reaches a nested model's BatchNorm layers. Freezing
        # them (trainable=False) is what puts a Keras 3 BatchNormalization in inference mode.
        if frozen_bn:
            freeze_batchnorm(backbone)
        x = backbone(x)
        pooled = keras.layers.GlobalAveragePooling2D(name="pooling")(x)
        self.head = keras.Sequential(
            [
                keras.layers.Dropout(dropout, name="dropout", seed=_dropout_seed()),
                keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                   name="predictions"),
            ],
            name="head",
        )
        self.model = keras.Model(images, self.head(pooled), name=f"{backbone_name}_classifier")
        self.features = keras.Model(images, pooled, name=f"{backbone_name}_features")

    def freeze_backbone(self):
        self.backbone.trainable = False

    def unfreeze(self, unfreeze_from=None):
        """Makes backbone layers from `unfreeze_from` on trainable (all when `None`).

        Args:
            unfreeze_from: a layer name, an integer index into `backbone.layers`, or a float
                in `[0, 1)`: the fraction of the backbone's depth that stays frozen.

        Returns:
            The index of the first trainable backbone layer.
        """
        index = unfreeze_index(self.backbone, unfreeze_from)
        self.backbone.trainable = True
        for layer in self.backbone.layers[:index]:
            layer.trainable = False
        if self.frozen_bn:
            freeze_batchnorm(self.backbone)
        return index


def compile_classifier(model, *, learning_rate=1e-3, optimizer="adam", jit_compile="auto",
                       steps_per_execution=1):
    """Compiles a classifier for integer labels: a fresh optimizer chosen by name.

    Args:
        model: the model to compile.
        learning_rate: the optimizer's learning rate. Defaults to `1e-3`.
        optimizer: a Keras optimizer name (`"adam"`, `"sgd"`, ...). Defaults to `"adam"`.
        jit_compile: passed to `compile`. Defaults to `"auto"`.
        steps_per_execution: passed to `compile` (Keras's torch backend takes only 1).
            Defaults to `1`.
    """
    model.compile(
        optimizer=keras.optimizers.get(
            {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
        ),
        loss="sparse_categorical_crossentropy",
        # An object, not "accuracy", so that `fit` traces once: see `kfound.prebuild`.
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )


def _fit(model, train, val, *, epochs, options, backup_dir, initial_epoch=0):
    """Trains `model`, resuming from `backup_dir`; the history covers every epoch done.

    `train` is a `kfound.resume.EpochPipeline` of images (augmented or not) or of cached
    features: batches that depend only on the seed and the epoch, so a resumed run equals
    an uninterrupted one. `backup_dir` (a `kfound.resume.TrainingCheckpoint` folder) is
    deleted once training ends.
    """
    prebuild.build_optimizer(model)
    checkpoint = resume.TrainingCheckpoint(backup_dir, log=options.log)
    start = checkpoint.restore(model, initial_epoch)
    if start < epochs:
        model.fit(
            train.fit_data(start, epochs),
            validation_data=val,
            epochs=epochs,
            initial_epoch=start,
            steps_per_epoch=train.steps,
            callbacks=[checkpoint, *options.callbacks],
            verbose=options.verbose,
            shuffle=False,  # the pipeline shuffles
        )
    if backup_dir is not None:
        shutil.rmtree(backup_dir, ignore_errors=True)
    return resume.history_dict(checkpoint.history)


def _epoch_pipeline(data, options):
    """`data`'s training batches, augmented if `data` is, as a `resume.EpochPipeline`.

    A folder's files are checked first (`ImageData.check_files`), so that the epoch's
    length counts only the images that decode. Under `distribution.setup()`'s
    DataParallel, both splits are cut to a multiple of the device count
    (`ImageData.trim_to_multiple`, said through `options.log`), so that every batch splits.
    """
    data.check_files(verbose=options.verbose)
    devices = distribution.data_parallel_devices()
    dropped = data.trim_to_multiple(devices)
    if any(dropped):
        options.log(f"data: {dropped[0]} training and {dropped[1]} validation images left out "
                    f"so that every batch splits across the {devices} devices")
    return resume.EpochPipeline(
        data.train_unshuffled, data.num_classes, data.train_examples, data.batch_size,
        balance=data.balance, seed=data.seed, shuffle_buffer=IMAGE_SHUFFLE_BUFFER,
        augment=data.augment,
    )


def fit_head(
    classifier, data, *, epochs, options=TrainingOptions(), cache_features=True,
    feature_cache=None, feature_batch_size=64, backup_dir=None, feature_eval_batch_size=1024,
    feature_steps_per_execution=1024, backbone_digest=None, compiled_head=None,
):
    """State 2: trains only the head on the frozen backbone.

    With `cache_features` and no augmentation, the backbone runs once over the training and
    validation images and the head trains on the pooled features (the same computation:
    the frozen backbone in inference mode and the parameter-free pooling are deterministic).
    Augmentation changes the images every epoch, so their features can't be cached: then,
    as with `cache_features=False`, every epoch runs the backbone. With `feature_cache`, the
    features are also kept on disk (`kfound.features`), so that a rerun, a resumed run or
    another head trial on the same backbone and data reads them back.

    After the call, `classifier.features_report` says where the features came from:
    `{"source": "computed" | "cache", "seconds": s}`, or `None` when none were cached.

    Args:
        classifier: a `Classifier`.
        data: a `kfound.data.ImageData`.
        epochs: the number of epochs.
        options: the shared `TrainingOptions` (learning rate, optimizer, callbacks, ...).
            Defaults to `TrainingOptions()`.
        cache_features: train on cached features when possible. Defaults to `True`.
        feature_cache: a folder for the on-disk feature cache, or `None` to keep the
            features in memory only. Defaults to `None`.
        feature_batch_size: images per batch of the one pass that computes the features;
            inference keeps no activations for backprop, so it affords bigger batches
            than training. Defaults to `64`.
        backup_dir: the folder that makes training resumable (`kfound.resume`): a rerun
            after a kill restores the last finished epoch (weights, optimizer, random state
            and history) and goes on, to the result of an uninterrupted run. Deleted when
            training ends. Defaults to `None`.
        feature_eval_batch_size: the batch size of the validation pass over cached
            features (at least `data.batch_size`). A feature vector is small, so large
            batches cut the per-step cost that dominates a cached epoch; the result does
            not depend on it. Defaults to `1024`.
        feature_steps_per_execution: the most training steps on cached features that one
            call of the compiled train function runs (Keras's `steps_per_execution`), to
            cut the per-step overhead that dominates training a small head. The largest
            divisor of the steps per epoch up to this is used, so that every epoch keeps
            its own batches and the result does not depend on it; batch-level callbacks
            are called once per execution. Under torch, which runs one step per call,
            it is ignored. Defaults to `1024`.
        backbone_digest: the SHA-256 of the backbone's weights
            (`kfound.features.weights_digest`), when the caller has it already (a search's
            shared, frozen backbone), so that the feature cache's key does not hash them
            again; it must be the digest of these weights. Defaults to `None` (hashed).
        compiled_head: a `kfound.compiled_head.CompiledHead`, shared by calls that train
            heads of one architecture (a search's trials), so that the head trains on its
            compiled copy, whose train and test functions are traced once for them all,
            with the result of a fresh compile. Only heads trained on cached features
            use it; under torch, whose `fit` traces nothing, none does. The callbacks
            see the copy as their `model`. Defaults to `None` (the head is compiled).

    Returns:
        The training history, a dict of per-epoch lists: `"epoch"` (1-based), the losses
        and the metrics. A resumed run's history covers every epoch, those of the
        interrupted run included (as does `classifier.epoch_seconds`).
    """
    checks.positive_int("feature_eval_batch_size", feature_eval_batch_size)
    checks.positive_int("feature_batch_size", feature_batch_size)
    checks.positive_int("feature_steps_per_execution", feature_steps_per_execution)
    distribution.check_batch_size(feature_batch_size, "feature_batch_size")
    distribution.check_batch_size(feature_eval_batch_size, "feature_eval_batch_size")
    classifier.freeze_backbone()
    steps_per_execution = 1
    classifier.features_report = None
    if cache_features and not data.augmented:
        (x, y, x_val, y_val), classifier.features_report = cached_features(
            classifier, data, feature_cache, batch_size=feature_batch_size,
            verbose=options.verbose != 0, log=options.log, backbone_digest=backbone_digest,
        )
        # Under DataParallel every batch must split across the devices (a no-op once
        # `data.trim_to_multiple` has cut the images the same way).
        x, y = distribution.trim_to_devices(x, y)
        x_val, y_val = distribution.trim_to_devices(x_val, y_val)
        train = resume.EpochPipeline(
            tf.data.Dataset.from_tensor_slices((x, y)), data.num_classes, len(x),
            data.batch_size, balance=data.balance, seed=data.seed,
        )
        val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(
            max(data.batch_size, feature_eval_batch_size))
        model = classifier.head
        if keras.backend.backend() != "torch":
            steps_per_execution = max(
                d for d in range(1, min(feature_steps_per_execution, train.steps) + 1)
                if train.steps % d == 0)
    else:
        reason = (
            "augmentation changes the images every epoch, so their features differ each time"
            if data.augmented else "cache_features is off"
        )
        options.log(f"head: feature caching is off ({reason}); every epoch runs the frozen "
                    "backbone")
        train, val, model = _epoch_pipeline(data, options), data.val, classifier.model

    def compile_head(head):
        compile_classifier(head, learning_rate=options.learning_rate,
                           optimizer=options.optimizer, jit_compile=options.jit_compile,
                           steps_per_execution=steps_per_execution)

    reuse = (compiled_head is not None and model is classifier.head
             and keras.backend.backend() != "torch")
    if reuse:
        settings = [options.optimizer, options.jit_compile, steps_per_execution]
        model = compiled_head.prepare(model, options.learning_rate, settings, compile_head)
    else:
        compile_head(model)
    history = _fit(model, train, val, epochs=epochs, options=options, backup_dir=backup_dir)
    if reuse:
        compiled_head.give_back(classifier.head)
    classifier.epoch_seconds = history.pop("seconds", [])
    return history


def fit_full(
    classifier, data, *, epochs, fine_tune_epochs, options=TrainingOptions(),
    fine_tune_learning_rate=1e-5, unfreeze_from=None, cache_features=True, feature_cache=None,
    backup_dir=None,
):
    """State 3: the head on the frozen backbone, then the unfrozen backbone at a low rate.

    Phase 1 is `fit_head`. Phase 2 unfreezes the backbone from `unfreeze_from`, recompiles
    with `fine_tune_learning_rate` and trains the whole model for `fine_tune_epochs` more
    (Chollet, "Transfer learning & fine-tuning", keras.io). Whatever `unfreeze_from` says,
    every BatchNormalization layer of the backbone stays frozen in inference mode (when the
    classifier has `frozen_bn=True`, the default): its moving statistics, gamma and beta stay
    as loaded. Both phases are resumable: phase 1's end state (the head, its random state
    and its history) is kept under `backup_dir` until phase 2 ends, so a run killed in
    phase 2 neither redoes phase 1 nor departs from the uninterrupted run.

    Args:
        classifier: a `Classifier`.
        data: a `kfound.data.ImageData`.
        epochs: phase-1 epochs.
        fine_tune_epochs: phase-2 epochs.
        options: the shared `TrainingOptions`; its learning rate is phase 1's. Defaults to
            `TrainingOptions()`.
        fine_tune_learning_rate: phase-2 learning rate. Defaults to `1e-5`.
        unfreeze_from: see `Classifier.unfreeze`. Defaults to `None` (the whole backbone).
        cache_features: phase 1 trains on cached features when possible. Defaults to `True`.
        feature_cache: phase 1's on-disk feature cache folder (see `fit_head`). Defaults to
            `None`.
        backup_dir: the folder for the resumable state of both phases. Defaults to `None`.

    Returns:
        The history of both phases, as `fit_head`'s, with a `"phase"` key.
    """
    if backup_dir is None:
        first = fit_head(classifier, data, epochs=epochs, options=options,
                         cache_features=cache_features, feature_cache=feature_cache)
    else:
        first = _resumable_phase1(classifier, data, epochs=epochs, options=options,
                                  cache_features=cache_features, feature_cache=feature_cache,
                                  backup_dir=os.fspath(backup_dir))
    first_seconds = classifier.epoch_seconds
    index = classifier.unfreeze(unfreeze_from)
    options.log(f"full: unfreezing {classifier.backbone.name} from layer {index} "
                f"({classifier.backbone.layers[index].name}); learning rate "
                f"{fine_tune_learning_rate}")
    compile_classifier(classifier.model, learning_rate=fine_tune_learning_rate,
                       optimizer=options.optimizer, jit_compile=options.jit_compile)
    phase2_dir = None if backup_dir is None else os.path.join(backup_dir, "phase2")
    second = _fit(classifier.model, _epoch_pipeline(data, options), data.val,
                  epochs=epochs + fine_tune_epochs, options=options, backup_dir=phase2_dir,
                  initial_epoch=epochs)
    classifier.epoch_seconds = first_seconds + second.pop("seconds", [])
    history = {k: list(first.get(k, [])) + list(second.get(k, [])) for k in second}
    history["phase"] = [1] * len(first["epoch"]) + [2] * len(second["epoch"])
    if backup_dir is not None:
        shutil.rmtree(backup_dir, ignore_errors=True)
    return history


def _resumable_phase1(classifier, data, *, epochs, options, cache_features, feature_cache,
                      backup_dir):
    """Phase 1 of `fit_full`, whose end state is kept until phase 2 ends.

    The head's weights, its dropout's random state and phase 1's history are saved as a
    `resume.TrainingCheckpoint` of their own, so a run killed in phase 2 neither redoes
    phase 1 nor starts phase 2 from another random state.
    """
    done = resume.TrainingCheckpoint(os.path.join(backup_dir, "phase1_done"), log=options.log)
    if done.restore(classifier.head) == epochs:
        options.log(f"full: phase 1 finished earlier; restored its head from {done.folder}")
        first = resume.history_dict(done.history)
        classifier.epoch_seconds = first.pop("seconds", [])
        return first
    first = fit_head(classifier, data, epochs=epochs, options=options,
                     cache_features=cache_features, feature_cache=feature_cache,
                     backup_dir=os.path.join(backup_dir, "phase1"))
    first = {**first, "seconds": classifier.epoch_seconds}
    rows = [dict(zip(first, values, strict=True)) for values in zip(*first.values(), strict=True)]
    done.save(classifier.head, epochs, rows)
    return {k: v for k, v in first.items() if k != "seconds"}


def fit_scratch(classifier, data, *, epochs, options=TrainingOptions(), backup_dir=None):
    """The baseline: the same architecture from random initialisation, all layers trained.

    The classifier should be built with `frozen_bn=False`: a randomly initialised backbone
    must learn its BatchNorm statistics, which inference mode would pin at 0 and 1.

    Args:
        classifier: a `Classifier` over a randomly initialised backbone.
        data: a `kfound.data.ImageData`.
        epochs: the number of epochs.
        options: the shared `TrainingOptions`. Defaults to `TrainingOptions()`.
        backup_dir: the resumable-training folder (see `fit_head`). Defaults to `None`.

    Returns:
        The history, as `fit_head`'s.
    """
    classifier.backbone.trainable = True
    compile_classifier(classifier.model, learning_rate=options.learning_rate,
                       optimizer=options.optimizer, jit_compile=options.jit_compile)
    history = _fit(classifier.model, _epoch_pipeline(data, options), data.val,
                   epochs=epochs, options=options, backup_dir=backup_dir)
    classifier.epoch_seconds = history.pop("seconds", [])
    return history


def trainable_params(model):
    """The number of trainable scalars of `model`."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _dropout_seed():
    """`Dropout`'s seed: `None`, except under torch, where a seed drawn as Keras would.

    Keras's torch `Dropout` without a seed takes torch's fast unseeded path, which draws
    from torch's global generator, so a resumed run cannot replay its masks; with a seed it
    draws from the layer's `SeedGenerator`, whose state the checkpoint keeps. The seed is
    drawn from Python's `random`, as Keras draws an unset one (`keras.utils.set_random_seed`
    fixes it).
    """
    if keras.backend.backend() != "torch":
        return None
    return random.randint(1, int(1e9))

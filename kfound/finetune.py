"""Fine-tuning a pretrained backbone in the three states of seed §3.7.4.

1. **predict**: label unknown images with a trained model, no training (`predict`).
2. **head**: freeze the backbone and train only a new classification head (`fit_head`).
   With no augmentation the backbone's features are computed once and the head trains on
   that cache, so epochs 2..N never run the backbone.
3. **full**: the keras.io transfer-learning recipe (`fit_full`): the head on the frozen
   backbone first, then unfreeze the backbone from `unfreeze_from` and continue with a low
   learning rate. Every BatchNormalization layer of the backbone stays frozen, so it runs in
   inference mode even when the rest is unfrozen: its moving statistics and its gamma and
   beta stay as loaded (small, differently distributed batches would otherwise wreck them).

`fit_scratch` trains the same architecture from random initialisation: the baseline that
measures what pretraining is worth. The seed (§3.7.3) says fine-tuning "is equivalent to
continuing training, the difference is the initialization"; the baseline makes that
difference a number.

Backbones are any `keras.applications` constructor by name, each paired with its own
`preprocess_input` (which runs inside the model, so saved models take raw `[0, 255]`
images), plus `SmallConvNet`, a four-convolution network small enough to pretrain on a
CPU in seconds (`pretrain_small_backbone`, used by the offline demo).
"""

import contextlib
import csv
import inspect
import io
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from kfound import io_utils
from kfound.data import image_candidates, make_training_pipeline, named_image_files_dataset

SMALL_BACKBONE = "SmallConvNet"
SMALL_BACKBONE_MIN_SIZE = 8
CLASSES_FILE = "classes.json"


def application_names():
    """The names of the `keras.applications` backbone constructors, sorted."""
    return sorted(
        name for name in dir(keras.applications)
        if name[0].isupper() and callable(getattr(keras.applications, name))
    )


def backbone_names():
    """Every valid `backbone` name: `SmallConvNet` and the `keras.applications` constructors."""
    return [SMALL_BACKBONE, *application_names()]


def default_image_size(backbone):
    """The default image side: 16 for `SmallConvNet` (upsampled 8x8 digits), else 224."""
    return 16 if backbone == SMALL_BACKBONE else 224


def _application(name):
    """The constructor and its `keras.applications` module (for `preprocess_input`)."""
    if name not in application_names():
        raise ValueError(
            f"Argument `backbone` must be one of {', '.join(backbone_names())}. "
            f"Received: backbone={name!r}"
        )
    constructor = getattr(keras.applications, name)
    module = getattr(keras.applications, constructor.__module__.rsplit(".", 1)[-1])
    return constructor, module


@keras.saving.register_keras_serializable(package="kfound")
class BackbonePreprocessing(keras.layers.Layer):
    """A backbone's own input preprocessing as a layer, so saved models take raw images.

    Args:
        backbone: a `keras.applications` constructor name (its module's
            `preprocess_input` runs) or `"SmallConvNet"` (scales `[0, 255]` to `[0, 1]`).

    Call arguments:
        inputs: RGB images with values in `[0, 255]`.

    Returns:
        The images as the backbone expects them.

    Example:

    >>> layer = BackbonePreprocessing("MobileNet")
    >>> float(layer(np.full((1, 2, 2, 3), 255.0, "float32"))[0, 0, 0, 0])
    1.0
    """

    def __init__(self, backbone, **kwargs):
        if backbone != SMALL_BACKBONE:
            _application(backbone)
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, inputs):
        if self.backbone == SMALL_BACKBONE:
            return inputs / 255.0
        return _application(self.backbone)[1].preprocess_input(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


def small_conv_net(image_size, bn_momentum=0.9, name="small_conv_net"):
    """`SmallConvNet`: four 3x3 convolutions with BatchNorm, two max-poolings, no top.

    Args:
        image_size: the side of the square RGB input, at least 8.
        bn_momentum: the BatchNorm moving-average momentum. Defaults to `0.9`, not Keras's
            `0.99`: small datasets give few steps, and with `0.99` the moving statistics lag
            the fast-changing weights (a from-scratch run on 50 images would then be judged
            with stale statistics in inference mode).
        name: the model name. Defaults to `"small_conv_net"`.

    Returns:
        A `keras.Model` from `(image_size, image_size, 3)` to feature maps of 64 channels.
    """
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for block, filters in enumerate((32, 64)):
        for conv in range(2):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}"
            )(x)
            x = keras.layers.BatchNormalization(
                momentum=bn_momentum, name=f"block{block}_bn{conv}"
            )(x)
            x = keras.layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name=name)


def build_backbone(name, weights=None, image_size=None, alpha=None):
    """Builds a backbone without its classification top.

    Args:
        name: a name from `backbone_names()`.
        weights: `None` (random initialisation), `"imagenet"` (Keras downloads them), or the
            path of a weights file, with or without the classification top (tried without,
            then with; the top is dropped). For `SmallConvNet`, a `.keras` or `.weights.h5`
            file. Defaults to `None`.
        image_size: the side of the square input. Defaults to `default_image_size(name)`.
        alpha: the width multiplier of the MobileNet family. Defaults to the backbone's own.

    Returns:
        A `keras.Model` from `(image_size, image_size, 3)` to feature maps.

    Raises:
        ValueError: for an unknown name, an image size below the backbone's minimum,
            `alpha` on a backbone without one, or a weights file that doesn't match.
    """
    image_size = default_image_size(name) if image_size is None else image_size
    if name == SMALL_BACKBONE:
        if alpha is not None:
            raise ValueError(
                f"Argument `alpha` applies to the MobileNet family only, not {name}. "
                f"Received: alpha={alpha}"
            )
        if weights == "imagenet":
            raise ValueError(
                f"Argument `weights` cannot be 'imagenet' for {name}, which has no ImageNet "
                "weights; use a file from `pretrain_small_backbone` or None. "
                f"Received: weights={weights!r}"
            )
        if image_size < SMALL_BACKBONE_MIN_SIZE:
            raise ValueError(
                f"Argument `image_size` must be at least {SMALL_BACKBONE_MIN_SIZE} for "
                f"backbone {name}. Received: image_size={image_size}"
            )
        backbone = small_conv_net(image_size)
        if weights is not None:
            _load_small_weights(backbone, weights)
        return backbone
    constructor, _ = _application(name)
    kwargs = {"input_shape": (image_size, image_size, 3)}
    if alpha is not None:
        if "alpha" not in inspect.signature(constructor).parameters:
            raise ValueError(
                f"Argument `alpha` applies to the MobileNet family only, not {name}. "
                f"Received: alpha={alpha}"
            )
        kwargs["alpha"] = alpha
    try:
        if weights is None or weights == "imagenet":
            return constructor(include_top=False, weights=weights, **kwargs)
        return _backbone_from_file(constructor, name, weights, kwargs)
    except ValueError as error:
        if "Input size must be at least" in str(error):
            raise ValueError(
                f"Argument `image_size` is below the minimum input size of backbone {name} "
                f"({error}). Received: image_size={image_size}"
            ) from error
        raise


def _backbone_from_file(constructor, name, path, kwargs):
    if not os.path.isfile(path):
        raise ValueError(
            "Argument `weights` must be 'imagenet', None, or an existing weights file. "
            f"Received: weights={path!r}"
        )
    errors = []
    with _quiet():
        try:
            return constructor(include_top=False, weights=path, **kwargs)
        except Exception as error:  # Keras raises several types on mismatch.
            errors.append(f"without top: {error}")
        try:
            full = constructor(include_top=True, weights=path, **kwargs)
        except Exception as error:
            errors.append(f"with top: {error}")
        else:
            backbone = constructor(include_top=False, weights=None, **kwargs)
            for layer in backbone.layers:
                if layer.weights:
                    layer.set_weights(full.get_layer(layer.name).get_weights())
            return backbone
    detail = "; ".join(" ".join(str(e).split())[:300] for e in errors)
    raise ValueError(
        f"Argument `weights` is a file that matches backbone {name} "
        f"({', '.join(f'{k}={v}' for k, v in kwargs.items())}) neither without nor with its "
        f"classification top ({detail}). Received: weights={path!r}"
    )


def _load_small_weights(backbone, path):
    if not os.path.isfile(path):
        raise ValueError(
            "Argument `weights` must be None or an existing weights file for "
            f"{SMALL_BACKBONE}. Received: weights={path!r}"
        )
    try:
        if path.endswith(".keras"):
            source = keras.saving.load_model(path, compile=False)
            backbone.set_weights(source.get_weights())
        else:
            backbone.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"Argument `weights` is a file that does not match backbone {SMALL_BACKBONE} at "
            f"image size {backbone.input_shape[1]} ({str(error).splitlines()[0][:300]}). "
            f"Received: weights={path!r}"
        ) from error


@contextlib.contextmanager
def _quiet():
    # Keras prints load warnings for each failed attempt; the final error says it all.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


class Classifier:
    """A backbone and a new head, and the views of them that training needs.

    Attributes:
        model: the full model, raw images -> class probabilities (what is saved).
        backbone: the backbone (`keras.Model`).
        features: raw images -> pooled backbone features (the feature cache's source).
        head: pooled features -> probabilities: dropout then `Dense(num_classes)`; its
            layers are shared with `model`.
        backbone_name: the backbone's name.
    """

    def __init__(self, backbone, backbone_name, num_classes, dropout=0.2, frozen_bn=True):
        self.backbone = backbone
        self.backbone_name = backbone_name
        self.frozen_bn = frozen_bn
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
                keras.layers.Dropout(dropout, name="dropout"),
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


def batchnorm_layers(model):
    """Every `BatchNormalization` layer of `model`, nested models included, in order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(batchnorm_layers(layer))
    return found


def freeze_batchnorm(model):
    """Freezes every `BatchNormalization` layer of `model`, which keeps it in inference mode.

    In Keras 3 a `BatchNormalization` layer with `trainable=False` normalizes with its moving
    statistics and never updates them, even inside `fit`; its gamma and beta don't train.
    Setting `trainable` on a model resets its layers, so call this after every such change.

    Returns:
        The number of layers frozen.
    """
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.trainable = False
    return len(layers)


def unfreeze_index(backbone, unfreeze_from):
    """Resolves `unfreeze_from` (name, index or depth fraction) to a layer index."""
    layers = backbone.layers
    if unfreeze_from is None:
        return 0
    if isinstance(unfreeze_from, str):
        names = [layer.name for layer in layers]
        if unfreeze_from not in names:
            raise ValueError(
                f"Argument `unfreeze_from` must name a layer of {backbone.name} (for example "
                f"{names[len(names) // 2]!r}). Received: unfreeze_from={unfreeze_from!r}"
            )
        return names.index(unfreeze_from)
    if isinstance(unfreeze_from, float):
        if not 0.0 <= unfreeze_from < 1.0:
            raise ValueError(
                "Argument `unfreeze_from` as a fraction of depth must be in [0, 1). "
                f"Received: unfreeze_from={unfreeze_from}"
            )
        return int(unfreeze_from * len(layers))
    if isinstance(unfreeze_from, int) and -len(layers) <= unfreeze_from < len(layers):
        return unfreeze_from % len(layers)
    raise ValueError(
        f"Argument `unfreeze_from` must be a layer name, an index below {len(layers)}, or a "
        f"fraction in [0, 1). Received: unfreeze_from={unfreeze_from!r}"
    )


def _compile(model, learning_rate, jit_compile, optimizer="adam"):
    model.compile(
        optimizer=keras.optimizers.get(
            {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def _fit(model, train, val, epochs, backup_dir, callbacks, verbose, initial_epoch=0):
    callbacks = list(callbacks or [])
    if backup_dir is not None:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(os.fspath(backup_dir)))
    history = model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the pipeline shuffles
    )
    return {"epoch": [e + 1 for e in history.epoch], **history.history}


def extract_features(classifier, dataset, verbose=0):
    """Runs the frozen backbone once over `(image, label)` pairs.

    Args:
        classifier: a `Classifier`.
        dataset: a batched `tf.data.Dataset` of `(images, labels)`.
        verbose: `predict`'s verbosity. Defaults to `0`.

    Returns:
        `(features, labels)` as NumPy arrays.
    """
    features = classifier.features.predict(dataset, verbose=verbose)
    labels = np.concatenate([y for y in dataset.map(lambda x, y: y).as_numpy_iterator()])
    return features, labels


def fit_head(
    classifier, data, epochs, learning_rate=1e-3, cache_features=True, backup_dir=None,
    callbacks=None, jit_compile="auto", verbose="auto", log=print, optimizer="adam",
    feature_eval_batch_size=1024,
):
    """State 2: trains only the head on the frozen backbone.

    With `cache_features` and no augmentation, the backbone runs once over the training and
    validation images and the head trains on the pooled features (the same computation:
    the frozen backbone in inference mode and the parameter-free pooling are deterministic).
    Augmentation changes the images every epoch, so their features can't be cached: then,
    as with `cache_features=False`, every epoch runs the backbone.

    Args:
        classifier: a `Classifier`.
        data: a `kfound.data.ImageData`.
        epochs: the number of epochs.
        learning_rate: the optimizer's learning rate. Defaults to `1e-3`.
        cache_features: train on cached features when possible. Defaults to `True`.
        backup_dir: the `BackupAndRestore` folder that makes training resumable.
        callbacks: more Keras callbacks. Defaults to none.
        jit_compile: passed to `compile`. Defaults to `"auto"`.
        verbose: `fit`'s verbosity. Defaults to `"auto"`.
        log: where progress messages go. Defaults to `print`.
        optimizer: a Keras optimizer name (`"adam"`, `"sgd"`, ...). Defaults to `"adam"`.
        feature_eval_batch_size: the batch size of the validation pass over cached
            features (at least `data.batch_size`). A feature vector is small, so large
            batches cut the per-step cost that dominates a cached epoch; the result does
            not depend on it. Defaults to `1024`.

    Returns:
        The training history, a dict of per-epoch lists with an `"epoch"` key
        (1-based epoch numbers: a resumed run lists only the epochs it ran).
    """
    if isinstance(feature_eval_batch_size, bool) or not isinstance(
        feature_eval_batch_size, int
    ) or feature_eval_batch_size < 1:
        raise ValueError("Argument `feature_eval_batch_size` must be a positive integer. "
                         f"Received: feature_eval_batch_size={feature_eval_batch_size!r}")
    classifier.freeze_backbone()
    if cache_features and not data.augmented:
        log(f"head: caching backbone features of {data.train_examples} training and "
            f"{data.val_examples} validation images (the backbone runs once)")
        x, y = extract_features(classifier, data.train_unshuffled.batch(data.batch_size))
        x_val, y_val = extract_features(classifier, data.val)
        train = make_training_pipeline(
            tf.data.Dataset.from_tensor_slices((x, y)), data.num_classes, len(x),
            data.batch_size, balance=data.balance, seed=data.seed,
        )
        val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(
            max(data.batch_size, feature_eval_batch_size))
        model = classifier.head
    else:
        reason = (
            "augmentation changes the images every epoch, so their features differ each time"
            if data.augmented else "cache_features is off"
        )
        log(f"head: feature caching is off ({reason}); every epoch runs the frozen backbone")
        train, val, model = data.train, data.val, classifier.model
    _compile(model, learning_rate, jit_compile, optimizer)
    return _fit(model, train, val, epochs, backup_dir, callbacks, verbose)


def fit_full(
    classifier, data, epochs, fine_tune_epochs, learning_rate=1e-3, fine_tune_learning_rate=1e-5,
    unfreeze_from=None, cache_features=True, backup_dir=None, callbacks=None,
    jit_compile="auto", verbose="auto", log=print, optimizer="adam",
):
    """State 3: the head on the frozen backbone, then the unfrozen backbone at a low rate.

    Phase 1 is `fit_head`. Phase 2 unfreezes the backbone from `unfreeze_from`, recompiles
    with `fine_tune_learning_rate` and trains the whole model for `fine_tune_epochs` more
    (Chollet, "Transfer learning & fine-tuning", keras.io). Whatever `unfreeze_from` says,
    every BatchNormalization layer of the backbone stays frozen in inference mode (when the
    classifier has `frozen_bn=True`, the default): its moving statistics, gamma and beta stay
    as loaded. Both phases are resumable: phase 1's head is saved under
    `backup_dir` when it ends, so a run killed in phase 2 does not redo phase 1.

    Args:
        classifier: a `Classifier`.
        data: a `kfound.data.ImageData`.
        epochs: phase-1 epochs.
        fine_tune_epochs: phase-2 epochs.
        learning_rate: phase-1 learning rate. Defaults to `1e-3`.
        fine_tune_learning_rate: phase-2 learning rate. Defaults to `1e-5`.
        unfreeze_from: see `Classifier.unfreeze`. Defaults to `None` (the whole backbone).
        cache_features: phase 1 trains on cached features when possible. Defaults to `True`.
        backup_dir: the folder for the resumable state of both phases.
        callbacks: more Keras callbacks, for both phases.
        jit_compile: passed to `compile`. Defaults to `"auto"`.
        verbose: `fit`'s verbosity. Defaults to `"auto"`.
        log: where progress messages go. Defaults to `print`.
        optimizer: a Keras optimizer name, for both phases (each compiles a fresh one).
            Defaults to `"adam"`.

    Returns:
        The history of both phases, as `fit_head`'s, with a `"phase"` key.
    """
    if backup_dir is None:
        first = fit_head(classifier, data, epochs, learning_rate, cache_features, None,
                         callbacks, jit_compile, verbose, log, optimizer)
    else:
        first = _resumable_phase1(
            classifier, data, epochs, learning_rate, cache_features, os.fspath(backup_dir),
            callbacks, jit_compile, verbose, log, optimizer,
        )
    index = classifier.unfreeze(unfreeze_from)
    log(f"full: unfreezing {classifier.backbone.name} from layer {index} "
        f"({classifier.backbone.layers[index].name}); learning rate {fine_tune_learning_rate}")
    _compile(classifier.model, fine_tune_learning_rate, jit_compile, optimizer)
    phase2_dir = None if backup_dir is None else os.path.join(backup_dir, "phase2")
    second = _fit(classifier.model, data.train, data.val, epochs + fine_tune_epochs, phase2_dir,
                  callbacks, verbose, initial_epoch=epochs)
    history = {k: list(first.get(k, [])) + list(second.get(k, [])) for k in second}
    history["phase"] = [1] * len(first["epoch"]) + [2] * len(second["epoch"])
    if backup_dir is not None:
        for name in ("phase1_head.keras", "phase1_history.json"):
            os.remove(os.path.join(backup_dir, name))
        with contextlib.suppress(OSError):
            os.rmdir(backup_dir)
    return history


def _resumable_phase1(classifier, data, epochs, learning_rate, cache_features, backup_dir,
                      callbacks, jit_compile, verbose, log, optimizer):
    """Phase 1 of `fit_full`, whose finished head and history are kept until phase 2 ends."""
    head_path = os.path.join(backup_dir, "phase1_head.keras")
    history_path = os.path.join(backup_dir, "phase1_history.json")
    if os.path.exists(head_path) and os.path.exists(history_path):
        log(f"full: phase 1 finished earlier; restoring its head from {head_path}")
        classifier.head.set_weights(keras.saving.load_model(head_path).get_weights())
        with open(history_path, encoding="utf-8") as f:
            return json.load(f)
    first = fit_head(classifier, data, epochs, learning_rate, cache_features,
                     os.path.join(backup_dir, "phase1"), callbacks, jit_compile, verbose, log,
                     optimizer)
    io_utils.save_model(classifier.head, head_path)
    io_utils.write_json(history_path, first)
    return first


def fit_scratch(
    classifier, data, epochs, learning_rate=1e-3, backup_dir=None, callbacks=None,
    jit_compile="auto", verbose="auto",
):
    """The baseline: the same architecture from random initialisation, all layers trained.

    The classifier should be built with `frozen_bn=False`: a randomly initialised backbone
    must learn its BatchNorm statistics, which inference mode would pin at 0 and 1.

    Args:
        classifier: a `Classifier` over a randomly initialised backbone.
        data: a `kfound.data.ImageData`.
        epochs: the number of epochs.
        learning_rate: Adam's learning rate. Defaults to `1e-3`.
        backup_dir: the `BackupAndRestore` folder.
        callbacks: more Keras callbacks.
        jit_compile: passed to `compile`. Defaults to `"auto"`.
        verbose: `fit`'s verbosity. Defaults to `"auto"`.

    Returns:
        The history, as `fit_head`'s.
    """
    classifier.backbone.trainable = True
    _compile(classifier.model, learning_rate, jit_compile)
    return _fit(classifier.model, data.train, data.val, epochs, backup_dir, callbacks, verbose)


def pretrain_small_backbone(
    cache_dir, image_size=16, epochs=15, batch_size=32, learning_rate=1e-3, seed=0, log=print,
):
    """Pretrains `SmallConvNet` on the source task once, and caches it.

    The source task is `embedded_digits("source")`: the ten digits on half A of
    scikit-learn's digits; the target task uses the other half, so no image is shared.

    The cache file's name holds every setting, so a different setting trains anew; it is
    written atomically, so a killed run never leaves a half-written backbone.

    Args:
        cache_dir: the folder of the cache.
        image_size: the input side. Defaults to `16`.
        epochs: training epochs. Defaults to `15`.
        batch_size: batch size. Defaults to `32`.
        learning_rate: Adam's learning rate. Defaults to `1e-3`.
        seed: the seed of the split and the initialisation. Defaults to `0`.
        log: where progress messages go. Defaults to `print`.

    Returns:
        The path of the cached backbone (`.keras`), for `build_backbone(weights=...)`.
    """
    from kfound.data import embedded_digits

    path = os.path.join(
        os.fspath(cache_dir),
        f"small_conv_net-digits10-halfA-size{image_size}-epochs{epochs}-seed{seed}.keras",
    )
    if os.path.exists(path):
        log(f"source task: reusing the pretrained backbone {path}")
        return path
    (x, y), (x_val, y_val), names = embedded_digits("source", seed=seed)
    keras.utils.set_random_seed(seed)
    classifier = Classifier(small_conv_net(image_size), SMALL_BACKBONE, len(names),
                            frozen_bn=False)
    _compile(classifier.model, learning_rate, "auto")

    def rgb(images):
        return tf.image.resize(tf.image.grayscale_to_rgb(tf.constant(images * 255.0)),
                               (image_size, image_size))

    start = time.perf_counter()
    classifier.model.fit(rgb(x), y, batch_size=batch_size, epochs=epochs, verbose=0)
    _, accuracy = classifier.model.evaluate(rgb(x_val), y_val, verbose=0)
    log(f"source task: pretrained {SMALL_BACKBONE} on the 10 digits of half A ({len(x)} "
        f"images, {epochs} epochs, {time.perf_counter() - start:.1f}s): "
        f"val accuracy {accuracy:.3f}; cached at {path}")
    io_utils.save_model(classifier.backbone, path)
    return path


def save_classifier(model, class_names, folder):
    """Saves `model.keras` and its class names (`classes.json`) into `folder`, atomically."""
    io_utils.save_model(model, os.path.join(folder, "model.keras"))
    io_utils.write_json(os.path.join(folder, CLASSES_FILE), list(class_names))


def load_classifier(path):
    """Loads a `model.keras` saved by `save_classifier` and the class names beside it.

    Args:
        path: the `model.keras` file, or the folder holding it.

    Returns:
        `(model, class_names)`.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    classes = os.path.join(os.path.dirname(path), CLASSES_FILE)
    if not (os.path.isfile(path) and os.path.isfile(classes)):
        raise ValueError(
            "Argument `model` must be a model.keras saved by this recipe, with its "
            f"{CLASSES_FILE} beside it. Received: model={path!r}"
        )
    with open(classes, encoding="utf-8") as f:
        class_names = json.load(f)
    return keras.saving.load_model(path), class_names


def imagenet_classifier(name, weights="imagenet", image_size=None, alpha=None):
    """A with-top `keras.applications` classifier that takes raw `[0, 255]` images.

    Args:
        name: a `keras.applications` constructor name.
        weights: `"imagenet"` or the path of a with-top weights file.
        image_size: the input side. Defaults to 224.
        alpha: the MobileNet family's width multiplier.

    Returns:
        `(model, decode)`: the model and its module's `decode_predictions`.
    """
    constructor, module = _application(name)
    image_size = image_size or default_image_size(name)
    kwargs = {"alpha": alpha} if alpha is not None else {}
    try:
        network = constructor(include_top=True, weights=weights,
                              input_shape=(image_size, image_size, 3), **kwargs)
    except Exception as error:
        raise ValueError(
            f"Argument `weights` must be 'imagenet' or a with-top weights file of {name} to "
            f"label images with ImageNet classes ({str(error).splitlines()[0][:300]}). "
            f"Received: weights={weights!r}"
        ) from error
    images = keras.Input((image_size, image_size, 3), name="images")
    model = keras.Model(images, network(BackbonePreprocessing(name)(images)))
    return model, module.decode_predictions


def predict(model, dataset, class_names=None, decode=None, verbose=0):
    """State 1: labels images, no training.

    Args:
        model: a classifier from raw `[0, 255]` images to class probabilities.
        dataset: a batched `tf.data.Dataset` of images (or of `(images, labels)`).
        class_names: the names of the model's classes (a saved model's `classes.json`).
        decode: instead of `class_names`, an ImageNet `decode_predictions`.
        verbose: `predict`'s verbosity. Defaults to `0`.

    Returns:
        `(labels, probabilities, predicted_indices)`: a list of class names, the
        probability of each, and the indices (NumPy arrays).
    """
    return _labels(model.predict(dataset, verbose=verbose), class_names, decode)


def _labels(probabilities, class_names, decode):
    index = probabilities.argmax(axis=-1)
    best = probabilities.max(axis=-1)
    if decode is not None:
        labels = [top[0][1] for top in decode(probabilities, top=1)]
    else:
        labels = [class_names[i] for i in index]
    return labels, best, index


def predict_files(model, path, class_names=None, decode=None, batch_size=32, verbose=0):
    """Labels the image files under `path` (corrupt files are skipped and counted).

    The files are read and decoded once, in a `tf.data` pipeline that overlaps with the
    model (`named_image_files_dataset`, batched and prefetched): each batch carries its
    file names, so the files that fail to decode drop out without a separate checking
    pass, and each prediction stays with its file.

    Args:
        model: a classifier from raw `[0, 255]` images to class probabilities.
        path: an image file or a folder of them (searched recursively).
        class_names: the names of the model's classes (a saved model's `classes.json`).
        decode: instead of `class_names`, an ImageNet `decode_predictions`.
        batch_size: images per batch. Defaults to `32`.
        verbose: show a progress bar when truthy. Defaults to `0`.

    Returns:
        `(rows, skipped)`: `(file, label, probability)` tuples, in sorted file order, and
        the number of skipped files (wrong extension or not decodable).
    """
    path = os.fspath(path)
    files, skipped = image_candidates(path)
    names, probabilities = [], []
    if files:
        dataset = named_image_files_dataset(files, model.input_shape[1])
        dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
        progress = keras.utils.Progbar(len(files), unit_name="file") if verbose else None
        for batch_names, images in dataset:
            probabilities.append(model.predict_on_batch(images))
            names.extend(name.decode() for name in batch_names.numpy())
            if progress is not None:
                progress.update(len(names))
        if progress is not None:
            progress.update(len(files), finalize=True)
    skipped += len(files) - len(names)
    if not names:
        raise ValueError(
            "Argument `images` must hold at least one readable image "
            f"({skipped} files skipped). Received: images={path!r}"
        )
    labels, best, _ = _labels(np.concatenate(probabilities), class_names, decode)
    return list(zip(names, labels, best.tolist(), strict=True)), skipped


def write_predictions_csv(path, rows):
    """Writes `(file, label, probability)` rows as a CSV with a header, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "label", "probability"])
    writer.writerows((f, label, f"{p:.6f}") for f, label, p in rows)
    io_utils.write_text(path, buffer.getvalue())


def write_history_csv(path, history):
    """Writes a history dict of per-epoch lists as a CSV, atomically."""
    keys = list(history)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(keys)
    writer.writerows(zip(*(history[k] for k in keys), strict=True))
    io_utils.write_text(path, buffer.getvalue())


def plot_curves(path, histories, title=""):
    """Plots training and validation loss and accuracy of one or more histories.

    Args:
        path: the image file (written atomically).
        histories: a dict from run name to history dict.
        title: the figure title.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    for name, history in histories.items():
        epochs = history["epoch"]
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            line = ax.plot(epochs, history[metric], "--", label=f"{name} train")[0]
            ax.plot(epochs, history[f"val_{metric}"], "-", color=line.get_color(),
                    label=f"{name} val")
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(title)
    io_utils.save_figure(figure, path, dpi=100)


def distribution_strategy():
    """`MirroredStrategy` over the GPUs when more than one is visible, else the default."""
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def trainable_params(model):
    """The number of trainable scalars of `model`."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))

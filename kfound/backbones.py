"""Backbones: `keras.applications` by name, `SmallConvNet`, weights files, and pretraining.

A backbone is a `keras.Model` without its classification top, from square RGB images to
feature maps. `build_backbone` takes any `keras.applications` constructor name (each is
paired with its own `preprocess_input` by `kfound.layers.BackbonePreprocessing`) or
`SmallConvNet`, a four-convolution network small enough to pretrain on a CPU in seconds
(`pretrain_small_backbone`, used by the offline demo).
"""

import contextlib
import inspect
import io
import os
import time
import warnings

import keras

from kfound import io_utils, prebuild
from kfound.data.bundled import digits_to_rgb, embedded_digits
from kfound.layers.backbone_preprocessing import SMALL_BACKBONE, application, application_names

SMALL_BACKBONE_MIN_SIZE = 8


def backbone_names():
    """Every valid `backbone` name: `SmallConvNet` and the `keras.applications` constructors."""
    return [SMALL_BACKBONE, *application_names()]


def default_image_size(backbone):
    """The default image side: 16 for `SmallConvNet` (upsampled 8x8 digits), else 224."""
    return 16 if backbone == SMALL_BACKBONE else 224


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
    constructor, _ = application(name)
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
    # Keras prints load messages, and warns that it skips each unmatched container, for each
    # failed attempt; the attempt that matches, or the final error, says it all.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Skipping nested container",
                                category=UserWarning)
        yield


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
    path = os.path.join(
        os.fspath(cache_dir),
        f"small_conv_net-digits10-halfA-size{image_size}-epochs{epochs}-seed{seed}.keras",
    )
    if os.path.exists(path):
        log(f"source task: reusing the pretrained backbone {path}")
        return path
    from kfound.finetune import Classifier, compile_classifier  # it builds on backbones

    (x, y), (x_val, y_val), names = embedded_digits("source", seed=seed)
    keras.utils.set_random_seed(seed)
    classifier = Classifier(small_conv_net(image_size), SMALL_BACKBONE, len(names),
                            frozen_bn=False)
    compile_classifier(classifier.model, learning_rate=learning_rate)
    prebuild.build_optimizer(classifier.model)
    start = time.perf_counter()
    classifier.model.fit(digits_to_rgb(x, image_size), y, batch_size=batch_size,
                         epochs=epochs, verbose=0)
    _, accuracy = classifier.model.evaluate(digits_to_rgb(x_val, image_size), y_val, verbose=0)
    log(f"source task: pretrained {SMALL_BACKBONE} on the 10 digits of half A ({len(x)} "
        f"images, {epochs} epochs, {time.perf_counter() - start:.1f}s): "
        f"val accuracy {accuracy:.3f}; cached at {path}")
    io_utils.save_model(classifier.backbone, path)
    return path

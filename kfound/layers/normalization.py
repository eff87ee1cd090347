"""One normalization block for every kfound model: the layers, their order, the groups."""

import keras

from kfound import checks
from kfound.layers.group_norm import GroupNorm, group_count
from kfound.layers.lrn import LRN
from kfound.layers.weight_norm import WeightNorm

NORMALIZATIONS = ("none", "batch", "group", "lrn", "weight")


def _units(layer):
    """The output channels of a Dense or convolution layer."""
    for attribute in ("filters", "units"):
        if isinstance(getattr(layer, attribute, None), int):
            return getattr(layer, attribute)
    raise ValueError(
        "Argument `layer` must be a Dense or convolution layer (with `units` or `filters`). "
        f"Received: layer={layer!r}"
    )


def normalization_block(kind, layer, activation="relu", *, groups=32):
    """The layers of one linear layer, its normalization and its activation, in order.

    Apply the returned layers one after the other. The order and the bias follow the
    papers that introduced each normalization:

    - `"none"`: `[layer, Activation]`.
    - `"batch"`: `[layer without bias, BatchNormalization, Activation]`. Ioffe & Szegedy
      (2015, §3.2) normalize `Wu + b` just before the nonlinearity and drop `b`, whose
      effect the mean subtraction cancels (`beta` takes its place).
    - `"group"`: `[layer without bias, GroupNorm, Activation]`, with
      `group_count(channels, groups)` groups. Wu & He (2018) put GroupNorm where
      BatchNorm was, after bias-free convolutions; `beta` takes the bias's place.
    - `"lrn"`: `[layer, Activation, LRN]` with AlexNet's constants. Krizhevsky et al.
      (2012, §3.3) apply LRN "after applying the ReLU nonlinearity".
    - `"weight"`: `[WeightNorm(layer), Activation]`, with the data-dependent
      initialization of Salimans & Kingma (2016, §3.2), which sets the bias.

    Args:
        kind: one of `"none"`, `"batch"`, `"group"`, `"lrn"`, `"weight"`.
        layer: an unbuilt `Dense` or convolution layer. For `"batch"` and `"group"` a
            copy of it without bias is used when it has one.
        activation: the activation, anything `keras.layers.Activation` takes.
            Defaults to `"relu"`.
        groups: positive int, the groups asked of `"group"`, reduced by `group_count`.
            Defaults to `32` (Wu & He).

    Returns:
        A list of layers.

    Example:

    >>> x = keras.Input((8, 8, 1))
    >>> for block_layer in normalization_block("group", keras.layers.Conv2D(48, 3)):
    ...     x = block_layer(x)
    >>> [type(l).__name__ for l in normalization_block("lrn", keras.layers.Dense(4))]
    ['Dense', 'Activation', 'LRN']
    """
    kind = checks.one_of("kind", kind, NORMALIZATIONS)
    if not isinstance(layer, keras.layers.Layer):
        raise TypeError(
            f"Argument `layer` must be a `keras.layers.Layer` instance. Received: layer={layer!r}"
        )
    groups = checks.positive_int("groups", groups)
    activation = keras.layers.Activation(activation)
    if kind in ("batch", "group"):
        channels = _units(layer)
        if getattr(layer, "use_bias", False):
            layer = layer.__class__.from_config({**layer.get_config(), "use_bias": False})
        if kind == "batch":
            return [layer, keras.layers.BatchNormalization(), activation]
        return [layer, GroupNorm(groups=group_count(channels, groups)), activation]
    if kind == "lrn":
        return [layer, activation, LRN()]
    if kind == "weight":
        return [WeightNorm(layer), activation]
    return [layer, activation]

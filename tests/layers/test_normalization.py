"""Tests of kfound.layers.normalization_block and group_count."""

import keras
import numpy as np
import pytest

from kfound.layers import (
    LRN,
    NORMALIZATIONS,
    GroupNorm,
    WeightNorm,
    group_count,
    normalization_block,
    replace_batchnorm,
)


@pytest.mark.parametrize(
    "channels, groups, expected",
    [(64, 32, 32), (48, 32, 24), (5, 32, 5), (12, 32, 12), (7, 4, 1), (96, 32, 32), (1, 1, 1)],
)
def test_group_count_is_the_largest_divisor_not_above_groups(channels, groups, expected):
    assert group_count(channels, groups) == expected
    assert channels % expected == 0


@pytest.mark.parametrize("channels, groups", [(0, 32), (8, 0), (8.0, 2), (8, True)])
def test_group_count_errors(channels, groups):
    with pytest.raises(ValueError, match=r"must be a positive integer\. Received: "):
        group_count(channels, groups)


def _kinds(block):
    return [type(layer).__name__ for layer in block]


@pytest.mark.parametrize(
    "kind, expected, bias",
    [
        ("none", ["Conv2D", "Activation"], True),
        ("batch", ["Conv2D", "BatchNormalization", "Activation"], False),
        ("group", ["Conv2D", "GroupNorm", "Activation"], False),
        ("lrn", ["Conv2D", "Activation", "LRN"], True),  # AlexNet: LRN after the ReLU.
        ("weight", ["WeightNorm", "Activation"], True),
    ],
)
def test_block_order_and_bias_follow_the_papers(kind, expected, bias):
    block = normalization_block(kind, keras.layers.Conv2D(48, 3, padding="same"), "relu")
    assert _kinds(block) == expected
    conv = block[0].layer if isinstance(block[0], WeightNorm) else block[0]
    assert conv.use_bias is bias and conv.filters == 48
    x = keras.Input((6, 6, 3))
    for layer in block:
        x = layer(x)
    assert tuple(x.shape) == (None, 6, 6, 48)
    if kind == "group":
        assert block[1].groups == 24  # group_count(48, 32), as replace_batchnorm does.
    if kind == "lrn":
        y = keras.ops.convert_to_numpy(keras.Model(block[0].input, x)(-np.ones((1, 6, 6, 3))))
        assert np.all(y >= 0)  # LRN of ReLU outputs.


def test_block_keeps_the_layer_arguments_and_covers_every_kind():
    assert set(NORMALIZATIONS) == {"none", "batch", "group", "lrn", "weight"}
    dense = keras.layers.Dense(12, kernel_initializer="he_normal", name="hidden")
    block = normalization_block("batch", dense, "tanh", groups=4)
    assert block[0].name == "hidden" and block[0].units == 12 and not block[0].use_bias
    assert isinstance(block[0].kernel_initializer, keras.initializers.HeNormal)
    assert block[-1].activation is keras.activations.tanh
    assert normalization_block("group", keras.layers.Dense(12), groups=4)[1].groups == 4
    assert isinstance(normalization_block("lrn", dense)[-1], LRN)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"kind": "layer"}, ValueError, r"`kind` must be one of \('none', 'batch', 'group', "
         r"'lrn', 'weight'\)\. Received: kind='layer'$"),
        ({"layer": "dense"}, TypeError, r"`layer` must be a `keras.layers.Layer`.*"
         r"Received: layer='dense'$"),
        ({"groups": 0}, ValueError, r"`groups` must be a positive integer\. Received: groups=0$"),
        ({"layer": keras.layers.Flatten()}, ValueError,
         r"`layer` must be a Dense or convolution layer .* Received: layer=<Flatten"),
    ],
)
def test_block_errors(kwargs, error, match):
    arguments = {"kind": "group", "layer": keras.layers.Dense(4), **kwargs}
    with pytest.raises(error, match=match):
        normalization_block(**arguments)


def test_replace_batchnorm_uses_the_same_group_count():
    model = keras.Sequential([
        keras.Input((4, 4, 3)), keras.layers.Conv2D(48, 1), keras.layers.BatchNormalization()
    ])
    norm = replace_batchnorm(model, groups=32).layers[-1]
    assert isinstance(norm, GroupNorm) and norm.groups == group_count(48, 32) == 24

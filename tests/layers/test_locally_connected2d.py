import json
import os

import keras
import numpy as np
import pytest
from layer_test_utils import run_layer_test

from kfound.layers import LocallyConnected2D


def _reference(layer, x):
    """An explicit per-position loop: Keras 2's `local_conv` (implementation=1)."""
    channels_first = layer.data_format == "channels_first"
    if channels_first:
        x = x.transpose(0, 2, 3, 1)  # Pad and slice in NHWC, flatten windows as CHW.
    (kernel_rows, kernel_cols), (stride_rows, stride_cols) = layer.kernel_size, layer.strides
    rows, cols = x.shape[1], x.shape[2]
    out_rows, out_cols = layer.output_rows, layer.output_cols
    if layer.padding == "same":
        pad_rows = max((out_rows - 1) * stride_rows + kernel_rows - rows, 0)
        pad_cols = max((out_cols - 1) * stride_cols + kernel_cols - cols, 0)
        x = np.pad(
            x,
            [
                (0, 0),
                (pad_rows // 2, pad_rows - pad_rows // 2),
                (pad_cols // 2, pad_cols - pad_cols // 2),
                (0, 0),
            ],
        )
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
    out = np.zeros((x.shape[0], out_rows, out_cols, layer.filters))
    for r in range(out_rows):
        for c in range(out_cols):
            window = x[
                :,
                r * stride_rows : r * stride_rows + kernel_rows,
                c * stride_cols : c * stride_cols + kernel_cols,
                :,
            ]
            if channels_first:
                window = window.transpose(0, 3, 1, 2)
            out[:, r, c, :] = window.reshape(x.shape[0], -1) @ kernel[r * out_cols + c]
    if channels_first:
        out = out.transpose(0, 3, 1, 2)
    if layer.use_bias:
        bias = keras.ops.convert_to_numpy(layer.bias)
        if channels_first:
            bias = bias.reshape(layer.filters, out_rows, out_cols)  # Keras 2's reshape.
        out = out + bias
    if layer.activation is keras.activations.relu:
        out = np.maximum(out, 0)
    return out.astype("float32")


def _build_with_random_weights(layer, input_shape, seed=0):
    layer.build(input_shape)
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.standard_normal(weight.shape).astype("float32"))
    return layer


@pytest.mark.parametrize(
    "kernel_size, strides, padding, data_format",
    [
        ((2, 3), (2, 1), "valid", "channels_first"),
        (1, 2, "valid", "channels_last"),
        (4, 3, "valid", "channels_last"),
        (3, 1, "same", "channels_first"),
        ((2, 3), (2, 1), "same", "channels_last"),
        ((1, 5), (3, 2), "same", "channels_first"),
    ],
)
def test_matches_per_position_reference(kernel_size, strides, padding, data_format):
    shape = (2, 7, 8, 3) if data_format == "channels_last" else (2, 3, 7, 8)
    layer = LocallyConnected2D(
        4, kernel_size, strides=strides, padding=padding, data_format=data_format
    )
    _build_with_random_weights(layer, shape)
    x = np.random.default_rng(1).standard_normal(shape).astype("float32")
    output = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(output, _reference(layer, x), rtol=1e-5, atol=1e-4)
    assert output.shape == layer.compute_output_shape(shape)
    # Keras 2's weight layout.
    rows, cols = layer.output_rows, layer.output_cols
    window = np.prod(layer.kernel_size) * 3
    assert tuple(layer.kernel.shape) == (rows * cols, window, 4)
    assert tuple(layer.bias.shape) == (rows, cols, 4)


@pytest.mark.parametrize(
    "padding, strides, data_format",
    [("valid", 1, "channels_first"), ("same", 2, "channels_last")],
)
def test_tied_weights_equal_conv2d(padding, strides, data_format):
    shape = (2, 6, 7, 3) if data_format == "channels_last" else (2, 3, 6, 7)
    x = np.random.default_rng(2).standard_normal(shape).astype("float32")
    # The reference convolves channels-last (TensorFlow's CPU Conv2D takes channels-first
    # inputs only with oneDNN on, which it is by default only on some x86 CPUs).
    conv = keras.layers.Conv2D(5, (3, 2), strides=strides, padding=padding)
    if data_format == "channels_first":
        expected = keras.ops.convert_to_numpy(conv(x.transpose(0, 2, 3, 1)))
        expected = expected.transpose(0, 3, 1, 2)
    else:
        expected = keras.ops.convert_to_numpy(conv(x))
    layer = LocallyConnected2D(
        5, (3, 2), strides=strides, padding=padding, data_format=data_format
    )
    layer.build(shape)
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    if data_format == "channels_first":
        kernel = kernel.transpose(2, 0, 1, 3)
    kernel = kernel.reshape(-1, 5)
    layer.kernel.assign(np.broadcast_to(kernel, tuple(layer.kernel.shape)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-5)


def test_weights_are_unshared():
    layer = LocallyConnected2D(1, 2, use_bias=False, kernel_initializer="zeros")
    layer.build((1, 3, 3, 1))
    kernel = np.zeros((4, 4, 1), "float32")
    kernel[3] = 1.0  # Only the bottom-right position sums its window.
    layer.kernel.assign(kernel)
    out = keras.ops.convert_to_numpy(layer(np.ones((1, 3, 3, 1), "float32")))
    np.testing.assert_array_equal(out[0, :, :, 0], [[0, 0], [0, 4]])


@pytest.mark.parametrize(
    "init_kwargs, input_shape, expected_shape",
    [
        ({"filters": 4, "kernel_size": 3}, (2, 6, 5, 3), (2, 4, 3, 4)),
        (
            {
                "filters": 3,
                "kernel_size": (2, 3),
                "strides": 2,
                "padding": "same",
                "data_format": "channels_first",
                "activation": "relu",
                "kernel_regularizer": "l2",
                "bias_initializer": "random_normal",
            },
            (2, 2, 5, 6),
            (2, 3, 3, 3),
        ),
    ],
)
def test_run_layer_test(init_kwargs, input_shape, expected_shape, tmp_path):
    run_layer_test(
        LocallyConnected2D,
        init_kwargs,
        input_shape,
        expected_output_shape=expected_shape,
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
        reference_fn=_reference,
        rtol=1e-5,
        atol=1e-4,
        tmp_path=tmp_path,
    )


def test_run_layer_test_without_bias(tmp_path):
    layer = run_layer_test(
        LocallyConnected2D,
        {"filters": 2, "kernel_size": 2, "use_bias": False, "activity_regularizer": "l1"},
        (3, 4, 4, 2),
        expected_output_shape=(3, 3, 3, 2),
        expected_num_trainable_weights=1,
        reference_fn=_reference,
        atol=1e-4,
        run_mixed_precision_check=False,
        run_export_check=False,
        tmp_path=tmp_path,
    )
    assert tuple(layer.kernel.shape) == (9, 8, 2)
    assert layer.bias is None


def test_rejects_other_input_sizes_after_build():
    layer = LocallyConnected2D(2, 3)
    layer(np.zeros((1, 5, 5, 1), "float32"))
    with pytest.raises(ValueError, match="incompatible"):
        layer(np.zeros((1, 6, 5, 1), "float32"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": 0}, r"`filters` must be a positive integer\. Received: filters=0$"),
        ({"filters": 2.0}, r"Received: filters=2\.0$"),
        ({"kernel_size": 0}, r"`kernel_size` must be .* Received: kernel_size=0$"),
        ({"kernel_size": (3, 3, 3)}, r"Received: kernel_size=\(3, 3, 3\)$"),
        ({"kernel_size": "3"}, r"Received: kernel_size='3'$"),
        ({"strides": (1, 0)}, r"`strides` must be .* Received: strides=\(1, 0\)$"),
        ({"strides": None}, r"Received: strides=None$"),
        ({"padding": "causal"}, r"`padding` must be one of .* Received: padding='causal'$"),
        ({"padding": 1}, r"Received: padding=1$"),
        ({"data_format": "NHWC"}, r"`data_format` must be .* Received: data_format='NHWC'$"),
        ({"implementation": 4}, r"`implementation` must be one of \(1, 2, 3\)\. "
         r"Received: implementation=4$"),
        ({"max_kernel_bytes": 0}, r"`max_kernel_bytes` must be a positive integer\. "
         r"Received: max_kernel_bytes=0$"),
    ],
)
def test_constructor_errors(kwargs, match):
    arguments = {"filters": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        LocallyConnected2D(**arguments)


@pytest.mark.parametrize(
    "kwargs, input_shape, match",
    [
        (
            {},
            (None, 2, 5, 3),
            r"too small for kernel_size=\(3, 3\) .* output would be 0x3\. "
            r"Received: input_shape=\(None, 2, 5, 3\)$",
        ),
        (
            {"strides": 4, "data_format": "channels_first"},
            (None, 3, 2, 2),
            r"too small .* Received: input_shape=\(None, 3, 2, 2\)$",
        ),
        (
            {},
            (None, 5, 5, None),
            r"channel dimension .* Received: input_shape=\(None, 5, 5, None\)$",
        ),
        (
            {"data_format": "channels_first"},
            (None, None, 5, 5),
            r"channel dimension .* Received: input_shape=\(None, None, 5, 5\)$",
        ),
        (
            {},
            (None, None, 5, 3),
            r"height and width .* Received: input_shape=\(None, None, 5, 3\)$",
        ),
    ],
)
def test_build_errors(kwargs, input_shape, match):
    layer = LocallyConnected2D(2, 3, **kwargs)
    with pytest.raises(ValueError, match=match):
        layer.build(input_shape)


def test_rank_is_checked():
    with pytest.raises(ValueError, match="expected ndim=4"):
        LocallyConnected2D(2, 3)(np.zeros((1, 5, 5), "float32"))


KERAS2 = os.path.join(os.path.dirname(__file__), "data", "keras2_locally_connected2d")


def _keras2_cases():
    """Configs as Keras 2 writes them, with its weights, inputs and outputs.

    Recorded with the real Keras 2 layer (tf-keras 2.21) by
    data/make_keras2_locally_connected2d.py.
    """
    with open(KERAS2 + ".json") as file:
        records = json.load(file)
    arrays = np.load(KERAS2 + ".npz")
    for n, record in enumerate(records):
        weights = [arrays[f"w{n}_{k}"] for k in range(2)]
        yield record["config"], record["input_shape"], weights, arrays[f"x{n}"], arrays[f"y{n}"]


KERAS2_CASES = list(_keras2_cases())


@pytest.mark.parametrize(
    "config, input_shape, weights, x, expected",
    KERAS2_CASES,
    ids=[
        f"implementation={c['implementation']}-{c['padding']}-{c['data_format']}"
        f"-kernel={c['kernel_size']}"
        for c, *_ in KERAS2_CASES
    ],
)
def test_keras2_configs_and_weights_reproduce_keras2(config, input_shape, weights, x, expected):
    layer = LocallyConnected2D.from_config(config)
    layer.build(input_shape)
    odd_same = config["padding"] == "same" and config["kernel_size"] == [2, 2]
    if odd_same:
        # Keras 2 put this window one row and column before the centre; Conv2D (and this
        # layer) after it: no weight layout of this layer computes Keras 2's function.
        with pytest.raises(ValueError, match=r"Keras 2 centred its padding='same' windows.*"
                           r"Received: kernel_size=\(2, 2\)"):
            layer.set_weights(weights)
        return
    layer.set_weights(weights)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-5)
    assert layer.get_config()["implementation"] == config["implementation"]
    # Its own layout is accepted too, and the config round-trips.
    again = LocallyConnected2D.from_config(layer.get_config())
    again.build(input_shape)
    again.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), expected, atol=1e-5)


def test_keras2_model_config_loads():
    config, input_shape, weights, x, expected = KERAS2_CASES[0]
    model = keras.Sequential.from_config({
        "name": "sequential",
        "layers": [
            {"class_name": "InputLayer", "config": {"batch_input_shape": [None, *input_shape[1:]],
                                                    "dtype": "float32", "name": "input_1"}},
            {"class_name": "kfound>LocallyConnected2D", "config": config},
        ],
    })
    model.layers[0].set_weights(weights)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected, atol=1e-5)


def test_keras2_kernel_of_the_wrong_shape_is_refused():
    config, input_shape, weights, _, _ = KERAS2_CASES[1]
    layer = LocallyConnected2D.from_config(config)
    layer.build(input_shape)
    with pytest.raises(ValueError, match=r"implementation=2 layout, \(6, 7, 2, 4, 3, 3\)\. "
                       r"Received: weights\[0\]\.shape=\(3, 3\)$"):
        layer.set_weights([np.zeros((3, 3)), weights[1]])


def test_a_kernel_above_the_limit_is_refused_before_allocating():
    layer = LocallyConnected2D(64, 3)
    with pytest.raises(ValueError, match=r"kernel of 8\.86 GiB for input_shape=\(None, 256, 256, "
                       r"64\).*raise `max_kernel_bytes` to 9513271296 or more\. "
                       r"Received: max_kernel_bytes=1073741824$"):
        layer.build((None, 256, 256, 64))
    assert not layer.weights
    small = LocallyConnected2D(2, 3, max_kernel_bytes=4 * 9 * 2 * 9 * 2)
    small.build((None, 5, 5, 2))
    assert tuple(small.kernel.shape) == (9, 18, 2)
    with pytest.raises(ValueError, match="max_kernel_bytes"):
        LocallyConnected2D(2, 3, max_kernel_bytes=4 * 9 * 2 * 9 * 2 - 1).build((None, 5, 5, 2))

"""Tests for kfound.layers.LRN."""

import keras
import numpy as np
import pytest
from layer_test_utils import run_layer_test

from kfound.layers import LRN
from kfound.layers import lrn as lrn_module

BACKEND = keras.backend.backend()


def lrn_reference(x, depth_radius, bias, alpha, beta, axis):
    """The AlexNet formula, channel by channel, with the window clipped at the edges."""
    x = np.moveaxis(np.asarray(x, "float64"), axis, -1)
    depth = x.shape[-1]
    out = np.empty_like(x)
    for i in range(depth):
        window = x[..., max(0, i - depth_radius) : min(depth, i + depth_radius + 1)]
        out[..., i] = x[..., i] / (bias + alpha * np.sum(window**2, axis=-1)) ** beta
    return np.moveaxis(out, -1, axis)


def torch_lrn_reference(x, size, alpha, beta, k):
    """`torch.nn.functional.local_response_norm` for channels-first `x`, in NumPy.

    torch pads the squares with `size // 2` channels before and `(size - 1) // 2` after,
    averages them over `size` channels (padding included) and divides by
    `(k + alpha * average) ** beta`.
    """
    x = np.asarray(x, "float64")
    padding = [(0, 0)] * x.ndim
    padding[1] = (size // 2, (size - 1) // 2)
    squares = np.pad(x**2, padding)
    average = sum(squares[:, i : i + x.shape[1]] for i in range(size)) / size
    return x / (k + alpha * average) ** beta


def layer_reference(layer, x):
    return lrn_reference(x, layer.depth_radius, layer.bias, layer.alpha, layer.beta, layer.axis)


def gradient(fn, x, weights):
    """d sum(fn(x) * weights) / dx on the active backend."""
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: (fn(v) * weights).sum())(x))
    if BACKEND == "torch":
        import torch

        v = torch.tensor(x, requires_grad=True)
        (fn(v) * torch.tensor(weights)).sum().backward()
        return v.grad.numpy()
    return tf_gradient(fn, x, weights)


def tf_gradient(fn, x, weights):
    """d sum(fn(x) * weights) / dx, computed by TensorFlow on TensorFlow tensors."""
    import tensorflow as tf

    v = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(v)
        loss = tf.reduce_sum(fn(v) * weights)
    return tape.gradient(loss, v).numpy()


@pytest.mark.parametrize(
    "init_kwargs, input_shape",
    [
        ({}, (2, 3, 3, 8)),
        ({"depth_radius": 1, "bias": 1.0, "alpha": 0.5, "beta": 0.5, "axis": 1}, (2, 6, 3, 3)),
        ({"depth_radius": 3, "bias": 0.5, "alpha": 0.2, "beta": 1.0}, (3, 10)),
        ({"depth_radius": 0, "alpha": 1.0, "beta": 0.3, "axis": -2}, (2, 4, 5, 2)),
    ],
)
def test_layer(init_kwargs, input_shape, tmp_path):
    run_layer_test(
        LRN,
        init_kwargs,
        input_shape,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        reference_fn=layer_reference,
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize(
    "depth_radius, bias, alpha, beta",
    [(2, 2.0, 1e-4, 0.75), (5, 1.0, 1.0, 0.5), (1, 0.5, 0.3, 1.0), (0, 3.0, 2.0, 0.6)],
)
def test_matches_tf_nn_local_response_normalization(depth_radius, bias, alpha, beta):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 5, 4, 12)) * 3).astype("float32")
    weights = rng.standard_normal(x.shape).astype("float32")
    layer = LRN(depth_radius, bias, alpha, beta)

    def native(v):
        return tf.nn.local_response_normalization(v, depth_radius, bias, alpha, beta)

    expected = native(x).numpy()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-5)
    np.testing.assert_allclose(
        gradient(layer, x, weights), tf_gradient(native, x, weights), rtol=1e-4, atol=1e-5
    )


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7)).astype("float64")
    weights = rng.standard_normal(x.shape)
    args = dict(depth_radius=2, bias=1.0, alpha=0.4, beta=0.75, axis=1)

    def loss(v):
        return np.sum(lrn_reference(v, **args) * weights)

    step = 1e-6
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        shift = np.zeros_like(x)
        shift[index] = step
        numeric[index] = (loss(x + shift) - loss(x - shift)) / (2 * step)
    analytic = gradient(LRN(**args), x.astype("float32"), weights.astype("float32"))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.5, 1.0)])
def test_converts_torch_local_response_norm(size, alpha, beta, k):
    x = (np.random.default_rng(2).standard_normal((2, 9, 4, 4)) * 4).astype("float32")
    layer = LRN(depth_radius=(size - 1) // 2, bias=k, alpha=alpha / size, beta=beta, axis=1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)),
        torch_lrn_reference(x, size, alpha, beta, k),
        rtol=1e-5,
        atol=1e-6,
    )


def test_alexnet_window_has_five_channels():
    # The chapter says the sum covers "n+1 points"; for n=5 (r=2) it covers 2r+1 = 5.
    x = np.ones((1, 11), "float32")
    x[0, 5] = 10.0
    out = keras.ops.convert_to_numpy(LRN(depth_radius=2, bias=1.0, alpha=1.0, beta=1.0)(x))
    window_sizes = np.array([3, 4, 5, 5, 5, 5, 5, 5, 5, 4, 3])
    sees_the_ten = (np.abs(np.arange(11) - 5) <= 2).astype(int)
    np.testing.assert_allclose((x / out)[0], 1 + window_sizes + 99 * sees_the_ten, rtol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the native op is TensorFlow's")
@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_native_path_matches_portable_path(policy, monkeypatch):
    import tensorflow as tf

    x = (np.random.default_rng(3).standard_normal((2, 4, 4, 16)) * 3).astype("float32")
    portable = LRN(depth_radius=3, alpha=0.1, dtype=policy)
    expected = keras.ops.convert_to_numpy(keras.ops.cast(portable(x), "float32"))
    monkeypatch.setattr(LRN, "_uses_native_op", lambda self, rank: True)
    native = LRN(depth_radius=3, alpha=0.1, dtype=policy)
    for jit_compile in (False, True):
        outputs = tf.function(native, jit_compile=jit_compile)(x)
        assert outputs.dtype == native.compute_dtype
        np.testing.assert_allclose(tf.cast(outputs, "float32").numpy(), expected, atol=1e-5)


def test_native_op_only_with_a_gpu():
    layer = LRN()
    layer.build((2, 3, 3, 8))
    assert not layer._uses_native_op(3)
    if BACKEND != "tensorflow":
        assert not layer._uses_native_op(4)
    else:
        import tensorflow as tf

        has_gpu = bool(tf.config.list_logical_devices("GPU"))
        assert layer._uses_native_op(4) == has_gpu
        assert not LRN(axis=1)._uses_native_op(4)


def test_portable_path_on_a_middle_axis():
    x = np.random.default_rng(4).standard_normal((2, 6, 3)).astype("float32")
    out = lrn_module.lrn_portable(keras.ops.convert_to_tensor(x), 1, 1.0, 0.5, 0.75, 1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out), lrn_reference(x, 1, 1.0, 0.5, 0.75, 1), rtol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"depth_radius": -1}, ValueError, r"`depth_radius`.*Received: depth_radius=-1$"),
        ({"depth_radius": 1.5}, ValueError, r"non-negative integer\. Received: depth_radius=1\.5"),
        ({"depth_radius": True}, ValueError, r"Received: depth_radius=True"),
        ({"bias": 0.0}, ValueError, r"`bias` must be a finite positive.*Received: bias=0\.0"),
        ({"bias": -2}, ValueError, r"Received: bias=-2"),
        ({"bias": "2"}, ValueError, r"Received: bias='2'"),
        ({"alpha": -1e-4}, ValueError, r"`alpha` must be a finite non-negative.*alpha=-0\.0001"),
        ({"alpha": float("inf")}, ValueError, r"Received: alpha=inf"),
        ({"beta": -0.75}, ValueError, r"`beta` must be .*Received: beta=-0\.75"),
        ({"beta": float("nan")}, ValueError, r"Received: beta=nan"),
        ({"axis": "channels"}, ValueError,
         r"`axis` must be an integer\. Received: axis='channels'"),
        ({"axis": 1.0}, ValueError, r"Received: axis=1\.0"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        LRN(**kwargs)


@pytest.mark.parametrize(
    "kwargs, input_shape, match",
    [
        ({}, (8,), r"rank >= 2.*Received: input_shape=\(8,\)"),
        ({"axis": 4}, (2, 3, 3, 8),
         r"in range for inputs of rank 4, in \[-4, 4\)\. Received: axis=4"),
        ({"axis": -5}, (2, 3, 3, 8), r"Received: axis=-5"),
        ({"axis": 0}, (2, 8), r"not the batch axis 0\. Received: axis=0"),
        ({"axis": -2}, (2, 8), r"not the batch axis 0\. Received: axis=-2"),
        ({}, (2, 3, None), r"known size\. Received: input_shape=\(2, 3, None\)"),
    ],
)
def test_build_errors(kwargs, input_shape, match):
    with pytest.raises(ValueError, match=match):
        LRN(**kwargs).build(input_shape)

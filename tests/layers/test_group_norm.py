"""Tests for kfound.layers.GroupNorm and kfound.layers.replace_batchnorm."""

import types

import keras
import numpy as np
import pytest
from layer_test_utils import run_layer_test

from kfound.layers import GroupNorm, replace_batchnorm

BACKEND = keras.backend.backend()


def group_norm_reference(layer, x):
    """Group normalization in NumPy (float64), batch on axis 0."""
    x = np.moveaxis(np.asarray(x, "float64"), layer.axis, -1)
    channels = x.shape[-1]
    grouped = x.reshape(x.shape[:-1] + (layer.groups, channels // layer.groups))
    axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
    mean = grouped.mean(axis=axes, keepdims=True)
    variance = grouped.var(axis=axes, keepdims=True)
    out = ((grouped - mean) / np.sqrt(variance + layer.epsilon)).reshape(x.shape)
    if layer.scale:
        out = out * np.asarray(keras.ops.convert_to_numpy(layer.gamma))
    if layer.center:
        out = out + np.asarray(keras.ops.convert_to_numpy(layer.beta))
    return np.moveaxis(out, -1, layer.axis)


def one_pass_error(layer, x):
    """A float32 rounding bound on Keras's GroupNormalization where it is less exact.

    Keras's torch backend computes `ops.moments` in one pass, `E[x^2] - E[x]^2`, in float32;
    its other backends use the deviations from the mean. For a group of `n` values the
    one-pass variance is off by about `(2 + log2 n) * u * E[x^2]` (unit roundoff `u`, a
    pairwise sum), which the cancellation makes large against the variance when the mean
    is large: the output `gamma * (x - mean) / sqrt(var + eps)` is then off by half that
    relative error of the variance. Zero on the backends whose moments are two-pass.
    """
    if BACKEND != "torch":
        return np.zeros(x.shape)
    x = np.moveaxis(np.asarray(x, "float64"), layer.axis, -1)
    channels = x.shape[-1]
    grouped = x.reshape(x.shape[:-1] + (layer.groups, channels // layer.groups))
    axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
    n = np.prod([grouped.shape[a] for a in axes])
    unit_roundoff = np.finfo("float32").eps / 2
    variance = grouped.var(axis=axes, keepdims=True) + layer.epsilon
    error = (2 + np.log2(n)) * unit_roundoff * np.mean(grouped**2, axis=axes, keepdims=True)
    normalized = np.abs(grouped - grouped.mean(axis=axes, keepdims=True)) / np.sqrt(variance)
    bound = (0.5 * error / variance * normalized).reshape(x.shape)
    if layer.scale:
        bound = bound * np.abs(keras.ops.convert_to_numpy(layer.gamma))
    return np.moveaxis(bound, -1, layer.axis)


def random_weights(layer, seed):
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.standard_normal(weight.shape).astype("float32") + 1.0)


def value_and_gradients(layer, x, weights):
    """The output and d sum(layer(x) * weights) / d(x, *layer.trainable_weights)."""
    if BACKEND == "jax":
        import jax

        def loss(variables, v):
            out, _ = layer.stateless_call(variables, [], v)
            return (out * weights).sum(), out

        variables = [w.value for w in layer.trainable_weights]
        (_, out), (dw, dx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
            variables, x
        )
        return np.asarray(out), [np.asarray(dx)] + [np.asarray(g) for g in dw]
    if BACKEND == "torch":
        import torch

        v = torch.tensor(x, requires_grad=True)
        out = layer(v)
        (out * torch.tensor(weights)).sum().backward()
        grads = [v.grad] + [w.value.grad for w in layer.trainable_weights]
        return out.detach().numpy(), [g.numpy() for g in grads]
    import tensorflow as tf

    v = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(v)
        out = layer(v)
        loss = tf.reduce_sum(out * weights)
    grads = tape.gradient(loss, [v] + layer.trainable_weights)
    return out.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize(
    "init_kwargs, input_shape",
    [
        ({"groups": 4}, (2, 3, 3, 8)),
        ({"groups": -1, "axis": 1, "epsilon": 1e-5}, (2, 6, 3, 3)),
        ({"groups": 1, "center": False}, (3, 5, 4)),
        ({"groups": 2, "scale": False}, (4, 6)),
    ],
)
def test_layer(init_kwargs, input_shape, tmp_path):
    num_weights = init_kwargs.get("center", True) + init_kwargs.get("scale", True)
    run_layer_test(
        GroupNorm,
        init_kwargs,
        input_shape,
        expected_num_trainable_weights=num_weights,
        expected_num_non_trainable_weights=0,
        reference_fn=group_norm_reference,
        rtol=1e-4,
        atol=1e-4,
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize(
    "kwargs, input_shape",
    [
        ({"groups": 4}, (3, 5, 6, 16)),
        ({"groups": -1}, (3, 5, 6, 16)),
        ({"groups": 1}, (3, 5, 6, 16)),
        ({"groups": 5, "axis": 1}, (3, 5, 6, 16)),
        ({"groups": 3, "axis": 2}, (3, 5, 6, 16)),
        ({"groups": 3, "axis": -2}, (3, 5, 6, 16)),
        ({"groups": 8, "center": False, "epsilon": 1e-5}, (4, 16)),
        ({"groups": 2, "axis": 2, "scale": False}, (2, 3, 4, 5, 6)),
    ],
)
def test_matches_keras_group_normalization(kwargs, input_shape):
    rng = np.random.default_rng(0)
    # A large mean relative to the spread, as after a ReLU, tests the variance's accuracy.
    x = (rng.standard_normal(input_shape) * 2 + 5).astype("float32")
    weights = rng.standard_normal(input_shape).astype("float32")
    ours, theirs = GroupNorm(**kwargs), keras.layers.GroupNormalization(**kwargs)
    for layer in (ours, theirs):
        layer.build(input_shape)
        random_weights(layer, seed=1)
    assert ours.get_config() | {"name": None} == theirs.get_config() | {"name": None}
    out, grads = value_and_gradients(ours, x, weights)
    expected, expected_grads = value_and_gradients(theirs, x, weights)
    # Against the exact (float64) result: the two-pass float32 statistics are accurate.
    np.testing.assert_allclose(out, group_norm_reference(ours, x), rtol=1e-5, atol=2e-5)
    np.testing.assert_array_less(
        np.abs(out - expected), 2e-5 + 1e-5 * np.abs(expected) + one_pass_error(ours, x)
    )
    assert len(grads) == len(expected_grads)
    # The input gradient against float64 central differences of the NumPy reference.
    np.testing.assert_allclose(grads[0], numerical_input_gradient(ours, x, weights),
                               rtol=1e-4, atol=1e-4)
    for index, (grad, expected_grad) in enumerate(zip(grads, expected_grads, strict=True)):
        # Keras's torch input gradient strays from the exact one where a group holds two
        # values (axis -1, groups of 2 channels): ours is checked against the exact one.
        if BACKEND != "torch" or index > 0:
            np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-4)


def numerical_input_gradient(layer, x, weights, step=1e-6):
    """d sum(reference(x) * weights) / dx by float64 central differences."""
    x = np.array(x, "float64")
    flat, grad = x.reshape(-1), np.empty(x.size)
    # The layer's settings and weights as NumPy values, read once.
    layer = types.SimpleNamespace(
        axis=layer.axis, groups=layer.groups, epsilon=layer.epsilon, scale=layer.scale,
        center=layer.center,
        gamma=keras.ops.convert_to_numpy(layer.gamma) if layer.scale else None,
        beta=keras.ops.convert_to_numpy(layer.beta) if layer.center else None,
    )
    for i in range(x.size):
        original = flat[i]
        flat[i] = original + step
        plus = np.sum(group_norm_reference(layer, x) * weights)
        flat[i] = original - step
        minus = np.sum(group_norm_reference(layer, x) * weights)
        flat[i] = original
        grad[i] = (plus - minus) / (2 * step)
    return grad.reshape(x.shape)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_matches_keras(policy):
    x = (np.random.default_rng(0).standard_normal((2, 4, 4, 8)) * 50 + 100).astype("float32")
    ours = GroupNorm(groups=2, dtype=policy)
    theirs = keras.layers.GroupNormalization(groups=2, dtype=policy)
    out, expected = ours(x), theirs(x)
    assert keras.backend.standardize_dtype(out.dtype) == ours.compute_dtype
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")),
        keras.ops.convert_to_numpy(keras.ops.cast(expected, "float32")),
        atol=2e-2,
    )


def test_passes_masks_through_like_keras():
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype("float32")
    mask = np.array([[True] * 5, [True, True, False, False, False]])
    ours, theirs = GroupNorm(groups=2), keras.layers.GroupNormalization(groups=2)
    for layer in (ours, theirs):
        layer.build(x.shape)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(ours.compute_mask(x, mask)),
        keras.ops.convert_to_numpy(theirs.compute_mask(x, mask)),
    )
    inputs = keras.Input((5, 4))
    masked = keras.layers.Masking()(inputs)
    outputs = keras.layers.GlobalAveragePooling1D()(GroupNorm(groups=2)(masked))
    reference = keras.layers.GlobalAveragePooling1D()(
        keras.layers.GroupNormalization(groups=2)(masked)
    )
    model = keras.Model(inputs, [outputs, reference])
    x[1, 2:] = 0.0
    out, expected = model(x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(expected), atol=1e-5
    )


def test_output_of_an_example_does_not_depend_on_its_batch():
    rng = np.random.default_rng(0)
    example = rng.standard_normal((1, 6, 6, 8)).astype("float32")
    batch_a = np.concatenate([example, rng.standard_normal((3, 6, 6, 8)).astype("float32")])
    batch_b = np.concatenate([example, 10 * rng.standard_normal((7, 6, 6, 8)).astype("float32")])
    group_norm = GroupNorm(groups=4)
    batch_norm = keras.layers.BatchNormalization()

    def first(layer, batch):
        return keras.ops.convert_to_numpy(layer(batch, training=True))[0]

    alone = first(group_norm, example)
    np.testing.assert_allclose(first(group_norm, batch_a), alone, atol=1e-6)
    np.testing.assert_allclose(first(group_norm, batch_b), alone, atol=1e-6)
    # Batch normalization in training mode normalizes with the batch's statistics.
    assert np.max(np.abs(first(batch_norm, batch_a) - first(batch_norm, batch_b))) > 0.1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"groups": 0}, ValueError, r"`groups`.*Received: groups=0$"),
        ({"groups": -2}, ValueError, r"Received: groups=-2$"),
        ({"groups": 2.0}, ValueError, r"Received: groups=2\.0$"),
        ({"axis": [1, 2]}, ValueError, r"`axis` must be an integer\. Received: axis=\[1, 2\]$"),
        ({"axis": True}, ValueError, r"Received: axis=True$"),
        ({"epsilon": -1e-3}, ValueError, r"`epsilon`.*non-negative.*Received: epsilon=-0\.001$"),
        ({"epsilon": "small"}, ValueError, r"Received: epsilon='small'$"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        GroupNorm(**kwargs)


@pytest.mark.parametrize(
    "kwargs, input_shape, match",
    [
        ({"groups": 3}, (2, 4, 8), r"must divide the 8 channels of axis -1.*Received: groups=3$"),
        ({"groups": 16}, (2, 4, 8), r"must divide the 8 channels.*Received: groups=16$"),
        ({"groups": 1}, (8,), r"rank >= 2.*Received: input_shape=\(8,\)$"),
        ({"groups": 1, "axis": 3}, (2, 4, 8),
         r"in range for inputs of rank 3, in \[-3, 3\)\. Received: axis=3$"),
        ({"groups": 1, "axis": -4}, (2, 4, 8), r"Received: axis=-4$"),
        ({"groups": 1, "axis": 0}, (2, 8), r"not the batch axis 0\. Received: axis=0$"),
        ({"groups": 1}, (2, 4, None), r"known size\. Received: input_shape=\(2, 4, None\)$"),
    ],
)
def test_build_errors(kwargs, input_shape, match):
    with pytest.raises(ValueError, match=match):
        GroupNorm(**kwargs).build(input_shape)


def _trained_batchnorm(layer, seed):
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))


def test_replace_batchnorm_sequential():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(48, 3, name="conv_a"),
            keras.layers.BatchNormalization(epsilon=1e-5, name="bn_a"),
            keras.layers.Conv2D(5, 3, name="conv_b"),
            keras.layers.BatchNormalization(center=False, name="bn_b"),
            keras.layers.Conv2D(64, 1, name="conv_c"),
            keras.layers.BatchNormalization(name="bn_c", trainable=False),
        ]
    )
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.BatchNormalization):
            _trained_batchnorm(layer, index)
    copy = replace_batchnorm(model, groups=32)
    assert isinstance(copy, keras.Sequential)
    norms = {layer.name: layer for layer in copy.layers if isinstance(layer, GroupNorm)}
    assert sorted(norms) == ["bn_a", "bn_b", "bn_c"]
    assert [norms[name].groups for name in ("bn_a", "bn_b", "bn_c")] == [24, 5, 32]
    assert norms["bn_a"].epsilon == 1e-5
    assert not norms["bn_b"].center and norms["bn_b"].beta is None
    assert not norms["bn_c"].trainable
    for name, norm in norms.items():
        bn = model.get_layer(name)
        np.testing.assert_array_equal(norm.gamma.numpy(), bn.gamma.numpy())
        if bn.center:
            np.testing.assert_array_equal(norm.beta.numpy(), bn.beta.numpy())
    for name in ("conv_a", "conv_b", "conv_c"):
        for new, old in zip(
            copy.get_layer(name).weights, model.get_layer(name).weights, strict=True
        ):
            np.testing.assert_array_equal(new.numpy(), old.numpy())
            assert new is not old
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    assert copy(x).shape == model(x).shape
    # The original model is untouched.
    assert isinstance(model.get_layer("bn_a"), keras.layers.BatchNormalization)


def test_replace_batchnorm_functional_with_nested_model():
    inner_inputs = keras.Input((6, 6, 16))
    inner_outputs = keras.layers.BatchNormalization(name="inner_bn")(inner_inputs)
    inner = keras.Model(inner_inputs, inner_outputs, name="inner")
    inputs = keras.Input((16, 6, 6))
    x = keras.layers.BatchNormalization(axis=1, name="channels_first_bn")(inputs)
    x = keras.layers.Permute((2, 3, 1))(x)
    x = inner(x)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    copy = replace_batchnorm(model, groups=4)

    first = copy.get_layer("channels_first_bn")
    assert isinstance(first, GroupNorm) and first.axis == 1 and first.groups == 4
    assert isinstance(copy.get_layer("inner").get_layer("inner_bn"), GroupNorm)
    np.testing.assert_array_equal(
        copy.get_layer("head").kernel.numpy(), model.get_layer("head").kernel.numpy()
    )
    batch = np.random.default_rng(0).standard_normal((3, 16, 6, 6)).astype("float32")
    single = keras.ops.convert_to_numpy(copy(batch[:1]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(copy(batch))[:1], single, atol=1e-5)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.norm = keras.layers.BatchNormalization()

    def call(self, inputs):
        return self.norm(inputs)


@pytest.mark.parametrize(
    "make_model, groups, error, match",
    [
        (lambda: keras.layers.BatchNormalization(), 32, TypeError,
         r"`model` must be a Functional or Sequential keras\.Model.*Received: model="),
        (lambda: "resnet", 32, TypeError, r"Received: model='resnet'$"),
        (_Subclassed, 32, TypeError, r"subclassed models have no graph.*Received: model="),
        (lambda: keras.Sequential([keras.layers.BatchNormalization()]), 32, ValueError,
         r"must be built.*Received: model='sequential"),
        (lambda: keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()]), 0,
         ValueError, r"`groups` must be a positive integer\. Received: groups=0$"),
        (lambda: keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()]), -1,
         ValueError, r"Received: groups=-1$"),
        (lambda: keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()]), 2.5,
         ValueError, r"Received: groups=2\.5$"),
    ],
)
def test_replace_batchnorm_errors(make_model, groups, error, match):
    with pytest.raises(error, match=match):
        replace_batchnorm(make_model(), groups=groups)

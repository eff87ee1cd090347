"""Tests of kfound.layers.WeightNorm."""

import functools
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from layer_test_utils import run_layer_test

from kfound.initializers import SparseInitializer
from kfound.layers import WeightNorm

BACKEND = keras.backend.backend()
tf_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="needs the TensorFlow backend")


@functools.cache
def _conv2d_runs_channels_first():
    """Whether Keras's own Conv2D runs channels-first here: TensorFlow's CPU kernel takes
    NCHW only with oneDNN on (`TF_ENABLE_ONEDNN_OPTS`), by default only on some x86 CPUs."""
    layer = keras.layers.Conv2D(1, 1, data_format="channels_first")
    try:
        layer(np.ones((1, 1, 2, 2), "float32"))
    except Exception as error:  # TensorFlow's UnimplementedError, under Keras's wrapper
        if "NHWC" not in str(error):
            raise
        return False
    return True


def _skip_unless_the_wrapped_layer_runs(name):
    if name == "conv2d_channels_first" and not _conv2d_runs_channels_first():
        pytest.skip("Keras's Conv2D can't run channels-first on this CPU under TensorFlow "
                    "(its CPU kernel takes NCHW only with oneDNN on)")


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _folded(v, g, reduce_axes):
    """The NumPy weight-normalized kernel `g * v / ||v||`."""
    norm = np.sqrt(np.sum(np.square(v), axis=reduce_axes, keepdims=True))
    shape = [1 if a in reduce_axes else d for a, d in enumerate(v.shape)]
    return v * np.reshape(g, shape) / norm


def _weights(layer):
    return {w.path.split("/", 1)[1]: _numpy(w) for w in layer.weights}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def dense_reference(layer, x):
    w = _weights(layer)
    kernel = _folded(w["dense/kernel"], w["g"] + w["g_offset"], (0,))
    return np.maximum(x @ kernel + w["dense/bias"] + w["bias_offset"], 0.0)


def conv2d_reference(layer, x):
    """A direct NumPy 'valid' convolution with the folded kernel."""
    w = _weights(layer)
    kernel = _folded(w["conv2d/kernel"], w["g"], (0, 1, 2))
    kh, kw, _, filters = kernel.shape
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], out_h, out_w, filters), "float64")
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,cf->bhwf", x[:, i : i + out_h, j : j + out_w], kernel[i, j])
    return out + w["conv2d/bias"]


def lstm_reference(layer, x):
    """A NumPy LSTM (Keras gate order i, f, c, o) with both folded kernels."""
    w = _weights(layer)
    kernel = _folded(w["lstm/lstm_cell/kernel"], w["g"] + w["g_offset"], (0,))
    recurrent = _folded(w["lstm/lstm_cell/recurrent_kernel"], w["recurrent_g"], (0,))
    bias = w["lstm/lstm_cell/bias"] + w["bias_offset"]
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros((x.shape[0], units))
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, cc, o = np.split(z, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(cc)
        h = _sigmoid(o) * np.tanh(c)
    return h


def test_dense_layer_test(tmp_path):
    layer = run_layer_test(
        WeightNorm,
        {"layer": keras.layers.Dense(5, activation="relu", bias_initializer="random_normal")},
        (4, 3),
        expected_output_shape=(4, 5),
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=3,
        reference_fn=dense_reference,
        tmp_path=tmp_path,
    )
    assert float(_numpy(layer.initialized)) == 0.0, "an inference call ran the data init"


def test_conv2d_layer_test(tmp_path):
    run_layer_test(
        WeightNorm,
        {"layer": keras.layers.Conv2D(4, 3, bias_initializer="random_normal"), "data_init": False},
        (2, 6, 6, 3),
        expected_output_shape=(2, 4, 4, 4),
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=0,
        reference_fn=conv2d_reference,
        rtol=1e-4,
        tmp_path=tmp_path,
    )


def test_lstm_layer_test(tmp_path):
    run_layer_test(
        WeightNorm,
        {"layer": keras.layers.LSTM(3)},
        (2, 4, 2),
        expected_output_shape=(2, 3),
        expected_num_trainable_weights=5,
        expected_num_non_trainable_weights=3,
        reference_fn=lstm_reference,
        rtol=1e-4,
        tmp_path=tmp_path,
    )


# (layer factory, input shape, kernel axes reduced by the norm, channel axis of the output).
LAYERS = {
    "dense": (lambda: keras.layers.Dense(5), (6, 3), (0,), -1),
    "conv1d": (lambda: keras.layers.Conv1D(5, 3), (4, 9, 3), (0, 1), -1),
    "conv2d": (lambda: keras.layers.Conv2D(5, 3), (4, 7, 7, 3), (0, 1, 2), -1),
    "conv2d_channels_first": (
        # Not a square output: keras.ops.add on TensorFlow adds a (1, C, 1, 1) bias along
        # the last axis when that axis also has size C (a Keras bug, since its bias_add
        # shortcut prefers NHWC).
        lambda: keras.layers.Conv2D(5, 3, data_format="channels_first"), (4, 3, 9, 8),
        (0, 1, 2), 1,
    ),
    "conv3d": (lambda: keras.layers.Conv3D(5, 2), (4, 4, 4, 4, 3), (0, 1, 2, 3), -1),
    "conv1d_transpose": (lambda: keras.layers.Conv1DTranspose(5, 3), (4, 9, 3), (0, 2), -1),
    "conv2d_transpose": (
        lambda: keras.layers.Conv2DTranspose(5, 3, strides=2), (4, 5, 5, 3), (0, 1, 3), -1,
    ),
    "depthwise_conv2d": (
        lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2), (4, 7, 7, 3), (0, 1), -1,
    ),
    "simple_rnn": (lambda: keras.layers.SimpleRNN(5, return_sequences=True), (4, 3, 3), (0,), -1),
    "gru": (lambda: keras.layers.GRU(5), (4, 3, 3), (0,), -1),
    "lstm": (lambda: keras.layers.LSTM(5), (4, 3, 3), (0,), -1),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_normalizes_the_output_axis_and_folds(name):
    _skip_unless_the_wrapped_layer_runs(name)
    make, input_shape, reduce_axes, _ = LAYERS[name]
    x = np.random.default_rng(0).standard_normal(input_shape).astype("float32")
    layer = WeightNorm(make(), data_init=False)
    output = _numpy(layer(x))
    assert output.shape == tuple(make().compute_output_shape(input_shape))
    assert output.shape == tuple(layer.compute_output_shape(input_shape))

    # Give every unit its own length, then check ||kernel|| == g unit by unit.
    gs = [w for w in layer.trainable_weights if w.name in ("g", "recurrent_g")]
    rng = np.random.default_rng(1)
    for g in gs:
        g.assign(rng.uniform(0.5, 2.0, g.shape).astype("float32"))
    plain = layer.remove()
    assert type(plain) is type(layer.layer)
    assert plain.get_config() == layer.layer.get_config()
    kernels = [plain.cell.kernel, plain.cell.recurrent_kernel] if gs[1:] else [plain.kernel]
    for g, kernel in zip(gs, kernels, strict=True):
        norms = np.sqrt(np.sum(np.square(_numpy(kernel)), axis=reduce_axes))
        np.testing.assert_allclose(norms.reshape(-1), _numpy(g), rtol=1e-5)
    np.testing.assert_allclose(_numpy(plain(x)), _numpy(layer(x)), rtol=1e-5, atol=1e-5)


def test_starts_as_the_plain_layer():
    dense = keras.layers.Dense(4, bias_initializer="random_normal")
    x = np.random.default_rng(0).standard_normal((3, 5)).astype("float32")
    plain_output = _numpy(dense(x))
    wrapped = WeightNorm(dense)
    np.testing.assert_allclose(_numpy(wrapped(x)), plain_output, rtol=1e-5, atol=1e-6)


def test_data_init_known_reference():
    """Identity kernel, batch [[-4,-4],[4,4]]: mean 0 and std 4, so the output is x / 4."""
    x = np.array([[-4.0, -4.0], [4.0, 4.0]], "float32")
    for use_bias in (False, True):
        layer = WeightNorm(keras.layers.Dense(2, kernel_initializer="identity", use_bias=use_bias))
        np.testing.assert_allclose(_numpy(layer(x)), x, atol=1e-6)
        np.testing.assert_allclose(_numpy(layer(x, training=True)), x / 4, atol=1e-6)
        np.testing.assert_allclose(_numpy(layer(x)), x / 4, atol=1e-6)
        np.testing.assert_allclose(_numpy(layer.remove()(x)), x / 4, atol=1e-6)


@pytest.mark.parametrize(
    "name", ["dense", "conv2d_channels_first", "conv2d_transpose", "depthwise_conv2d"]
)
def test_data_init_standardizes_pre_activations(name):
    _skip_unless_the_wrapped_layer_runs(name)
    make, input_shape, _, channel_axis = LAYERS[name]
    rng = np.random.default_rng(0)
    x = (3.0 * rng.standard_normal(input_shape) + 1.0).astype("float32")
    layer = WeightNorm(make())
    output = _numpy(layer(x, training=True))
    axes = tuple(a for a in range(output.ndim) if a != channel_axis % output.ndim)
    np.testing.assert_allclose(output.mean(axis=axes), 0.0, atol=1e-4)
    np.testing.assert_allclose(output.std(axis=axes), 1.0, atol=1e-3)


@pytest.mark.parametrize("name", ["simple_rnn", "gru", "lstm"])
def test_data_init_standardizes_recurrent_input_projection(name):
    make, input_shape, _, _ = LAYERS[name]
    x = (2.0 * np.random.default_rng(0).standard_normal(input_shape) - 1.0).astype("float32")
    layer = WeightNorm(make())
    layer(x, training=True)
    cell = layer.remove().cell
    bias = _numpy(cell.bias)
    input_bias = bias[0] if bias.ndim == 2 else bias
    projection = x.reshape(-1, x.shape[-1]) @ _numpy(cell.kernel) + input_bias
    np.testing.assert_allclose(projection.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(projection.std(axis=0), 1.0, atol=1e-3)


def _compiled(layer, input_shape, jit_compile="auto", learning_rate=0.1):
    # "auto", the users' default: XLA on TensorFlow and JAX, eager on torch, where
    # `torch.compile` costs seconds per model (test_data_init_runs_once_in_fit
    # runs it once, with `jit_compile=True`).
    inputs = keras.Input(input_shape[1:])
    model = keras.Model(inputs, layer(inputs))
    optimizer = keras.optimizers.SGD(learning_rate)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("jit_compile", [True, False])
def test_data_init_runs_once_in_fit(jit_compile, tmp_path):
    rng = np.random.default_rng(0)
    x = (2.0 * rng.standard_normal((16, 4)) + 3.0).astype("float32")
    layer = WeightNorm(keras.layers.Dense(3))
    model = _compiled(layer, x.shape, jit_compile)
    model.fit(x, np.zeros((16, 3)), batch_size=16, epochs=1, verbose=0)
    assert float(_numpy(layer.initialized)) == 1.0
    offsets = _numpy(layer.g_offset)
    assert np.all(offsets != 0.0)
    # The offsets were frozen after the first batch: later steps only train g and v.
    model.fit(10.0 * x, np.zeros((16, 3)), batch_size=16, epochs=2, verbose=0)
    np.testing.assert_array_equal(_numpy(layer.g_offset), offsets)

    # ...and they survive saving: a reloaded model does not initialize again.
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    reloaded_layer = reloaded.layers[-1]
    assert float(_numpy(reloaded_layer.initialized)) == 1.0
    reloaded.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=jit_compile)
    reloaded.fit(-x, np.zeros((16, 3)), batch_size=16, epochs=1, verbose=0)
    np.testing.assert_array_equal(_numpy(reloaded_layer.g_offset), offsets)
    np.testing.assert_allclose(_numpy(reloaded(x)), _numpy(model(x)), atol=1e-6)


def test_predict_and_evaluate_never_change_weights():
    x = np.random.default_rng(0).standard_normal((8, 6, 6, 3)).astype("float32")
    layer = WeightNorm(keras.layers.Conv2D(4, 3))
    model = _compiled(layer, x.shape)
    y = np.zeros((8, 4, 4, 4), "float32")
    before = [_numpy(w) for w in model.weights]
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    for old, new in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(_numpy(new), old, err_msg=new.path)
    model.fit(x, y, epochs=1, verbose=0)
    assert float(_numpy(layer.initialized)) == 1.0
    trained = [_numpy(w) for w in model.weights]
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    for old, new in zip(trained, model.weights, strict=True):
        np.testing.assert_array_equal(_numpy(new), old, err_msg=new.path)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_with_data_init(policy):
    keras.config.set_dtype_policy(policy)
    rng = np.random.default_rng(0)
    x = (4.0 * rng.standard_normal((32, 6, 6, 3)) + 2.0).astype("float32")
    layer = WeightNorm(keras.layers.Conv2D(4, 3))
    # A zero learning rate keeps the initialization itself to check.
    model = _compiled(layer, x.shape, learning_rate=0.0)
    history = model.fit(x, np.zeros((32, 4, 4, 4)), batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert float(_numpy(layer.initialized)) == 1.0
    assert all(w.dtype == "float32" for w in layer.weights)
    output = _numpy(keras.ops.cast(layer(x), "float32"))
    np.testing.assert_allclose(output.mean(axis=(0, 1, 2)), 0.0, atol=0.05)
    np.testing.assert_allclose(output.std(axis=(0, 1, 2)), 1.0, atol=0.05)


@tf_only
def test_saved_model_export_after_data_init(tmp_path):
    import tensorflow as tf

    x = (3.0 * np.random.default_rng(0).standard_normal((8, 5)) + 1.0).astype("float32")
    layer = WeightNorm(keras.layers.Dense(4, activation="tanh"))
    model = _compiled(layer, x.shape)
    model.fit(x, np.zeros((8, 4)), epochs=1, verbose=0)
    expected = _numpy(model(x))
    path = str(tmp_path / "export")
    model.export(path, verbose=False)
    restored = tf.saved_model.load(path)
    np.testing.assert_allclose(restored.serve(tf.constant(x)).numpy(), expected, atol=1e-6)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras

    from kfound.layers import WeightNorm

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    x = (2.0 * np.random.default_rng(0).standard_normal((16, 4)) + 1.0).astype("float32")
    with strategy.scope():
        layer = WeightNorm(keras.layers.Dense(3))
        inputs = keras.Input((4,))
        model = keras.Model(inputs, layer(inputs))
        model.compile(optimizer="sgd", loss="mse")
    history = model.fit(x, np.zeros((16, 3)), batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"])), history.history
    assert float(layer.initialized.numpy()) == 1.0
    assert np.all(layer.g_offset.numpy() != 0.0)
    print("MIRRORED_OK")
    """
)


@tf_only
def test_mirrored_strategy_training():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT], env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert "MIRRORED_OK" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"layer": "dense"}, TypeError, r"`layer` must be a `keras.layers.Layer`.*"
         r"Received: layer='dense'$"),
        ({"layer": keras.layers.Dropout(0.5)}, ValueError,
         r"`layer` must be a layer with a kernel.*Received: layer=<Dropout"),
        ({"layer": keras.layers.SeparableConv2D(4, 3)}, ValueError,
         r"`layer` must be a layer with a kernel.*Received: layer=<SeparableConv2D"),
        ({"layer": keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.LSTMCell(2)]))},
         ValueError, r"`layer` must be a layer with a kernel.*Received: layer=<RNN"),
        ({"layer": keras.layers.Dense(2), "data_init": 1}, ValueError,
         r"`data_init` must be a bool. Received: data_init=1$"),
        ({"layer": keras.layers.Dense(2), "epsilon": 0.0}, ValueError,
         r"`epsilon` must be a finite positive number. Received: epsilon=0.0$"),
        ({"layer": keras.layers.Dense(2), "epsilon": "tiny"}, ValueError,
         r"`epsilon` must be a finite positive number. Received: epsilon='tiny'$"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        WeightNorm(**kwargs)


def test_lora_kernel_is_refused_at_build():
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    dense.enable_lora(1)
    with pytest.raises(ValueError, match=r"plain variable, not a LoRA.*Received: layer=<Dense"):
        WeightNorm(dense).build((None, 3))


def test_remove_needs_a_built_layer():
    with pytest.raises(ValueError, match=r"needs a built `WeightNorm`.*Received: layer=<Dense"):
        WeightNorm(keras.layers.Dense(2)).remove()


def test_loads_a_model_saved_by_kfound_0_1_0():
    # Saved under JAX by kfound 0.1.0, whose WeightNorm swapped the wrapped layer's private
    # `_kernel` and whose SparseInitializer subclassed Keras's private RandomInitializer:
    #   x = np.random.default_rng(0).standard_normal((8, 6, 6, 3)).astype("float32")
    #   WeightNorm(Conv2D(4, 3, relu, kernel_initializer=SparseInitializer(5, seed=1)))
    #   -> Flatten -> WeightNorm(Dense(3)); compile("sgd", "mse"); fit 2 epochs on zeros.
    data = os.path.join(os.path.dirname(__file__), "data")
    model = keras.saving.load_model(os.path.join(data, "weight_norm_sparse_kfound_0_1_0.keras"))
    x = np.random.default_rng(0).standard_normal((8, 6, 6, 3)).astype("float32")
    expected = np.load(os.path.join(data, "weight_norm_sparse_kfound_0_1_0_outputs.npy"))
    np.testing.assert_allclose(_numpy(model(x)), expected, rtol=1e-5, atol=1e-5)
    conv = model.layers[1]
    assert isinstance(conv, WeightNorm) and float(_numpy(conv.initialized)) == 1.0
    assert isinstance(conv.layer.kernel_initializer, SparseInitializer)
    # Training goes on from the loaded state, without a second data-dependent init.
    before = _numpy(conv.g_offset)
    model.fit(x, np.zeros((8, 3), "float32"), epochs=1, verbose=0)
    np.testing.assert_array_equal(_numpy(conv.g_offset), before)

import csv
import glob
import math
import warnings

import keras
import numpy as np
import pytest

from kfound.callbacks import GradientMonitor, GradientWarning

RNG = np.random.default_rng(0)
X = RNG.uniform(size=(96, 6)).astype("float32")
Y = (X.sum(axis=1) > 3).astype("int32")
# XLA on TensorFlow and JAX; torch.compile would take minutes on a CPU, so torch runs eager.
JIT = keras.backend.backend() != "torch"


def _mlp(activation="relu", depth=2, units=8, initializer="glorot_uniform", lr=0.05, **compile):
    layers = [keras.Input((6,))]
    layers += [
        keras.layers.Dense(units, activation, kernel_initializer=initializer, name=f"d{i}")
        for i in range(depth)
    ]
    layers.append(keras.layers.Dense(2, "softmax", name="out"))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy", **compile)
    return model


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every_n_batches": 0}, r"`every_n_batches` must be a positive integer\. "
                                 r"Received: every_n_batches=0$"),
        ({"every_n_batches": 2.5}, r"Received: every_n_batches=2\.5$"),
        ({"on_problem": "panic"}, r"`on_problem` must be one of .*Received: on_problem='panic'$"),
        ({"vanishing_ratio": -1}, r"`vanishing_ratio` must be a positive .*vanishing_ratio=-1$"),
        ({"exploding_norm": 0}, r"Received: exploding_norm=0$"),
        ({"probe_data": (X,)}, r"`probe_data` must be \(x, y\).*Received: probe_data="
                               r"\(<array of shape \(96, 6\)>\)$"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientMonitor(**kwargs)


@pytest.mark.parametrize(
    "make_model, monitor_kwargs, match",
    [
        (lambda: _frozen(_mlp()), {}, r"no trainable weights\. Received: model='\w+'$"),
        (_mlp, {"probe_data": (X[:, :4], Y)},
         r"must match the model's input shape \(None, 6\)\. "
         r"Received: probe_data=<x of shape \(96, 4\)>$"),
    ],
)
def test_bad_model_or_probe_fails_at_fit_start(make_model, monitor_kwargs, match):
    model = make_model()
    with pytest.raises(ValueError, match=match):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[GradientMonitor(**monitor_kwargs)])


def _frozen(model):
    for layer in model.layers:
        layer.trainable = False
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def test_norms_match_a_direct_gradient_and_logs_reach_history_and_csv(tmp_path):
    # With a zero learning rate the weights never move, so every sample equals the
    # gradient computed here directly, and every update ratio is exactly zero.
    model = _mlp(lr=0.0)
    monitor = GradientMonitor(every_n_batches=2, probe_data=(X[:16], Y[:16]))
    csv_path = tmp_path / "log.csv"
    history = model.fit(
        X, Y, batch_size=16, epochs=2, validation_data=(X[:32], Y[:32]), verbose=0,
        callbacks=[monitor, keras.callbacks.CSVLogger(str(csv_path))],
    )
    expected = _direct_norms(model, X[:16], Y[:16])
    samples = monitor.history
    assert samples["layers"] == ["d0", "d1", "out"]
    assert samples["grad_norm"].shape == (6, 3)  # 12 batches, every 2nd.
    np.testing.assert_allclose(samples["grad_norm"], np.tile(expected, (6, 1)), rtol=1e-4)
    np.testing.assert_array_equal(samples["update_ratio"], 0.0)
    np.testing.assert_array_equal(samples["step"], [2, 4, 6, 8, 10, 12])
    np.testing.assert_array_equal(samples["epoch"], [0, 0, 0, 1, 1, 1])
    assert "val_loss" in history.history
    np.testing.assert_allclose(history.history["grad_norm/d1"], [expected[1]] * 2, rtol=1e-4)
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert float(rows[1]["grad_norm/out"]) == pytest.approx(expected[2], rel=1e-4)


def _direct_norms(model, x, y):
    """Per-layer gradient norms of the mean cross-entropy of a ReLU-softmax MLP, by hand in
    NumPy, so every backend is checked against the same arithmetic."""
    params = [(layer.kernel.numpy().astype("float64"), layer.bias.numpy().astype("float64"))
              for layer in model.layers]
    inputs, a = [], x.astype("float64")
    for kernel, bias in params[:-1]:
        inputs.append(a)
        a = np.maximum(a @ kernel + bias, 0.0)
    inputs.append(a)
    logits = a @ params[-1][0] + params[-1][1]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    delta = (p - np.eye(p.shape[1])[y]) / len(x)
    norms = []
    for i in reversed(range(len(params))):
        kernel, _ = params[i]
        grad_kernel, grad_bias = inputs[i].T @ delta, delta.sum(axis=0)
        norms.append(math.sqrt(np.sum(grad_kernel**2) + np.sum(grad_bias**2)))
        delta = (delta @ kernel.T) * (inputs[i] > 0)
    return norms[::-1]


def test_tf_data_jit_compile_and_current_batch_leave_training_unchanged():
    tf = pytest.importorskip("tensorflow")

    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)
    keras.utils.set_random_seed(1)
    reference = _mlp(jit_compile=JIT)
    reference.fit(dataset, epochs=2, verbose=0, shuffle=False)
    keras.utils.set_random_seed(1)
    model = _mlp(jit_compile=JIT)
    monitor = GradientMonitor(every_n_batches=5)
    model.fit(dataset, epochs=2, verbose=0, shuffle=False, callbacks=[monitor])
    # The hook (or, on JAX, the tap) leaves every step unchanged: training is bit-identical.
    for a, b in zip(reference.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert monitor.history["grad_norm"].shape == (2, 3)
    assert np.all(monitor.history["update_ratio"] > 0)
    assert not hasattr(model.train_function, "batch")  # the tap is gone after fit
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    reference.fit(dataset, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(reference.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # and so is a later fit without the monitor


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the TF train-step hook")
def test_the_train_steps_own_gradients_are_recorded_and_the_hook_is_removed():
    from kfound.callbacks import gradient_pass

    model = _mlp(lr=0.0)
    model.fit(X, Y, batch_size=96, epochs=1, verbose=0)
    original = model.train_function
    monitor = GradientMonitor(every_n_batches=1)
    # One batch per step, the whole data: the step's gradient is the direct one.
    model.fit(X, Y, batch_size=96, epochs=2, verbose=0, shuffle=False, callbacks=[monitor])
    expected = _direct_norms(model, X, Y)
    np.testing.assert_allclose(monitor.history["grad_norm"], [expected] * 2, rtol=1e-4)
    loss = float(model.compute_loss(x=X, y=Y, y_pred=model(X)))
    np.testing.assert_allclose(monitor.history["loss"], [loss] * 2, rtol=1e-5)
    assert model not in gradient_pass._PASSES  # no extra forward and backward pass
    assert model.train_function is original
    assert "apply" not in vars(model.optimizer) and "scale_loss" not in vars(model.optimizer)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the TF train-step hook")
def test_mixed_precision_records_unscaled_gradients():
    def norms():
        keras.utils.set_random_seed(3)
        model = _mlp(lr=0.0)
        monitor = GradientMonitor(every_n_batches=1)
        model.fit(X, Y, batch_size=96, epochs=1, verbose=0, callbacks=[monitor])
        return monitor.history["grad_norm"][0], model.optimizer

    reference, _ = norms()
    keras.config.set_dtype_policy("mixed_float16")
    mixed, optimizer = norms()
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    np.testing.assert_allclose(mixed, reference, rtol=2e-2)


@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_an_unknown_number_of_steps_samples_the_first_step_then_the_last():
    tf = pytest.importorskip("tensorflow")

    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).filter(lambda x, y: True).batch(16)
    model = _mlp()
    monitor = GradientMonitor(every_n_batches=1000)
    model.fit(dataset, epochs=2, verbose=0, shuffle=False, callbacks=[monitor])
    np.testing.assert_array_equal(monitor.history["step"], [1, 12])


def test_batch_ends_stay_on_keras_helper_thread():
    # Keras hands batch ends to a helper thread only while no callback defines
    # `on_train_batch_end`; the monitor reads a sampled step when the next one begins.
    assert GradientMonitor.on_train_batch_end is keras.callbacks.Callback.on_train_batch_end


class _CountingSyncs(keras.Sequential):
    syncs = 0

    def jax_state_sync(self):
        self.syncs += 1
        super().jax_state_sync()


def test_an_unsampled_step_leaves_the_jax_state_alone():
    if keras.backend.backend() != "jax":
        pytest.skip("only JAX's fit keeps the weights outside the model")
    model = _CountingSyncs(_mlp().layers)
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0)
    syncs_without = model.syncs
    monitor = GradientMonitor(every_n_batches=1000)  # one sample per epoch: 2 in 24 steps
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[monitor])
    assert len(monitor.history["step"]) == 2
    extra = model.syncs - 2 * syncs_without  # at the start of `fit` and at each sample
    assert extra < 24, f"{extra} extra state syncs in 24 steps"  # not one per step


def test_two_monitors_on_one_model_both_record():
    model = _mlp()
    first, second = GradientMonitor(every_n_batches=2), GradientMonitor(every_n_batches=3)
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[first, second])
    np.testing.assert_array_equal(first.history["step"], [2, 4, 6])
    np.testing.assert_array_equal(second.history["step"], [3, 6])
    assert np.all(np.isfinite(first.history["grad_norm"]))
    assert np.all(np.isfinite(second.history["grad_norm"]))


def test_at_least_one_sample_per_epoch_and_state_resets_between_fits():
    model = _mlp()
    monitor = GradientMonitor(every_n_batches=1000)
    model.fit(X, Y, batch_size=32, epochs=2, verbose=0, callbacks=[monitor])
    np.testing.assert_array_equal(monitor.history["step"], [3, 6])
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    np.testing.assert_array_equal(monitor.history["step"], [3])


def test_vanishing_gradients_in_a_deep_sigmoid_net_are_named():
    model = _mlp("sigmoid", depth=8, lr=0.1)
    monitor = GradientMonitor(every_n_batches=3, vanishing_ratio=1e-2)
    with pytest.warns(GradientWarning, match=r"Vanishing gradients.*'d0'.*'out'.*saturating"):
        model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    assert [p["kind"] for p in monitor.problems] == ["vanishing"]
    assert monitor.problems[0]["ratio"] < 1e-2


def test_relu_he_net_is_not_diagnosed():
    model = _mlp("relu", depth=8, initializer="he_normal")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientWarning)
        model.fit(X, Y, batch_size=16, epochs=2, verbose=0, callbacks=[GradientMonitor(3)])


def test_exploding_norm_and_growth_are_diagnosed():
    model = _mlp()
    monitor = GradientMonitor(every_n_batches=2, exploding_norm=1e-3)
    with pytest.warns(GradientWarning, match=r"Exploding gradients.*above exploding_norm"):
        model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    # Weights that grow tenfold per epoch (a stand-in for a diverging optimizer) make the
    # gradient norms of a linear regression grow faster than growth_factor.
    model = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(4, name="d0"), keras.layers.Dense(1, name="out")
    ])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    grow = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: model.layers[0].kernel.assign(
            model.layers[0].kernel * 10.0
        )
    )
    monitor = GradientMonitor(every_n_batches=2, growth_factor=2.0, exploding_norm=1e12,
                              on_problem="raise")
    match = r"epoch 2: mean gradient norm grew more than growth_factor=2 times.*'d0' \(x\d"
    with pytest.raises(GradientWarning, match=match + r".*'out' \(x\d\d"):
        model.fit(X, Y.astype("float32"), batch_size=16, epochs=3, verbose=0,
                  callbacks=[grow, monitor])


class _PoisonAt(keras.callbacks.Callback):
    """Writes NaN into one layer's kernel after a given batch: a fault mid-training."""

    def __init__(self, layer, batch):
        super().__init__()
        self.layer, self.batch = layer, batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            kernel = self.model.get_layer(self.layer).kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


@pytest.mark.parametrize("on_problem", ["stop", "raise"])
def test_nan_mid_training_is_named_and_stops_training(on_problem):
    model = _mlp("tanh", depth=3)  # tanh(nan) is nan; relu(nan) may be 0 on some kernels.
    monitor = GradientMonitor(every_n_batches=1, on_problem=on_problem)
    callbacks = [_PoisonAt("d1", batch=2), monitor]
    if on_problem == "raise":
        model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
        original = model.train_function
        with pytest.raises(GradientWarning, match=r"layer 'd0' is the first, in forward order"):
            model.fit(X, Y, batch_size=16, epochs=3, verbose=0, callbacks=callbacks)
        # The raise leaves Keras as it was (test_step_tap.py checks every way out).
        assert model.train_function is original
        assert "apply" not in vars(model.optimizer)
        return
    with pytest.warns(GradientWarning, match=r"Non-finite.*'d0' is the first.*"
                                             r"Weights already non-finite in: \['d1'\]"):
        history = model.fit(X, Y, batch_size=16, epochs=3, verbose=0, callbacks=callbacks)
    assert len(history.history["loss"]) == 1  # stopped inside the first epoch
    problem = monitor.problems[0]
    # The kernel is poisoned after step 3, so step 4 is the first to compute NaN gradients.
    expected_step = 4 if keras.backend.backend() == "tensorflow" else 3
    assert (problem["kind"], problem["layer"], problem["step"]) == ("non_finite", "d0",
                                                                    expected_step)


def test_tensorboard_scalars_and_histograms_are_written(tmp_path):
    tf = pytest.importorskip("tensorflow")

    model = _mlp()
    monitor = GradientMonitor(every_n_batches=2, log_dir=tmp_path / "tb")
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    files = glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))
    assert files
    tags = {}
    for event in tf.compat.v1.train.summary_iterator(files[0]):
        for value in event.summary.value:
            tags[value.tag] = value.metadata.plugin_data.plugin_name or tags.get(value.tag)
    assert tags["grad_norm/d0"] == "scalars"
    assert tags["update_ratio/out"] == "scalars"
    assert tags["gradients/d1"] == "histograms"


def test_an_unwritable_log_dir_fails_at_train_begin_naming_it(tmp_path):
    pytest.importorskip("tensorflow")
    # A folder under a regular file: unwritable for root too.
    (tmp_path / "file").write_text("")
    log_dir = tmp_path / "file" / "tb"
    model = _mlp()
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    weights, original = model.get_weights(), model.train_function
    monitor = GradientMonitor(every_n_batches=1, log_dir=log_dir)
    with pytest.raises(ValueError, match=r"`log_dir` must be a folder GradientMonitor can "
                                         r"create and write TensorBoard files in, but "
                                         rf"'{log_dir}' is not \(.+\)\. "
                                         rf"Received: log_dir='{log_dir}'$"):
        model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)  # refused before the first step
    assert model.train_function is original


def test_plot_writes_a_png_and_needs_samples(tmp_path):
    monitor = GradientMonitor(every_n_batches=1)
    with pytest.raises(ValueError, match=r"needs at least one sample.*Received: path="):
        monitor.plot(tmp_path / "empty.png")
    _mlp().fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    path = monitor.plot(tmp_path / "norms.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verbose_prints_one_line_per_epoch(capsys):
    _mlp().fit(X, Y, epochs=2, verbose=0, callbacks=[GradientMonitor(verbose=1)])
    assert capsys.readouterr().out.count("GradientMonitor epoch") == 2
    _mlp().fit(X, Y, epochs=1, verbose=0, callbacks=[GradientMonitor()])
    assert capsys.readouterr().out == ""


class Subclassed(keras.Model):  # no leading "_": TF rejects such model names
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(4, "relu", name="hidden")
        self.out = keras.layers.Dense(2, "softmax", name="out")

    def call(self, x):
        return self.out(self.hidden(x))


def test_subclassed_model_is_resolved_at_its_first_sample():
    model = Subclassed()
    model.compile("sgd", "sparse_categorical_crossentropy")
    monitor = GradientMonitor(every_n_batches=1)
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    assert monitor.history["layers"] == ["hidden", "out"]
    # TF's hook snapshots the weights when it is traced, before the first update; JAX
    # builds the model before fit starts.
    assert np.all(monitor.history["update_ratio"] > 0)

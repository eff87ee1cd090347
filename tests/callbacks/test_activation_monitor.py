import warnings

import keras
import numpy as np
import pytest

from kfound.callbacks import ActivationMonitor, ActivationWarning, GradientMonitor

RNG = np.random.default_rng(0)
X = RNG.uniform(size=(64, 5)).astype("float32")
Y = (X.sum(axis=1) > 2.5).astype("int32")
# XLA on TensorFlow and JAX; torch.compile would take minutes on a CPU, so torch runs eager.
JIT = keras.backend.backend() != "torch"


def _model(activation="relu", units=6, kernel="glorot_uniform", bias="zeros", out="glorot_uniform"):
    model = keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(units, activation, kernel_initializer=kernel,
                           bias_initializer=bias, name="hidden"),
        keras.layers.Dense(2, "softmax", kernel_initializer=out, name="out"),
    ])
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every_n_batches": 0}, r"`every_n_batches` must be a positive integer or None\. "
                                 r"Received: every_n_batches=0$"),
        ({"on_problem": "ignore"}, r"Received: on_problem='ignore'$"),
        ({"dead_fraction": 1.5}, r"`dead_fraction` must be a number in \[0, 1\)\. "
                                 r"Received: dead_fraction=1\.5$"),
        ({"saturation_threshold": 0}, r"Received: saturation_threshold=0$"),
        ({"probe_data": (X, Y, Y, Y)}, r"Received: probe_data=\(<array of shape \(64, 5\)>"),
        # An empty probe has no statistics (every unit would look dead): refused.
        ({"probe_data": X[:0]}, r"`probe_data` must hold at least one example\. "
                                r"Received: probe_data=<array of shape \(0, 5\)>$"),
        ({"probe_data": (X[:0], Y[:0])}, r"Received: probe_data=\(<array of shape \(0, 5\)>, "
                                         r"<array of shape \(0,\)>\)$"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ActivationMonitor(**kwargs)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2, "softmax")

    def call(self, x):
        return self.dense(x)


def _frozen():
    model = _model()
    model.trainable = False
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def _subclassed():
    model = Subclassed()
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize(
    "make_model, kwargs, match",
    [
        (_frozen, {}, r"no trainable weights\. Received: model='\w+'$"),
        (_subclassed, {}, r"functional or Sequential model\. Received: model='\w+' of type "
                          r"Subclassed$"),
        (_model, {"probe_data": X[:, :3]},
         r"input shape \(None, 5\)\. Received: probe_data=<x of shape \(64, 3\)>$"),
    ],
)
def test_bad_model_or_probe_fails_at_fit_start(make_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_model().fit(X, Y, epochs=1, verbose=0, callbacks=[ActivationMonitor(**kwargs)])


def test_statistics_match_numpy_on_the_probe():
    model = _model("tanh")
    monitor = ActivationMonitor(probe_data=(X, Y))
    model.fit(X, Y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor])
    history = monitor.history
    assert history["layers"] == ["hidden", "out"]
    hidden = np.tanh(X @ model.layers[0].kernel.numpy() + model.layers[0].bias.numpy())
    np.testing.assert_allclose(history["mean"][-1, 0], hidden.mean(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(history["std"][-1, 0], hidden.std(), rtol=1e-4)
    np.testing.assert_allclose(
        history["saturated_fraction"][-1, 0], np.mean(1 - hidden**2 < 0.1), atol=1e-6
    )
    assert np.isnan(history["dead_fraction"][-1, 0])  # not a ReLU layer
    # Drift: nan in the first epoch; the first layer's input is the fixed probe.
    assert np.all(np.isnan(history["drift"][0]))
    assert history["drift"][1, 0] == 0.0
    assert history["drift"][1, 1] > 0.0


def test_dead_relus_are_diagnosed():
    model = _model("relu", bias=keras.initializers.Constant(-10.0))
    monitor = ActivationMonitor(probe_data=X)
    with pytest.warns(ActivationWarning, match=r"'hidden' \(100%\) has more than 50% of its "
                                               r"ReLU units dead.*Maas et al.*LeakyReLU"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[monitor])
    assert monitor.problems[0]["kind"] == "dead_relu"


def test_saturated_sigmoids_are_diagnosed():
    model = _model("sigmoid", kernel=keras.initializers.RandomNormal(stddev=30.0))
    monitor = ActivationMonitor(probe_data=X, on_problem="raise")
    with pytest.raises(ActivationWarning, match=r"'hidden' \(\d+%\) has more than 50% of its "
                                                r"outputs saturated.*Glorot and Bengio"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[monitor])


def test_constant_init_is_diagnosed_symmetric_and_random_init_is_not():
    # Every layer constant: random outgoing weights alone would break the symmetry.
    constant = keras.initializers.Constant(0.3)
    model = _model("tanh", kernel=constant, out=constant)
    monitor = ActivationMonitor(on_problem="stop")
    with pytest.warns(ActivationWarning, match=r"'hidden' \(100%\) has more than 0% of its "
                                               r"units symmetric.*constant"):
        history = model.fit(X, Y, batch_size=16, epochs=3, verbose=0, callbacks=[monitor])
    assert len(history.history["loss"]) == 1  # "stop" ended training after the first epoch
    assert monitor.history["symmetric_fraction"][0, 0] == 1.0
    assert monitor.history["symmetric_fraction"][0, 1] == 0.0  # output units differ by target

    model = _model("tanh")
    monitor = ActivationMonitor(every_n_batches=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ActivationWarning)
        model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    np.testing.assert_array_equal(monitor.history["symmetric_fraction"], 0.0)
    np.testing.assert_array_equal(monitor.history["step"], [2, 4, 4])


def test_an_empty_probe_dataset_is_refused():
    tf = pytest.importorskip("tensorflow")
    empty = tf.data.Dataset.from_tensor_slices(X).take(0).batch(8)
    with pytest.raises(ValueError, match=r"must hold at least one example, but the dataset is "
                                         r"empty\. Received: probe_data=<an empty"):
        ActivationMonitor(probe_data=empty)


@pytest.mark.parametrize("activations_first", [True, False])
def test_both_monitors_on_tf_data_with_jit_in_either_order(activations_first):
    tf = pytest.importorskip("tensorflow")

    model = _model()
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy",
                  jit_compile=JIT)
    original = model.make_train_function() or model.train_function
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)
    activations, gradients = ActivationMonitor(), GradientMonitor(every_n_batches=2)
    callbacks = [activations, gradients] if activations_first else [gradients, activations]
    model.fit(dataset, epochs=2, verbose=0, shuffle=False, validation_data=dataset,
              callbacks=callbacks)
    assert activations.history["mean"].shape == (2, 2)
    assert gradients.history["grad_norm"].shape == (4, 2)
    assert model.train_function is original


def test_plot_writes_a_png(tmp_path):
    monitor = ActivationMonitor(probe_data=X)
    _model().fit(X, Y, epochs=2, verbose=0, callbacks=[monitor])
    path = monitor.plot(tmp_path / "activations.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

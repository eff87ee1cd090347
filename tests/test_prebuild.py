import keras
import numpy as np
import pytest

from kfound import prebuild


def _model(metrics):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dropout(0.2)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=metrics,
                  # As kfound's head training; Keras's torch backend takes only 1.
                  steps_per_execution=1 if keras.backend.backend() == "torch" else 2)
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 8)).astype("float32"), rng.integers(0, 3, size=32)


def _traces_of_fit(model):
    """How many times `fit` runs `train_step` in Python: under TF, once per trace."""
    calls = []
    train_step = model.train_step

    def counted(data):
        calls.append(1)
        return train_step(data)

    model.train_step = counted
    model.fit(*_data(), batch_size=4, epochs=2, verbose=0, shuffle=False)
    return len(calls)


def test_a_prebuilt_model_traces_its_train_function_once_under_tensorflow():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("JAX's fit builds the optimizer before it traces; torch doesn't trace")
    metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    assert _traces_of_fit(prebuild.build_optimizer(_model([metric]))) == 1
    # What it saves: Keras builds the optimizer, or a metric given by name, in the first
    # trace, and `tf.function` then traces again.
    assert _traces_of_fit(_model([keras.metrics.SparseCategoricalAccuracy()])) == 2
    assert _traces_of_fit(prebuild.build_optimizer(_model(["accuracy"]))) == 2


def test_prebuilding_changes_no_result():
    x, y = _data()
    results = []
    for prebuilt in (False, True):
        model = _model(["accuracy"])  # each fit right after its model's seed is set
        if prebuilt:
            prebuild.build_optimizer(model)
        history = model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False).history
        results.append((model.get_weights(), history))
    (weights, history), (prebuilt_weights, prebuilt_history) = results
    for a, b in zip(weights, prebuilt_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert history == prebuilt_history


def test_a_built_optimizer_is_left_as_it_is():
    model = prebuild.build_optimizer(_model([]))
    variables = list(model.optimizer.variables)
    assert prebuild.build_optimizer(model) is model
    assert [id(v) for v in model.optimizer.variables] == [id(v) for v in variables]


def test_an_uncompiled_model_is_refused():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="plain")
    with pytest.raises(ValueError, match=r"`model` must be compiled.*Received: model='plain'"):
        prebuild.build_optimizer(model)

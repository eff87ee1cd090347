"""Whatever way `fit` ends, the monitors leave the model and its optimizer as they were."""

import keras
import numpy as np
import pytest

from kfound.callbacks import ActivationMonitor, GradientMonitor, GradientWarning, gradient_pass
from kfound.callbacks.train_step_hook import TrainStepHook

RNG = np.random.default_rng(0)
X = RNG.uniform(size=(64, 6)).astype("float32")
Y = (X.sum(axis=1) > 3).astype("int32")
TF = keras.backend.backend() == "tensorflow"


class Interruptible(keras.Sequential):
    """A model whose train step raises `KeyboardInterrupt` while `interrupt` is set: a
    Ctrl-C that lands inside the step. On TensorFlow the step is Python only while it is
    traced, which for the monitor's hooked step happens inside its first sampled call."""

    interrupt = False

    def train_step(self, *args, **kwargs):
        if self.interrupt:
            raise KeyboardInterrupt
        return super().train_step(*args, **kwargs)


def _model(eager=False):
    model = Interruptible([
        keras.Input((6,)),
        keras.layers.Dense(8, "tanh", name="d0"),
        keras.layers.Dense(2, "softmax", name="out"),
    ])
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy",
                  run_eagerly=eager)
    return model


class _RaiseAt(keras.callbacks.Callback):
    def __init__(self, error, batch, hook="on_train_batch_end"):
        super().__init__()
        self.error, self.batch = error, batch
        setattr(self, hook, self._maybe_raise)

    def _maybe_raise(self, batch, logs=None):
        if batch == self.batch:
            raise self.error


class _InterruptStep(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.model.interrupt = batch == 1


class _PoisonAt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            kernel = self.model.get_layer("d0").kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


CASES = {
    # The monitor's own on_problem="raise", from its on_train_batch_end.
    "own_raise": (GradientWarning, lambda: [_PoisonAt()], {"on_problem": "raise"}),
    # Another callback, listed first, so the monitor's on_train_batch_end never runs.
    "other_callback": (RuntimeError, lambda: [_RaiseAt(RuntimeError("boom"), batch=1)], {}),
    # A KeyboardInterrupt in a callback and one inside the sampled step itself.
    "interrupt_in_callback": (KeyboardInterrupt, lambda: [_RaiseAt(KeyboardInterrupt, 1)], {}),
    "interrupt_in_step": (KeyboardInterrupt, lambda: [_InterruptStep()], {}),
}


def _state(model):
    # The hook's traced step is cached on the model (one attribute) for later monitors;
    # `interrupt` is this test's own switch.
    attributes = set(vars(model)) - {TrainStepHook.ATTRIBUTE, "interrupt"}
    return model.train_function, attributes, set(vars(model.optimizer))


@pytest.mark.parametrize("case", list(CASES))
def test_an_exception_in_fit_leaves_model_and_optimizer_as_they_were(case):
    error, callbacks, kwargs = CASES[case]
    # Off TensorFlow, the step's Python runs at every call only when eager.
    model = _model(eager=case == "interrupt_in_step" and not TF)
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)  # builds and traces Keras's step
    before = _state(model)
    monitor = GradientMonitor(every_n_batches=2, **kwargs)
    with pytest.raises(error):
        model.fit(X, Y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks() + [monitor])
    model.interrupt = False
    train_function, model_attributes, optimizer_attributes = _state(model)
    assert train_function is before[0]
    assert model_attributes == before[1]
    assert optimizer_attributes == before[2]
    assert "apply" not in vars(model.optimizer) and "scale_loss" not in vars(model.optimizer)

    # A second monitor then works as on a fresh model: on TensorFlow through the fast path
    # (no extra pass is ever built for this model), elsewhere through the extra pass.
    if case == "own_raise":
        model = _model()
    second = GradientMonitor(every_n_batches=1)
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[second])
    np.testing.assert_array_equal(second.history["step"], [1, 2, 3, 4])
    assert np.all(np.isfinite(second.history["grad_norm"]))
    assert (model not in gradient_pass._PASSES) == TF
    assert model.train_function is _state(model)[0]
    assert "apply" not in vars(model.optimizer)


def test_activation_monitor_tap_is_gone_after_another_callbacks_raise():
    model = _model()
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    original = model.train_function
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(X, Y, batch_size=16, epochs=1, verbose=0,
                  callbacks=[_RaiseAt(RuntimeError("boom"), batch=0), ActivationMonitor()])
    assert model.train_function is original


def test_a_tap_left_by_a_raise_before_the_step_is_removed_at_the_next_fit():
    # The one window: a callback after the monitor whose on_train_batch_begin raises on a
    # sampled step. The tap is still armed after fit; the next monitored fit removes it.
    model = _model()
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    original = model.train_function
    raising = _RaiseAt(RuntimeError("boom"), batch=1, hook="on_train_batch_begin")
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(X, Y, batch_size=16, epochs=1, verbose=0,
                  callbacks=[GradientMonitor(every_n_batches=2), raising])
    assert model.train_function is not original
    monitor = GradientMonitor(every_n_batches=2)
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    assert model.train_function is original
    np.testing.assert_array_equal(monitor.history["step"], [2, 4])

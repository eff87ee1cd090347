import time

import keras
import numpy as np
import pytest

from kfound.callbacks import EpochTimer


class _Sleep(keras.callbacks.Callback):
    """Sleeps in training and in validation, so the two can be told apart."""

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.05)

    def on_test_batch_end(self, batch, logs=None):
        time.sleep(2.0)


def _model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


class _Clock(keras.callbacks.Callback):
    """Records when the last epoch began, when its validation began, and when it ended."""

    def on_epoch_begin(self, epoch, logs=None):
        self.begin = time.perf_counter()

    def on_test_begin(self, logs=None):
        self.validation = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.end = time.perf_counter()


def test_epoch_timer_times_training_not_validation():
    x, y = np.zeros((8, 4)), np.zeros((8, 1))
    timer, clock = EpochTimer(), _Clock()
    history = _model().fit(x, y, batch_size=4, epochs=2, validation_data=(x, y),
                           validation_batch_size=8, verbose=0,
                           callbacks=[clock, _Sleep(), timer])
    assert len(timer.epoch_times) == 2
    assert history.history["epoch_time"] == timer.epoch_times
    # The last epoch: its two 0.05 s training steps count, its 2 s validation does not,
    # however loaded the machine (timings compared with the clock, not with constants).
    last = timer.epoch_times[1]
    assert last >= 0.1
    assert last == pytest.approx(clock.validation - clock.begin, abs=0.25)
    assert (clock.end - clock.begin) - last >= 2.0


def test_epoch_timer_resets_and_works_without_validation():
    x, y = np.zeros((8, 4)), np.zeros((8, 1))
    timer = EpochTimer()
    model = _model()
    model.fit(x, y, epochs=3, verbose=0, callbacks=[timer])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[timer])
    assert len(timer.epoch_times) == 1
    assert timer.epoch_times[0] > 0

import time

import keras
import numpy as np

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


def test_epoch_timer_times_training_not_validation():
    x, y = np.zeros((8, 4)), np.zeros((8, 1))
    timer = EpochTimer()
    history = _model().fit(x, y, batch_size=4, epochs=2, validation_data=(x, y),
                           validation_batch_size=8, verbose=0, callbacks=[_Sleep(), timer])
    assert len(timer.epoch_times) == 2
    assert history.history["epoch_time"] == timer.epoch_times
    # The second epoch (the first one also traces the train step): two 0.05 s steps count,
    # the 2 s validation does not.
    assert 0.1 <= timer.epoch_times[1] < 2.0


def test_epoch_timer_resets_and_works_without_validation():
    x, y = np.zeros((8, 4)), np.zeros((8, 1))
    timer = EpochTimer()
    model = _model()
    model.fit(x, y, epochs=3, verbose=0, callbacks=[timer])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[timer])
    assert len(timer.epoch_times) == 1
    assert timer.epoch_times[0] > 0

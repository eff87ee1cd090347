"""EpochTimer: each epoch's training wall time, in the logs and the History."""

import time

import keras


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of each epoch's training part, in seconds.

    The time runs from the start of the epoch to the start of its validation (or to the end of
    the epoch when there is none), so a validation pass does not count as training time. It is
    added to the epoch's logs as `logs["epoch_time"]`, so `model.fit(...).history` holds it, and
    kept in `epoch_times`. The callback adds no per-batch hook, so it does not slow the steps.

    Attributes:
        epoch_times: a list of floats, one per finished epoch; reset by `on_train_begin`.

    Example:

    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> timer = EpochTimer()
    >>> history = model.fit(np.zeros((8, 4)), np.zeros((8, 1)), epochs=2, verbose=0,
    ...                     callbacks=[timer])
    >>> len(timer.epoch_times), len(history.history["epoch_time"])
    (2, 2)
    """

    def __init__(self):
        super().__init__()
        self.epoch_times = []
        self._start = None
        self._elapsed = None

    def on_train_begin(self, logs=None):
        self.epoch_times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._elapsed = None
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        # Validation inside `fit` runs after the epoch's training steps.
        if self._start is not None and self._elapsed is None:
            self._elapsed = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        elapsed = self._elapsed
        if elapsed is None:
            elapsed = time.perf_counter() - self._start
        self.epoch_times.append(elapsed)
        self._start = None
        if logs is not None:
            logs["epoch_time"] = elapsed

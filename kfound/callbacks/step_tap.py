"""StepTap: stands in for `model.train_function` for exactly one training step."""

import itertools

import keras


class StepTap:
    """Stands in for `model.train_function` for one training step, then is gone.

    Keras hands callbacks neither the batch nor a say in the step that trains on it. A
    monitor arms the tap in `on_train_batch_begin` of a step it watches (a step it samples;
    `GradientMonitor` every step, to count the steps that ran); `fit` then calls
    the tap instead of its train function, and the first thing the call does is put Keras's
    function back. So whatever happens next (an exception inside the step or in a callback,
    a `KeyboardInterrupt`), the model is as it was, even though Keras's `fit` has no
    `finally`. During its one call the tap can:

    - keep a reference to the step's batch (`keep_batch`; no copy, no host sync), which it
      pulls from the epoch's iterator itself and hands on unchanged, so training is too;
    - run another step function in Keras's place (`replacement`, with the same signature:
      the TensorFlow train-step hook of `GradientMonitor`);
    - tell whether the step ran to its end (`ran`): on data of unknown length, Keras begins
      one step more than there are batches, and finds the end of the data inside it.

    Several monitors that watch one step share its tap. The one window it leaves: a
    callback listed after the monitor whose `on_train_batch_begin` raises on a watched step.
    The tap is then still in place after `fit`. It is harmless (its next call restores
    Keras's function and runs the step as armed, which trains exactly as Keras's own), and
    the next monitor's `on_train_begin` removes it (`clear`).
    """

    def __init__(self, model):
        self.model = model
        self.inner = model.train_function
        self.keep_batch = False
        self.replacement = None
        self.batch = None
        self.ran = False

    @classmethod
    def arm(cls, model, keep_batch=False, replacement=None):
        """Installs (or joins) the tap for the model's next step and returns it."""
        tap = model.train_function
        if not isinstance(tap, cls):
            tap = cls(model)
            model.train_function = tap
        tap.keep_batch = tap.keep_batch or keep_batch
        if replacement is not None:
            tap.replacement = replacement
        return tap

    @classmethod
    def clear(cls, model):
        """Removes a tap that an interrupted `fit` left armed."""
        tap = getattr(model, "train_function", None)
        if isinstance(tap, cls):
            tap.disarm()

    @staticmethod
    def keras_function(model):
        """Keras's own train function, under a tap if one is armed."""
        function = model.train_function
        return function.inner if isinstance(function, StepTap) else function

    def disarm(self):
        if self.model.train_function is self:
            self.model.train_function = self.inner

    def __call__(self, *args):
        self.disarm()
        function = self.replacement or self.inner
        if self.keep_batch:
            # TensorFlow calls `train_function(iterator)`, JAX `train_function(state,
            # iterator)`; torch calls `train_function([batch])`.
            *head, data = args
            if keras.backend.backend() == "torch":
                self.batch = data[0]
            else:
                self.batch = next(data)
                args = (*head, itertools.chain([self.batch], data))
        result = function(*args)
        self.ran = True
        return result


def unpack_batch(batch):
    return keras.utils.unpack_x_y_sample_weight(batch)

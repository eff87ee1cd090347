"""The TensorFlow fast path of `GradientMonitor`: the train step's own gradients, with no
extra pass.

This is the one place where kfound changes Keras objects while `fit` runs, so every change
is scoped to a single call: Keras has no public seam that shows a callback the gradients
its optimizer applies. (Wrapping the optimizer the way `LossScaleOptimizer` wraps its
`inner_optimizer` would replace `model.optimizer` for the whole of `fit`, where other
callbacks, such as `LearningRateScheduler`, read and write it.)
"""

import functools
import math
import weakref

import keras
import numpy as np

from kfound.callbacks import gradient_pass, monitor
from kfound.callbacks.step_tap import StepTap


class TrainStepHook:
    """A second train function, traced with the optimizer's `apply` and `scale_loss`
    wrapped, that records the step's gradients as it trains.

    `GradientMonitor` runs it in place of Keras's own train function on sampled steps only
    (through a `StepTap`), so the other steps run Keras's function untouched. Its calls
    wrap the optimizer's `apply` (the inner optimizer's under loss scaling, so the
    gradients are unscaled) and `scale_loss` (to see the batch's loss) and always unwrap
    them in a `finally`, so the optimizer is patched only while the hooked step runs, an
    exception inside it included; TensorFlow traces the function inside such a call. The
    traced step writes the per-layer gradient, weight and update norms and the loss into
    `stats` (and, with `keep_grads`, copies the gradients for histograms); the monitor reads
    `3 * layers + 1` floats back. The hook is kept on the model (one attribute, a cache), so
    later monitors reuse the traced function until the model is compiled again.
    """

    ATTRIBUTE = "_kfound_train_step_hook"

    def __init__(self, model, keep_grads):
        self.model_ref = weakref.ref(model)
        self.keep_grads = keep_grads
        self.original = StepTap.keras_function(model)
        current = model.train_function
        try:
            model.make_train_function(force=True)
            self.function = model.train_function
        finally:
            model.train_function = current
        self.owner = None
        self.variables = None
        self.loss_known = False
        self._loss = None

    @classmethod
    def acquire(cls, model, keep_grads, owner):
        """The model's hook, reserved for `owner` (a monitor) for this `fit`, or `None`
        where it cannot serve: another backend, several replicas, or another monitor of
        the same `fit` holds it."""
        if (
            keras.backend.backend() != "tensorflow"
            or model.distribute_strategy.num_replicas_in_sync > 1
        ):
            return None
        hook = vars(model).get(cls.ATTRIBUTE)
        if hook is not None and hook.owner is not None:
            other, params = hook.owner
            if other is not owner and params is owner.params:
                return None  # another monitor of this same fit
        if hook is None or hook.original is not StepTap.keras_function(model) or (
            hook.keep_grads != keep_grads
        ):
            hook = cls(model, keep_grads)
            setattr(model, cls.ATTRIBUTE, hook)
        # `params` is one dict per `fit`, shared by its callbacks: it tells this `fit`'s
        # monitors from a later one's, whether or not this `fit` ends normally.
        hook.owner = (owner, owner.params)
        if model.built:
            hook._create_state(model, list(model.trainable_variables))
        hook.reset_snapshot()
        return hook

    def release(self, owner):
        if self.owner is not None and self.owner[0] is owner:
            self.owner = None

    def __call__(self, iterator):
        """One hooked training step: Keras's `train_function(iterator)`, recorded."""
        optimizer = self.model_ref().optimizer
        patched = []
        try:
            for owner, name, wrapper in (
                (optimizer, "scale_loss", self._scale_loss),
                (getattr(optimizer, "inner_optimizer", optimizer), "apply", self._apply),
            ):
                setattr(owner, name, functools.partial(wrapper, getattr(owner, name)))
                patched.append((owner, name))
            return self.function(iterator)
        finally:
            for owner, name in patched:
                delattr(owner, name)

    def reset_snapshot(self):
        if self.variables is not None:
            for old, variable in zip(self.snapshot, self.variables, strict=True):
                old.assign(variable.value)

    def read(self):
        """The last recorded stats (NumPy), per-layer gradients or `None`, and whether the
        loss was seen."""
        stats = self.stats.numpy().astype("float64")
        grads = None
        if self.keep_grads:
            grads = [
                np.concatenate([self.grads[k].numpy().ravel() for k in members])
                for members in self.members
            ]
        return stats, grads, self.loss_known

    # -- Traced into the train step -------------------------------------------------------

    def _scale_loss(self, scale_loss, loss):
        self._loss = loss
        return scale_loss(loss)

    def _apply(self, apply, grads, trainable_variables=None):
        import tensorflow as tf

        model = self.model_ref()
        grads = list(grads)
        variables = list(
            model.trainable_variables if trainable_variables is None else trainable_variables
        )
        self._create_state(model, variables)
        loss, self._loss = self._loss, None
        self.loss_known = loss is not None
        if loss is None:
            loss = tf.constant(math.nan)
        n = len(self.members)
        # Automatic control dependencies order these reads around the update.
        before = gradient_pass.layer_norms(
            gradient_pass.with_grads([v.value for v in variables], grads), self.index, n
        )
        result = apply(grads, trainable_variables)
        after = [v.value for v in variables]
        deltas = [a - old for a, old in zip(after, self.snapshot, strict=True)]
        self.stats.assign(tf.concat([
            gradient_pass.layer_norms(grads, self.index, n), before,
            gradient_pass.layer_norms(gradient_pass.with_grads(deltas, grads), self.index, n),
            tf.reshape(tf.cast(loss, "float32"), (1,)),
        ], axis=0))
        for old, a in zip(self.snapshot, after, strict=True):
            old.assign(a)
        if self.keep_grads:
            for copy, g in zip(self.grads, grads, strict=True):
                if g is not None:
                    copy.assign(tf.cast(g, "float32"))
        return result

    def _create_state(self, model, variables):
        import tensorflow as tf

        if self.variables is not None:
            return
        layers = monitor.trainable_layers(model)
        index, n = gradient_pass.layer_index(variables, layers), len(layers)
        with tf.init_scope():
            self.index = index
            self.members = [[k for k, i in enumerate(index) if i == layer] for layer in range(n)]
            self.snapshot = [
                tf.Variable(v.value, trainable=False, name="gradient_monitor_snapshot")
                for v in variables
            ]
            self.stats = tf.Variable(
                tf.zeros((3 * n + 1,), "float32"), trainable=False, name="gradient_monitor_stats"
            )
            self.grads = [
                tf.Variable(tf.zeros(v.shape, "float32"), trainable=False,
                            name="gradient_monitor_grad")
                for v in variables
            ] if self.keep_grads else []
            self.variables = variables


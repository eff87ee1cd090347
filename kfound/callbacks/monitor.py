"""The `Monitor` base class of the training-diagnostics callbacks, and what they share:
warning classes, argument checks, the probe batch and the `on_problem` policy."""

import os
import warnings

import keras
import numpy as np

ON_PROBLEM = ("warn", "stop", "raise")


class GradientWarning(UserWarning):
    """A finding of `GradientMonitor`: vanishing, exploding or non-finite gradients.

    With `on_problem="raise"` the monitor raises it as an exception, so one
    `except GradientWarning` (or a `warnings` filter) handles both modes.
    """


class ActivationWarning(UserWarning):
    """A finding of `ActivationMonitor`: dead ReLUs, saturated units or symmetric units."""


def check_every_n_batches(value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        expected = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(
            f"Argument `every_n_batches` must be {expected}. Received: every_n_batches={value!r}"
        )


def check_on_problem(value):
    if value not in ON_PROBLEM:
        raise ValueError(
            f"Argument `on_problem` must be one of {ON_PROBLEM}. Received: on_problem={value!r}"
        )


def check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"Argument `{name}` must be a positive number. Received: {name}={value!r}")


def trainable_layers(model):
    """The layers that own trainable weights, in forward order, nested models flattened."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(trainable_layers(layer))
        elif layer.trainable_weights:
            found.append(layer)
    if not found and model.trainable_weights:
        # A subclassed model that owns its weights directly.
        found.append(model)
    return found


def require_trainable_layers(model, callback_name):
    layers = trainable_layers(model)
    if not layers:
        raise ValueError(
            f"{callback_name} needs a model with at least one trainable layer, but model "
            f"'{model.name}' has no trainable weights. Received: model={model.name!r}"
        )
    return layers


def split_probe(probe_data, need_y):
    """Checks `probe_data` and returns `(x, y, sample_weight)` as backend tensors."""
    if probe_data is None:
        return None
    received = probe_data
    if _is_tf_dataset(probe_data):
        probe_data = next(iter(probe_data), None)
        if probe_data is None:
            raise ValueError(
                "Argument `probe_data` must hold at least one example, but the dataset is "
                "empty. Received: probe_data=<an empty tf.data.Dataset>"
            )
    if isinstance(probe_data, list):
        probe_data = tuple(probe_data)
    if not isinstance(probe_data, tuple):
        probe_data = (probe_data,)
    if not 1 <= len(probe_data) <= 3 or (need_y and len(probe_data) < 2):
        expected = "(x, y) or (x, y, sample_weight)" if need_y else "x, (x, y) or (x, y, w)"
        raise ValueError(
            f"Argument `probe_data` must be {expected}, as arrays or a tf.data.Dataset of "
            f"such batches. Received: probe_data={_describe(probe_data)}"
        )
    x, y, sample_weight = (tuple(probe_data) + (None, None))[:3]
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) and shape[0] == 0:
        # An empty batch has no statistics: every unit would look dead.
        raise ValueError(
            "Argument `probe_data` must hold at least one example. "
            f"Received: probe_data={_describe(received)}"
        )
    return tuple(
        None if t is None else keras.ops.convert_to_tensor(t) for t in (x, y, sample_weight)
    )


def check_probe_shape(model, x, argument="probe_data"):
    """Raises a ValueError when `x` cannot feed `model` (batch axis excluded)."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return
    expected = tuple(inputs[0].shape[1:])
    received = tuple(x.shape[1:])
    compatible = len(expected) == len(received) and all(
        e is None or e == r for e, r in zip(expected, received, strict=True)
    )
    if not compatible:
        raise ValueError(
            f"Argument `{argument}` must match the model's input shape "
            f"{(None,) + expected}. Received: {argument}=<x of shape {tuple(x.shape)}>"
        )


def _is_tf_dataset(value):
    return type(value).__module__.startswith("tensorflow") and hasattr(value, "element_spec")


def _describe(value):
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_describe(v) for v in value) + ")"
    shape = getattr(value, "shape", None)
    return f"<array of shape {tuple(shape)}>" if shape is not None else repr(value)


def sync_jax_state(model):
    """On JAX, fit keeps the weights outside the model; write them back before reading."""
    if keras.backend.backend() == "jax":
        model.jax_state_sync()


class RowLayout:
    """The layout of a monitor's sample rows, defined once.

    A row is `[step, epoch, *scalars, *blocks]`: the step and the epoch, one value per
    name in `scalars`, then one block of per-layer values per name in `blocks`, each block
    as long as the monitor has layers, in the order given.

    Args:
        blocks: the names of the per-layer blocks.
        scalars: the names of the one-value columns after `step` and `epoch`.
            Defaults to `()`.
    """

    def __init__(self, blocks, scalars=()):
        self.blocks = tuple(blocks)
        self.scalars = tuple(scalars)

    def row(self, step, epoch, scalars=(), blocks=()):
        """One row: `scalars` and `blocks` are the values in the order of their names."""
        return np.concatenate([[step, epoch, *scalars], *blocks])

    def scalar(self, name):
        """The column index of the scalar `name`."""
        return 2 + self.scalars.index(name)

    def block(self, name, n_layers):
        """The column slice of the block `name` in a row of a monitor of `n_layers`."""
        start = 2 + len(self.scalars) + self.blocks.index(name) * n_layers
        return slice(start, start + n_layers)

    def history(self, rows, layer_names):
        """The rows as a dict: `layers`, `step` and `epoch`, one `(samples,)` array per
        scalar, then one `(samples, layers)` array per block."""
        n = len(layer_names)
        width = 2 + len(self.scalars) + len(self.blocks) * n
        rows = np.asarray(rows, dtype="float64").reshape(-1, width)
        history = {
            "layers": list(layer_names),
            "step": rows[:, 0].astype("int64"),
            "epoch": rows[:, 1].astype("int64"),
        }
        for name in self.scalars:
            history[name] = rows[:, self.scalar(name)]
        for name in self.blocks:
            history[name] = rows[:, self.block(name, n)]
        return history


class Monitor(keras.callbacks.Callback):
    """The plumbing `GradientMonitor` and `ActivationMonitor` share.

    It checks and stores `every_n_batches`, `on_problem` and `verbose`, keeps the findings
    (`problems`) and the raw samples (one row per sample, laid out by `row_layout`), and
    turns those rows into the `history` dict. Subclasses set `warning_category` and
    `row_layout`.
    """

    warning_category = UserWarning
    row_layout = None

    def __init__(self, every_n_batches, on_problem, verbose, allow_none=False):
        check_every_n_batches(every_n_batches, allow_none=allow_none)
        check_on_problem(on_problem)
        super().__init__()
        self.every_n_batches = every_n_batches
        self.on_problem = on_problem
        self.verbose = verbose
        self._reporter = Reporter(self, self.warning_category)
        self._rows = []
        self._layer_names = []

    def _release(self):
        """Undoes what the monitor changed and closes what it opened. Runs at `on_train_end`
        and before the monitor raises; subclasses extend it."""

    @property
    def problems(self):
        return self._reporter.problems

    def _reset(self):
        """Forgets the previous `fit`: call from `on_train_begin`."""
        self._rows = []
        self._reporter.reset()
        self._step = 0

    @property
    def history(self):
        """The rows as a dict of NumPy arrays: see `RowLayout.history`."""
        return self.row_layout.history(self._rows, self._layer_names)

    def _history_to_plot(self, path):
        """`history`, or a ValueError when there is nothing to plot yet."""
        history = self.history
        if not len(history["step"]):
            raise ValueError(
                f"{type(self).__name__}.plot needs at least one sample; call `fit` first. "
                f"Received: path={os.fspath(path)!r} with an empty history"
            )
        return history


def layer_colours(n):
    """One colour per layer, first layers in the coolest (viridis)."""
    from matplotlib import cm

    return cm.viridis(np.linspace(0, 0.9, n))


class Reporter:
    """Issues each kind of finding once per `fit`, then applies the `on_problem` policy."""

    def __init__(self, callback, category):
        self.callback = callback
        self.category = category
        self.problems = []
        self._seen = set()

    def reset(self):
        self.problems = []
        self._seen = set()

    def report(self, kind, message, **details):
        if kind in self._seen:
            return
        self._seen.add(kind)
        self.problems.append({"kind": kind, "message": message, **details})
        policy = self.callback.on_problem
        if policy == "raise":
            # Keras's `fit` has no `finally`: leave everything as it was before raising.
            self.callback._release()
            raise self.category(message)
        warnings.warn(message, self.category, stacklevel=3)
        if policy == "stop":
            self.callback.model.stop_training = True

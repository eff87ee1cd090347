"""ActivationMonitor: per-layer activation statistics on a probe batch, and what they say
is wrong."""

import weakref

import keras
import numpy as np

from kfound import io_utils
from kfound.callbacks import monitor
from kfound.callbacks.monitor import ActivationWarning
from kfound.callbacks.step_tap import StepTap, unpack_batch

_STATS = ("mean", "std", "dead_fraction", "saturated_fraction", "symmetric_fraction", "drift")

_CAUSES = {
    "dead_relu": (
        "ReLU units whose input stays negative get zero gradient and stop learning "
        "(Maas et al. 2013, \"Rectifier nonlinearities improve neural network acoustic "
        "models\"). Likely causes: a learning rate too large, a large negative "
        "bias, an initialization too small or too large. Try a lower learning rate, He "
        "initialization or LeakyReLU."
    ),
    "saturated": (
        "Saturated sigmoid/tanh units pass almost no gradient back (Glorot and Bengio 2010, "
        "\"Understanding the difficulty of training deep feedforward neural networks\"). "
        "Likely causes: unnormalized inputs, weights too large, a deep stack of saturating "
        "activations. Normalize the inputs, use Glorot initialization, add "
        "BatchNormalization or use ReLU."
    ),
    "symmetric": (
        "Units with identical incoming weights compute identical outputs and receive "
        "identical updates, so they never become different: the layer behaves as one unit "
        "(the textbook chapter's weight initialization, \"all initialized to the same "
        "value\"). Cause: a constant (for example all-zero) initialization. Use a random "
        "initializer such as Glorot or He."
    ),
}


class ActivationMonitor(monitor.Monitor):
    """Records per-layer activation statistics on a probe batch and diagnoses what is wrong.

    At the end of each epoch (and every `every_n_batches` batches if set) the monitor runs
    the probe batch through the model once, reading every layer's input and output from
    one compiled model built once, and records per layer:

    - `mean` and `std` of the layer's outputs;
    - `dead_fraction` (ReLU layers): the share of units (last axis) that output zero for
      every probe example and position;
    - `saturated_fraction` (sigmoid/tanh layers): the share of outputs whose derivative is
      below `saturation_threshold` times the activation's largest derivative (sigmoid:
      `4 a (1 - a)`, tanh: `1 - a**2`; the default `0.1` means `|a - 0.5| > 0.48` for
      sigmoid, `|a| > 0.95` for tanh);
    - `symmetric_fraction` (layers with a `kernel`): the share of units that have a twin,
      another unit of the layer with the same incoming weights, bias and outputs on the
      probe, up to `symmetry_tolerance` (the constant-initialization trap);
    - `drift` (internal covariate shift, Ioffe and Szegedy 2015): how far the distribution
      of the layer's input moved since the previous epoch end: the root-mean-square over
      input units of the shift of each unit's mean, divided by the spread of all the
      layer's input values (`sqrt((var_t + var_{t-1}) / 2)`), so in standard deviations of
      the input. It is recorded at epoch ends (`nan` elsewhere and in the first epoch); a
      fixed probe makes it measure the network, not the data. Per-unit standardization was
      rejected: a saturated or dead unit has almost no spread and would dominate the mean.

    Dead, saturated and symmetric layers are reported once per `fit` as an
    `ActivationWarning` naming the layers, the numbers and the likely causes.

    Args:
        probe_data: the probe batch: `x`, `(x, y)` or `(x, y, sample_weight)` arrays, or a
            `tf.data.Dataset` whose first batch is used. `None` (default) fixes the first
            training batch of each `fit` as the probe.
        every_n_batches: also sample every this many batches. `None` (default) samples at
            epoch ends only.
        dead_fraction: warn when a ReLU layer's share of dead units exceeds this.
            Defaults to `0.5`.
        saturation_threshold: the relative derivative below which a sigmoid/tanh output is
            saturated. Defaults to `0.1`.
        saturated_fraction: warn when a sigmoid/tanh layer's share of saturated outputs
            exceeds this. Defaults to `0.5`.
        symmetric_fraction: warn when a layer's share of symmetric units exceeds this.
            Defaults to `0.0` (any symmetric unit).
        symmetry_tolerance: values closer than this times the largest absolute value of the
            layer's weights and outputs count as identical. Defaults to `1e-6`.
        on_problem: `"warn"` (default) issues an `ActivationWarning`; `"stop"` also sets
            `model.stop_training = True`; `"raise"` raises the `ActivationWarning`.
        verbose: `1` prints one line per epoch. Defaults to `0`.

    Attributes:
        history: a dict with `layers` (names), `step` and `epoch` `(samples,)`, and one
            `(samples, layers)` array per statistic above.
        problems: the findings of the last `fit`: dicts with `kind` (`"dead_relu"`,
            `"saturated"` or `"symmetric"`), `layer`, `value`, `message`, `epoch`.

    Example:

    >>> (x, y), _ = kfound.data.load_digits(images=False)
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, "relu"),
    ...                           keras.layers.Dense(10, "softmax")])
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> monitor = ActivationMonitor(probe_data=x[:256])
    >>> _ = model.fit(x, y, epochs=2, callbacks=[monitor], verbose=0)
    >>> monitor.history["dead_fraction"].shape
    (2, 2)

    Reference:
        Ioffe and Szegedy, [Batch Normalization: Accelerating Deep Network Training by
        Reducing Internal Covariate Shift](https://arxiv.org/abs/1502.03167), ICML 2015.
    """

    warning_category = ActivationWarning
    row_layout = monitor.RowLayout(_STATS)

    def __init__(
        self,
        probe_data=None,
        every_n_batches=None,
        dead_fraction=0.5,
        saturation_threshold=0.1,
        saturated_fraction=0.5,
        symmetric_fraction=0.0,
        symmetry_tolerance=1e-6,
        on_problem="warn",
        verbose=0,
    ):
        for name, value in (
            ("dead_fraction", dead_fraction), ("saturated_fraction", saturated_fraction),
            ("symmetric_fraction", symmetric_fraction),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 <= value < 1
            ):
                raise ValueError(
                    f"Argument `{name}` must be a number in [0, 1). Received: {name}={value!r}"
                )
        monitor.check_positive("saturation_threshold", saturation_threshold)
        monitor.check_positive("symmetry_tolerance", symmetry_tolerance)
        super().__init__(every_n_batches, on_problem, verbose, allow_none=True)
        self.probe_data = probe_data
        self.dead_fraction = dead_fraction
        self.saturation_threshold = saturation_threshold
        self.saturated_fraction = saturated_fraction
        self.symmetric_fraction = symmetric_fraction
        self.symmetry_tolerance = symmetry_tolerance
        self._probe = monitor.split_probe(probe_data, need_y=False)
        self._tap = None

    # -- Callback hooks -------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        model = self.model
        if not getattr(model, "inputs", None):
            raise ValueError(
                "ActivationMonitor reads layer outputs through the model's graph and needs "
                "a built functional or Sequential model. "
                f"Received: model={model.name!r} of type {type(model).__name__}"
            )
        monitor.require_trainable_layers(model, "ActivationMonitor")
        if self._probe is not None:
            monitor.check_probe_shape(model, self._probe[0])
        self._build_probe_model(model)
        self._reset()
        self._previous_inputs = [None] * len(self._layers)
        self._x = None if self._probe is None else self._probe[0]
        self._release()
        StepTap.clear(model)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._x is None and self._tap is None:
            self._tap = StepTap.arm(self.model, keep_batch=True)

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._tap is not None:
            self._x = unpack_batch(self._tap.batch)[0]
            self._release()
        if self.every_n_batches and self._step % self.every_n_batches == 0:
            self._sample(epoch_end=False)

    def on_epoch_end(self, epoch, logs=None):
        if self._x is None:
            return
        stats = self._sample(epoch_end=True)
        if self.verbose:
            worst = {k: float(np.nanmax(stats[k], initial=0.0)) for k in _STATS[2:]}
            print(
                f"ActivationMonitor epoch {epoch + 1}: max dead {worst['dead_fraction']:.2f}, "
                f"saturated {worst['saturated_fraction']:.2f}, symmetric "
                f"{worst['symmetric_fraction']:.2f}, drift {worst['drift']:.3g}"
            )

    def on_train_end(self, logs=None):
        self._release()

    def _release(self):
        if self._tap is not None:
            self._tap.disarm()
            self._tap = None

    # -- Sampling -------------------------------------------------------------------------

    def _build_probe_model(self, model):
        self._layers = [
            layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
        ]
        self._layer_names = [layer.name for layer in self._layers]
        self._kinds = [_activation_kind(layer) for layer in self._layers]
        cached = _PROBE_MODELS.get(model)
        if cached is None or cached[0] != self._layer_names:
            cached = _PROBE_MODELS[model] = (self._layer_names, *_probe_model(model, self._layers))
        _, self._probe_model, self._output_slots, self._input_slots = cached

    def _sample(self, epoch_end):
        monitor.sync_jax_state(self.model)
        values = self._probe_model.predict_on_batch(self._x)
        values = [np.asarray(v, dtype="float32") for v in values]
        stats = {name: np.full(len(self._layers), np.nan) for name in _STATS}
        for i, layer in enumerate(self._layers):
            output = values[self._output_slots[i]]
            units = output.reshape(-1, output.shape[-1]) if output.ndim > 1 else output[:, None]
            stats["mean"][i] = units.mean(dtype="float64")
            stats["std"][i] = units.std(dtype="float64")
            if self._kinds[i] == "relu":
                stats["dead_fraction"][i] = np.mean(np.all(units <= 0, axis=0))
            elif self._kinds[i] in ("sigmoid", "tanh"):
                slope = 4 * units * (1 - units) if self._kinds[i] == "sigmoid" else 1 - units**2
                stats["saturated_fraction"][i] = np.mean(slope < self.saturation_threshold)
            stats["symmetric_fraction"][i] = self._symmetric_fraction(layer, units)
            if epoch_end:
                stats["drift"][i] = self._drift(i, values)
        self._rows.append(
            self.row_layout.row(self._step, self._epoch, blocks=[stats[k] for k in _STATS])
        )
        self._diagnose(stats)
        return stats

    def _symmetric_fraction(self, layer, units):
        kernel = getattr(layer, "kernel", None)
        if kernel is None or kernel.shape[-1] < 2:
            return np.nan
        n_units = kernel.shape[-1]
        parts = [kernel.numpy().reshape(-1, n_units)]
        bias = getattr(layer, "bias", None)
        if bias is not None:
            parts.append(bias.numpy().reshape(1, n_units))
        weights = np.concatenate(parts).astype("float64").T
        # Units are twins when their incoming weights agree; their outputs on the probe are
        # then compared too (a shared weight vector after, say, a gather layer may not be).
        twins = self._groups(weights)
        if units.shape[-1] == n_units:
            twins &= self._groups(units.T.astype("float64"))
        return float(np.mean(twins))

    def _groups(self, rows):
        """For each row, whether another row equals it up to `symmetry_tolerance`."""
        scale = np.max(np.abs(rows), initial=0.0)
        if not np.isfinite(scale):
            return np.zeros(len(rows), bool)
        quantized = np.round(rows / max(scale * self.symmetry_tolerance, np.finfo("float64").tiny))
        keys = [row.tobytes() for row in quantized]
        counts = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        return np.array([counts[key] > 1 for key in keys])

    def _drift(self, i, values):
        if self._input_slots[i] is None:
            return np.nan
        x = values[self._input_slots[i]]
        x = (x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x[:, None]).astype("float64")
        current = (x.mean(axis=0), x.var(axis=0), x.var())
        previous, self._previous_inputs[i] = self._previous_inputs[i], current
        if previous is None:
            return np.nan
        shift = np.sqrt(np.mean((current[0] - previous[0]) ** 2))
        scale = np.sqrt((current[2] + previous[2]) / 2)
        return float(shift / max(scale, np.finfo("float32").eps))

    def _diagnose(self, stats):
        checks = (
            ("dead_relu", "dead_fraction", self.dead_fraction, "of its ReLU units dead"),
            ("saturated", "saturated_fraction", self.saturated_fraction,
             "of its outputs saturated"),
            ("symmetric", "symmetric_fraction", self.symmetric_fraction,
             "of its units symmetric (a twin with identical weights and outputs)"),
        )
        for kind, stat, threshold, what in checks:
            values = stats[stat]
            flagged = [
                (name, value) for name, value in zip(self._layer_names, values, strict=True)
                if value > threshold
            ]
            if not flagged:
                continue
            listed = ", ".join(f"'{name}' ({value:.0%})" for name, value in flagged)
            message = (
                f"At epoch {self._epoch + 1}, step {self._step}: {listed} "
                f"{'has' if len(flagged) == 1 else 'have'} more than {threshold:.0%} {what} "
                f"on the probe batch ({stat} threshold {threshold:g}). {_CAUSES[kind]}"
            )
            self._reporter.report(
                kind, message, layer=flagged[0][0], layers=[n for n, _ in flagged],
                value=float(flagged[0][1]), epoch=self._epoch, step=self._step,
            )

    # -- Plot -----------------------------------------------------------------------------

    def plot(self, path):
        """Writes a PNG of each statistic, one line per layer, over training steps.

        Args:
            path: the PNG file to write (atomically).

        Returns:
            `path`.
        """
        from matplotlib.figure import Figure

        history = self._history_to_plot(path)
        figure = Figure(figsize=(12, 6.5), layout="constrained")
        grid = figure.subplots(2, 3, sharex=True)
        colours = monitor.layer_colours(len(history["layers"]))
        for axes, stat in zip(grid.flat, _STATS, strict=True):
            for i, name in enumerate(history["layers"]):
                series = history[stat][:, i]
                if np.any(np.isfinite(series)):
                    axes.plot(history["step"], series, ".-", color=colours[i], label=name)
            axes.set_title(stat.replace("_", " "))
            axes.set_xlabel("training step")
        grid.flat[0].legend(fontsize="x-small", ncol=2)
        figure.suptitle("Per-layer activation statistics on the probe batch")
        io_utils.save_figure(figure, path, dpi=100)
        return path


# One probe model per model, shared by later monitors of it, so that a fresh monitor per
# `fit` does not build and trace it again. It holds the layers, not the model.
_PROBE_MODELS = weakref.WeakKeyDictionary()


def _probe_model(model, layers):
    """A model from the inputs to every layer's input and output, each tensor once."""
    tensors, slots = [], {}

    def slot(tensor):
        if id(tensor) not in slots:
            slots[id(tensor)] = len(tensors)
            tensors.append(tensor)
        return slots[id(tensor)]

    output_slots = [slot(layer.output) for layer in layers]
    input_slots = [
        slot(layer.input) if not isinstance(layer.input, (list, tuple, dict)) else None
        for layer in layers
    ]
    probe = keras.Model(model.inputs, tensors, name=f"{model.name}_probe")
    return probe, output_slots, input_slots


def _activation_kind(layer):
    if isinstance(layer, keras.layers.ReLU):
        return "relu" if not layer.negative_slope else None
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "")
    return name if name in ("relu", "sigmoid", "tanh") else None

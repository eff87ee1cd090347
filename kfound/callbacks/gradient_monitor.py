import math
import os
import weakref

import keras
import numpy as np

from kfound import io_utils
from kfound.callbacks import diagnostics
from kfound.callbacks.diagnostics import GradientWarning

_CAUSES = {
    "vanishing": (
        "Likely causes (seed §3.1.5, §3.4.6, §3.4.11): saturating activations (sigmoid, tanh) "
        "whose derivatives are at most 0.25 and 1; an initialization that shrinks the signal "
        "(use He init for ReLU, Glorot for tanh); a learning rate too small; a network too "
        "deep for its activations (add BatchNormalization or residual connections)."
    ),
    "exploding": (
        "Likely causes (seed §3.1.5): a learning rate too large; an initialization with "
        "weights too large; a deep or recurrent network whose layer Jacobians multiply up. "
        "Lower the learning rate, clip gradients (`clipnorm=`) or add normalization."
    ),
    "non_finite": (
        "Likely causes (seed §3.1.5): exploding gradients that overflowed (a learning rate "
        "too large, weights too large for the depth); a log or division of zero in the loss; "
        "float16 overflow without loss scaling."
    ),
}


class GradientMonitor(keras.callbacks.Callback):
    """Records per-layer gradient norms during `fit` and diagnoses what is wrong.

    Every `every_n_batches` batches (and at least once per epoch) the monitor computes,
    with the backend's own autodiff, the L2 norm of the gradient of each layer's trainable
    weights, together with each layer's update-to-weight ratio
    `||w_t - w_s|| / ||w_t||` between this sample `t` and the previous one `s` (or the
    start of `fit`): the size of what the optimizer did to the layer over
    `every_n_batches` steps, relative to the layer; per step when `every_n_batches=1`.
    It then diagnoses:

    - vanishing gradients: over an epoch, the first trainable layer's mean norm is below
      `vanishing_ratio` times the last layer's, or some layer's is below `vanishing_norm`
      (the seed's "learning speed of hidden layers", §3.1.5);
    - exploding gradients: a layer's epoch-mean norm is above `exploding_norm`, or grew
      more than `growth_factor` times since the previous epoch;
    - non-finite gradients or loss: it names the first layer, in forward order, whose
      gradient went NaN or Inf.

    Each finding is issued once per `fit` as a `GradientWarning` naming the layers, the
    numbers and the likely causes; `on_problem` says what happens next.

    **Which batch.** Keras does not hand the batch to callbacks. With `probe_data=None`,
    for each step that will be sampled (and the first step of each epoch) the monitor wraps
    `model.train_function` to keep a reference to the batch being trained on (no copy, no
    host sync), and measures the gradient of that batch at the weights right after its
    update. A sample at the end of an epoch without one uses the epoch's first batch.
    With `probe_data`, it measures a fixed batch instead, which makes samples comparable
    across training.

    **Cost.** On batches that are not sampled, the monitor does a counter increment. A
    sample runs one compiled forward and backward pass (compiled once per model and shared
    by later monitors of it; BatchNorm statistics and metrics are left untouched) and reads
    back `3 * layers + 1` floats. The update ratio keeps one device copy of the trainable
    weights, per model.

    The epoch logs get `grad_norm/<layer name>`: the mean over the epoch's samples. Put the
    monitor before `CSVLogger` in `callbacks=` so the logger sees these keys (`History`
    always does). `history` keeps every raw sample.

    Args:
        every_n_batches: sample every this many training batches. Defaults to `50`.
        probe_data: `None` (default) to use the current training batch, or a fixed batch
            `(x, y)` / `(x, y, sample_weight)` of arrays, or a `tf.data.Dataset` whose
            first batch is used.
        vanishing_ratio: the first/last layer norm ratio below which gradients are said to
            vanish. Defaults to `1e-3`.
        vanishing_norm: the norm below which any layer's gradient is said to vanish.
            Defaults to `1e-7`.
        exploding_norm: the norm above which a layer's gradient is said to explode.
            Defaults to `1e3`.
        growth_factor: the epoch-over-epoch growth of a layer's mean norm above which
            gradients are said to explode. Defaults to `100.0`.
        on_problem: `"warn"` (default) issues a `GradientWarning`; `"stop"` also sets
            `model.stop_training = True`; `"raise"` raises the `GradientWarning`.
        log_dir: if given, a folder where TensorBoard scalars (norms, ratios) and
            histograms (per-layer gradient values) are written at each sample.
            Requires the `tensorboard` package. Defaults to `None`.
        verbose: `1` prints one line per epoch with the first/last norm ratio.
            Defaults to `0`.

    Attributes:
        history: a dict of NumPy arrays: `step` and `epoch` `(samples,)`, `loss`
            `(samples,)`, `grad_norm` and `update_ratio` `(samples, layers)`, and
            `layers`, the layer names in forward order.
        problems: the findings of the last `fit`, a list of dicts with `kind`
            (`"vanishing"`, `"exploding"` or `"non_finite"`), `message`, `epoch` and more.

    Example:

    >>> (x, y), _ = kfound.datasets.load_digits(images=False)
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, "sigmoid"),
    ...                           keras.layers.Dense(10, "softmax")])
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> monitor = GradientMonitor(every_n_batches=10)
    >>> _ = model.fit(x, y, epochs=2, callbacks=[monitor], verbose=0)
    >>> monitor.history["grad_norm"].shape[1]
    2

    Reference:
        Glorot and Bengio, [Understanding the difficulty of training deep feedforward
        neural networks](https://proceedings.mlr.press/v9/glorot10a.html), AISTATS 2010.
    """

    def __init__(
        self,
        every_n_batches=50,
        probe_data=None,
        vanishing_ratio=1e-3,
        vanishing_norm=1e-7,
        exploding_norm=1e3,
        growth_factor=100.0,
        on_problem="warn",
        log_dir=None,
        verbose=0,
    ):
        if keras.backend.backend() not in ("tensorflow", "jax"):
            raise ValueError(
                "GradientMonitor computes gradients with the backend's autodiff and supports "
                "the TensorFlow and JAX backends. "
                f"Received: backend={keras.backend.backend()!r}"
            )
        diagnostics.check_every_n_batches(every_n_batches)
        diagnostics.check_on_problem(on_problem)
        for name, value in (
            ("vanishing_ratio", vanishing_ratio), ("vanishing_norm", vanishing_norm),
            ("exploding_norm", exploding_norm), ("growth_factor", growth_factor),
        ):
            diagnostics.check_positive(name, value)
        if log_dir is not None:
            try:
                import tensorboard  # noqa: F401
            except ImportError as error:
                raise ImportError(
                    "Argument `log_dir` needs the `tensorboard` package "
                    "(`pip install tensorboard`). Received: log_dir=" + repr(log_dir)
                ) from error
        super().__init__()
        self.every_n_batches = int(every_n_batches)
        self.probe_data = probe_data
        self.vanishing_ratio = vanishing_ratio
        self.vanishing_norm = vanishing_norm
        self.exploding_norm = exploding_norm
        self.growth_factor = growth_factor
        self.on_problem = on_problem
        self.log_dir = log_dir
        self.verbose = verbose
        self._probe = diagnostics.split_probe(probe_data, need_y=True)
        self._reporter = diagnostics.Reporter(self, GradientWarning)
        self._rows = []
        self._layer_names = []

    @property
    def problems(self):
        return self._reporter.problems

    @property
    def history(self):
        n = len(self._layer_names)
        rows = np.asarray(self._rows, dtype="float64").reshape(-1, 3 + 2 * n)
        return {
            "layers": list(self._layer_names),
            "step": rows[:, 0].astype("int64"),
            "epoch": rows[:, 1].astype("int64"),
            "loss": rows[:, 2],
            "grad_norm": rows[:, 3:3 + n],
            "update_ratio": rows[:, 3 + n:],
        }

    # -- Callback hooks -------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if self._probe is not None:
            diagnostics.check_probe_shape(self.model, self._probe[0])
        self._rows = []
        self._reporter.reset()
        self._step = 0
        self._previous_epoch_mean = None
        self._layers = None
        if self.model.built:
            self._resolve_layers()
        self._tap = None
        self._batch = None
        self._epoch_has_batch = False
        self._writer = None
        if self.log_dir is not None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(os.fspath(self.log_dir))

    def _resolve_layers(self):
        # A subclassed model is built by its first training step: then this runs at the
        # first sample, and the first update ratio is nan (no weights from before).
        self._layers = diagnostics.require_trainable_layers(self.model, "GradientMonitor")
        self._layer_names = [layer.name for layer in self._layers]
        self._stats_fn = _stats_fn(self.model, self._layers)
        diagnostics.sync_jax_state(self.model)
        self._stats_fn.reset_snapshot()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_rows = len(self._rows)
        self._epoch_has_batch = False

    def on_train_batch_begin(self, batch, logs=None):
        # Tap the batch only for steps that will be sampled, and for the first step of each
        # epoch (the epoch-end sample needs one); other steps run Keras's own path untouched.
        if self._probe is None and (
            (self._step + 1) % self.every_n_batches == 0 or not self._epoch_has_batch
        ):
            self._tap = diagnostics.BatchTap.attach(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._tap is not None:
            self._batch = self._tap.batch
            self._epoch_has_batch = True
            self._release_tap()
        if self._step % self.every_n_batches == 0:
            self._sample()

    def on_epoch_end(self, epoch, logs=None):
        if len(self._rows) == self._epoch_rows:
            self._sample()
        if len(self._rows) == self._epoch_rows:
            return
        n = len(self._layer_names)
        epoch_norms = np.asarray(self._rows[self._epoch_rows:])[:, 3:3 + n]
        mean = epoch_norms.mean(axis=0)
        if logs is not None:
            for name, value in zip(self._layer_names, mean, strict=True):
                logs[f"grad_norm/{name}"] = float(value)
            loss = logs.get("loss")
            if loss is not None and not math.isfinite(loss):
                self._report_non_finite(epoch_norms[-1], None, float(loss))
        if np.all(np.isfinite(mean)):
            self._diagnose_epoch(mean)
        self._previous_epoch_mean = mean
        if self.verbose:
            print(
                f"GradientMonitor epoch {epoch + 1}: grad norm first/last layer = "
                f"{mean[0]:.3g}/{mean[-1]:.3g} (ratio {_ratio(mean[0], mean[-1]):.3g})"
            )

    def on_train_end(self, logs=None):
        self._release_tap()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- Sampling -------------------------------------------------------------------------

    def _release_tap(self):
        if self._tap is not None:
            self._tap.detach()
            self._tap = None

    def _sample(self):
        if self._probe is not None:
            x, y, sample_weight = self._probe
        elif self._batch is not None:
            x, y, sample_weight = diagnostics.unpack_batch(self._batch)
        else:
            return
        first = self._layers is None
        if first:
            self._resolve_layers()
        diagnostics.sync_jax_state(self.model)
        stats, grads = self._stats_fn(x, y, sample_weight, self._writer is not None)
        stats = keras.ops.convert_to_numpy(stats).astype("float64")
        n = len(self._layer_names)
        grad_norm, weight_norm, delta_norm, loss = (
            stats[:n], stats[n:2 * n], stats[2 * n:3 * n], stats[3 * n]
        )
        update_ratio = delta_norm / np.maximum(weight_norm, np.finfo("float32").tiny)
        if first:
            update_ratio[:] = np.nan
        self._rows.append(
            np.concatenate([[self._step, self._epoch, loss], grad_norm, update_ratio])
        )
        if self._writer is not None:
            self._write_summaries(grad_norm, update_ratio, loss, grads)
        if not (np.all(np.isfinite(grad_norm)) and math.isfinite(loss)):
            self._report_non_finite(grad_norm, weight_norm, loss)

    def _write_summaries(self, grad_norm, update_ratio, loss, grads):
        import tensorflow as tf

        with self._writer.as_default(step=self._step):
            tf.summary.scalar("gradient_monitor/loss", loss)
            for i, name in enumerate(self._layer_names):
                tf.summary.scalar(f"grad_norm/{name}", grad_norm[i])
                tf.summary.scalar(f"update_ratio/{name}", update_ratio[i])
                tf.summary.histogram(f"gradients/{name}", keras.ops.convert_to_numpy(grads[i]))
        self._writer.flush()

    # -- Diagnoses ------------------------------------------------------------------------

    def _report_non_finite(self, grad_norm, weight_norm, loss):
        bad = [name for name, g in zip(self._layer_names, grad_norm, strict=True)
               if not math.isfinite(g)]
        where = f"epoch {self._epoch + 1}, step {self._step}"
        if bad:
            first = bad[0]
            value = grad_norm[self._layer_names.index(first)]
            message = (
                f"Non-finite gradients at {where}: layer '{first}' is the first, in forward "
                f"order, whose gradient norm is {value} (loss={loss:.4g}; all layers with "
                f"non-finite gradients: {bad})."
            )
        else:
            first = None
            message = f"Non-finite loss at {where}: loss={loss:.4g}."
        if weight_norm is not None:
            broken = [name for name, w in zip(self._layer_names, weight_norm, strict=True)
                      if not math.isfinite(w)]
            if broken:
                message += f" Weights already non-finite in: {broken}."
        self._reporter.report(
            "non_finite", f"{message} {_CAUSES['non_finite']}",
            layer=first, epoch=self._epoch, step=self._step, loss=float(loss),
        )

    def _diagnose_epoch(self, mean):
        names = self._layer_names
        ratio = _ratio(mean[0], mean[-1])
        tiny = [(n, g) for n, g in zip(names, mean, strict=True) if g < self.vanishing_norm]
        if len(names) > 1 and ratio < self.vanishing_ratio:
            self._report(
                "vanishing",
                f"Vanishing gradients in epoch {self._epoch + 1}: the first trainable layer "
                f"'{names[0]}' has mean gradient norm {mean[0]:.3g}, {ratio:.3g} times the "
                f"last layer '{names[-1]}' ({mean[-1]:.3g}); threshold vanishing_ratio="
                f"{self.vanishing_ratio:g}. The first layers learn far slower than the last.",
                layer=names[0], ratio=ratio,
            )
        elif tiny:
            listed = ", ".join(f"'{n}' ({g:.3g})" for n, g in tiny)
            self._report(
                "vanishing",
                f"Vanishing gradients in epoch {self._epoch + 1}: mean gradient norm below "
                f"vanishing_norm={self.vanishing_norm:g} in {listed}.",
                layer=tiny[0][0], ratio=ratio,
            )
        huge = [(n, g) for n, g in zip(names, mean, strict=True) if g > self.exploding_norm]
        if huge:
            listed = ", ".join(f"'{n}' ({g:.3g})" for n, g in huge)
            self._report(
                "exploding",
                f"Exploding gradients in epoch {self._epoch + 1}: mean gradient norm above "
                f"exploding_norm={self.exploding_norm:g} in {listed}.",
                layer=huge[0][0],
            )
        elif self._previous_epoch_mean is not None:
            growth = mean / np.maximum(self._previous_epoch_mean, np.finfo("float32").tiny)
            grown = [(n, g) for n, g in zip(names, growth, strict=True) if g > self.growth_factor]
            if grown:
                listed = ", ".join(f"'{n}' (x{g:.3g})" for n, g in grown)
                self._report(
                    "exploding",
                    f"Exploding gradients in epoch {self._epoch + 1}: mean gradient norm grew "
                    f"more than growth_factor={self.growth_factor:g} times since the previous "
                    f"epoch in {listed}.",
                    layer=grown[0][0],
                )

    def _report(self, kind, message, **details):
        self._reporter.report(
            kind, f"{message} {_CAUSES[kind]}", epoch=self._epoch, step=self._step, **details
        )

    # -- Plot -----------------------------------------------------------------------------

    def plot(self, path):
        """Writes a PNG of per-layer gradient norms over training steps (log scale).

        One line per layer, first layers in the coolest colours: the seed's "learning
        speed of hidden layers" figure (§3.1.5). Written atomically.

        Args:
            path: the PNG file to write.

        Returns:
            `path`.
        """
        from matplotlib import cm
        from matplotlib.figure import Figure

        history = self.history
        if not len(history["step"]):
            raise ValueError(
                "GradientMonitor.plot needs at least one sample; call `fit` first. "
                f"Received: path={os.fspath(path)!r} with an empty history"
            )
        figure = Figure(figsize=(7, 4.5), layout="constrained")
        axes = figure.add_subplot()
        colours = cm.viridis(np.linspace(0, 0.9, len(history["layers"])))
        for i, name in enumerate(history["layers"]):
            norms = history["grad_norm"][:, i]
            axes.plot(history["step"], np.where(norms > 0, norms, np.nan),
                      color=colours[i], label=name)
        axes.set_yscale("log")
        axes.set_xlabel("training step")
        axes.set_ylabel("gradient L2 norm")
        axes.set_title("Per-layer gradient norms (learning speed of each layer)")
        axes.legend(fontsize="small", ncol=2)
        io_utils.save_figure(figure, path, dpi=100)
        return path


def _ratio(first, last):
    return float(first / last) if last > 0 else math.inf


def _layer_index(model, layers):
    owner = {}
    for i, layer in enumerate(layers):
        for variable in layer.trainable_weights:
            owner.setdefault(id(variable), i)
    return [owner.get(id(v)) for v in model.trainable_variables]


def _stats(values, grads, snapshot, loss, index, n_layers):
    """Per-layer gradient, weight and update norms and the loss, as one float32 vector."""
    ops = keras.ops
    per_layer = [[ops.zeros((), "float32")] * 3 for _ in range(n_layers)]
    for value, grad, old, i in zip(values, grads, snapshot, index, strict=True):
        if i is None or grad is None:
            continue
        value = ops.cast(value, "float32")
        parts = (ops.cast(grad, "float32"), value, value - ops.cast(old, "float32"))
        for k, part in enumerate(parts):
            per_layer[i][k] = per_layer[i][k] + ops.sum(ops.square(part))
    norms = [ops.sqrt(ops.stack([sums[k] for sums in per_layer])) for k in range(3)]
    return ops.concatenate(norms + [ops.reshape(ops.cast(loss, "float32"), (1,))])


def _layer_grads(grads, index, n_layers):
    ops = keras.ops
    flat = [[] for _ in range(n_layers)]
    for grad, i in zip(grads, index, strict=True):
        if i is not None and grad is not None:
            flat[i].append(ops.reshape(ops.cast(grad, "float32"), (-1,)))
    return [ops.concatenate(parts) for parts in flat]


def _loss_fn(model_ref):
    def loss_fn(trainable, non_trainable, metrics, x, y, sample_weight):
        model = model_ref()
        kwargs = {"training": True} if model._call_has_training_arg else {}
        y_pred, non_trainable = model.stateless_call(trainable, non_trainable, x, **kwargs)
        loss, _ = model.stateless_compute_loss(
            trainable, non_trainable, metrics, x=x, y=y, y_pred=y_pred,
            sample_weight=sample_weight, training=True,
        )
        return loss

    return loss_fn


# One compiled function per model, shared by every monitor of that model, so a fresh monitor
# per `fit` does not retrace. The functions hold the model weakly, so the cache frees it.
_STATS_FNS = weakref.WeakKeyDictionary()


def _stats_fn(model, layers):
    index = _layer_index(model, layers)
    signature = (tuple(id(v) for v in model.trainable_variables), tuple(index))
    cached = _STATS_FNS.get(model)
    if cached is None or cached[0] != signature:
        cached = _STATS_FNS[model] = (signature, _build_stats_fn(model, index, len(layers)))
    return cached[1]


def _build_stats_fn(model, index, n):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _TFStats(model, index, n)
    if backend == "jax":
        return _JAXStats(model, index, n)
    raise ValueError(f"Unsupported backend. Received: backend={backend!r}")


class _TFStats:
    """One `tf.function` reading the weights itself; the snapshot lives in TF variables.

    Everything but the batch stays in the graph, so a sample costs one function call and one
    read-back of `3 * layers + 1` floats.
    """

    def __init__(self, model, index, n):
        import tensorflow as tf

        model_ref = weakref.ref(model)
        loss_fn = _loss_fn(model_ref)
        trainable = list(model.trainable_variables)
        self._trainable = trainable
        self._snapshot = [
            tf.Variable(v.value, trainable=False, name="gradient_monitor_snapshot")
            for v in trainable
        ]

        def compute(x, y, sample_weight, with_grads):
            model = model_ref()
            values = [v.value for v in trainable]
            non_trainable = [v.value for v in model.non_trainable_variables]
            metrics = [v.value for v in model.metrics_variables]
            with tf.GradientTape() as tape:
                tape.watch(values)
                loss = loss_fn(values, non_trainable, metrics, x, y, sample_weight)
            grads = tape.gradient(loss, values)
            stats = _stats(values, grads, self._snapshot, loss, index, n)
            with tf.control_dependencies([stats]):
                for old, value in zip(self._snapshot, values, strict=True):
                    old.assign(value)
            return stats, (_layer_grads(grads, index, n) if with_grads else None)

        self._compute = tf.function(compute, reduce_retracing=True)

    def reset_snapshot(self):
        for old, variable in zip(self._snapshot, self._trainable, strict=True):
            old.assign(variable.value)

    def __call__(self, x, y, sample_weight, with_grads):
        return self._compute(x, y, sample_weight, with_grads=with_grads)


class _JAXStats:
    """`jax.jit(jax.value_and_grad(...))` over `model.stateless_call`; the snapshot is a copy
    (the jitted train step donates the weights' buffers, so keeping them is not enough)."""

    def __init__(self, model, index, n):
        import jax

        self._model_ref = weakref.ref(model)
        loss_fn = _loss_fn(self._model_ref)

        def compute(values, non_trainable, metrics, snapshot, x, y, sample_weight, with_grads):
            loss, grads = jax.value_and_grad(loss_fn)(
                values, non_trainable, metrics, x, y, sample_weight
            )
            stats = _stats(values, grads, snapshot, loss, index, n)
            return stats, (_layer_grads(grads, index, n) if with_grads else None)

        self._compute = jax.jit(compute, static_argnums=7)

    def _values(self):
        return [v.value for v in self._model_ref().trainable_variables]

    def reset_snapshot(self):
        self._snapshot = [keras.ops.copy(v) for v in self._values()]

    def __call__(self, x, y, sample_weight, with_grads):
        model = self._model_ref()
        values = self._values()
        result = self._compute(
            values,
            [v.value for v in model.non_trainable_variables],
            [v.value for v in model.metrics_variables],
            self._snapshot, x, y, sample_weight, with_grads,
        )
        self._snapshot = [keras.ops.copy(v) for v in values]
        return result

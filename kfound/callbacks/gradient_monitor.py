import functools
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


class GradientMonitor(diagnostics.Monitor):
    """Records per-layer gradient norms during `fit` and diagnoses what is wrong.

    Every `every_n_batches` batches (and at least once per epoch: at its last step, or at
    its first while the number of steps per epoch is unknown) the monitor records the L2
    norm of the gradient of each layer's trainable weights, the norm of the weights, and
    each layer's update-to-weight ratio `||w_t - w_s|| / ||w||` between this sample `t` and
    the previous one `s` (or the start of `fit`): the size of what the optimizer did to the
    layer over `every_n_batches` steps, relative to the layer; per step when
    `every_n_batches=1`. It then diagnoses:

    - vanishing gradients: over an epoch, the first trainable layer's mean norm is below
      `vanishing_ratio` times the last layer's, or some layer's is below `vanishing_norm`
      (the seed's "learning speed of hidden layers", §3.1.5);
    - exploding gradients: a layer's epoch-mean norm is above `exploding_norm`, or grew
      more than `growth_factor` times since the previous epoch;
    - non-finite gradients or loss: it names the first layer, in forward order, whose
      gradient went NaN or Inf.

    Each finding is issued once per `fit` as a `GradientWarning` naming the layers, the
    numbers and the likely causes; `on_problem` says what happens next.

    **Which gradient.** With `probe_data=None` on the TensorFlow backend, the monitor
    records the train step's own gradients, the ones the optimizer applies (unscaled under
    mixed precision, before clipping), with the batch's loss and the weights they were
    computed at: it wraps the optimizer's `apply` and `scale_loss` for the duration of
    `fit` and swaps in a train function traced with them (traced once per model and
    compiled model, and shared by later monitors of it). On a sampled step that function
    also writes `3 * layers + 1` floats into a variable, which the monitor reads back; on
    the other steps a `tf.cond` skips all of it, so they cost nothing and sync nothing.
    Training is unchanged. (Like every callback with an `on_train_batch_end`, the
    progress bar of `verbose=1` or `2` included, the monitor makes Keras read each batch's
    logs on the main thread; only with `verbose=0` and no such callback does Keras read
    them on a helper thread. On a 2-core CPU the main-thread read measured the faster.)
    Elsewhere (JAX, a multi-replica strategy, a second monitor on the same model), the
    monitor keeps a reference to the sampled step's batch (no copy, no host sync) and runs
    one extra compiled forward and backward pass on it at the weights after its update;
    BatchNorm statistics and metrics are left untouched.
    With `probe_data`, that extra pass measures a fixed batch instead, which makes samples
    comparable across training.

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
            `(samples,)` (the sampled batch's loss; `nan` when a custom `train_step` does
            not call `optimizer.scale_loss`), `grad_norm` and `update_ratio`
            `(samples, layers)`, and `layers`, the layer names in forward order.
        problems: the findings of the last `fit`, a list of dicts with `kind`
            (`"vanishing"`, `"exploding"` or `"non_finite"`), `message`, `epoch` and more.

    Example:

    >>> (x, y), _ = kfound.data.load_digits(images=False)
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

    warning_category = GradientWarning

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
        super().__init__(every_n_batches, on_problem, verbose)
        self.probe_data = probe_data
        self.vanishing_ratio = vanishing_ratio
        self.vanishing_norm = vanishing_norm
        self.exploding_norm = exploding_norm
        self.growth_factor = growth_factor
        self.log_dir = log_dir
        self._probe = diagnostics.split_probe(probe_data, need_y=True)
        self._hook = None
        self._tap = None
        self._writer = None

    @property
    def history(self):
        return self._history(("grad_norm", "update_ratio"), scalars=("loss",))

    # -- Callback hooks -------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if self._probe is not None:
            diagnostics.check_probe_shape(self.model, self._probe[0])
        self._reset()
        self._previous_epoch_mean = None
        self._layers = None
        self._stats_fn = None
        if self.model.built:
            self._resolve_layers()
        self._steps_per_epoch = self.params.get("steps")
        self._sampling = False
        self._batch = None
        if self._probe is None:
            self._hook = _TrainStepHook.acquire(self.model, keep_grads=self.log_dir is not None)
        if self._hook is None and self._layers is not None:
            self._start_extra_pass()
        if self.log_dir is not None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(os.fspath(self.log_dir))

    def _resolve_layers(self):
        # A subclassed model may be built only by its first training step: then this runs
        # at the first sample.
        self._layers = diagnostics.require_trainable_layers(self.model, "GradientMonitor")
        self._layer_names = [layer.name for layer in self._layers]

    def _start_extra_pass(self):
        self._stats_fn = _stats_fn(self.model, self._layers)
        diagnostics.sync_jax_state(self.model)
        self._stats_fn.reset_snapshot()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_rows = len(self._rows)
        self._epoch_steps = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._sampling = self._samples_step(batch)
        if self._hook is not None:
            self._hook.record(self._sampling)
        elif self._sampling and self._probe is None:
            self._tap = diagnostics.BatchTap.attach(self.model)

    def _samples_step(self, batch):
        if (self._step + 1) % self.every_n_batches == 0:
            return True
        if len(self._rows) > self._epoch_rows:
            return False
        if self._steps_per_epoch is None:
            return batch == 0
        return batch + getattr(self.model, "steps_per_execution", 1) >= self._steps_per_epoch

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        self._epoch_steps = batch + 1
        if not self._sampling:
            return
        if self._tap is not None:
            self._batch = self._tap.batch
            self._release_tap()
        self._sample()

    def on_epoch_end(self, epoch, logs=None):
        if self._steps_per_epoch is None:
            self._steps_per_epoch = self._epoch_steps
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
        if self._hook is not None:
            self._hook.uninstall()
            self._hook = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- Sampling -------------------------------------------------------------------------

    def _release_tap(self):
        if self._tap is not None:
            self._tap.detach()
            self._tap = None

    def _sample(self):
        if self._layers is None:
            self._resolve_layers()
        if self._hook is not None:
            stats, grads, loss_known = self._hook.read()
            first = False
        else:
            if self._probe is not None:
                x, y, sample_weight = self._probe
            else:
                x, y, sample_weight = diagnostics.unpack_batch(self._batch)
            first = self._stats_fn is None
            if first:
                # A model built by its first step: no weights from before, so no ratio.
                self._start_extra_pass()
            diagnostics.sync_jax_state(self.model)
            stats, grads = self._stats_fn(x, y, sample_weight, self._writer is not None)
            stats = keras.ops.convert_to_numpy(stats).astype("float64")
            loss_known = True
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
        if not np.all(np.isfinite(grad_norm)) or (loss_known and not math.isfinite(loss)):
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
        from matplotlib.figure import Figure

        history = self._history_to_plot(path)
        figure = Figure(figsize=(7, 4.5), layout="constrained")
        axes = figure.add_subplot()
        colours = diagnostics.layer_colours(len(history["layers"]))
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


def _layer_index(variables, layers):
    """For each variable, the index of the layer in `layers` that owns it, or `None`."""
    owner = {}
    for i, layer in enumerate(layers):
        for variable in layer.trainable_weights:
            owner.setdefault(id(variable), i)
    return [owner.get(id(v)) for v in variables]


def _layer_norms(tensors, index, n_layers):
    """Per-layer L2 norms of `tensors` (one per variable, `None` skipped), float32."""
    ops = keras.ops
    sums = [ops.zeros((), "float32")] * n_layers
    for tensor, i in zip(tensors, index, strict=True):
        if i is not None and tensor is not None:
            sums[i] = sums[i] + ops.sum(ops.square(ops.cast(tensor, "float32")))
    return ops.sqrt(ops.stack(sums))


def _with_grads(tensors, grads):
    """`tensors`, with `None` where a variable has no gradient (it is left out)."""
    return [None if g is None else t for t, g in zip(tensors, grads, strict=True)]


def _stats(weights, grads, deltas, loss, index, n_layers):
    """Per-layer gradient, weight and update norms and the loss, as one float32 vector."""
    ops = keras.ops
    norms = [_layer_norms(part, index, n_layers)
             for part in (grads, _with_grads(weights, grads), _with_grads(deltas, grads))]
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
    index = _layer_index(model.trainable_variables, layers)
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
            deltas = [v - old for v, old in zip(values, self._snapshot, strict=True)]
            stats = _stats(values, grads, deltas, loss, index, n)
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
            deltas = [v - old for v, old in zip(values, snapshot, strict=True)]
            stats = _stats(values, grads, deltas, loss, index, n)
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


class _TrainStepHook:
    """The TensorFlow fast path: the train step's own gradients, without an extra pass.

    While installed (one `fit`), it wraps the optimizer's `apply` (the inner optimizer's
    under loss scaling, so the gradients are unscaled) and `scale_loss` (to see the
    batch's loss), and swaps in a train function traced with them. When `recording` is
    set, that function also writes the per-layer gradient, weight and update norms and the
    loss into `stats` (and, with `keep_grads`, copies the gradients for histograms);
    otherwise two `tf.cond`s skip all of it. The hook lives on the model, so the traced
    function is reused by later monitors until the model is compiled again.
    """

    ATTRIBUTE = "_kfound_gradient_hook"

    def __init__(self, model, keep_grads):
        import tensorflow as tf

        self.model_ref = weakref.ref(model)
        self.keep_grads = keep_grads
        self.original = _keras_train_function(model)
        self.function = None
        self.active = False
        self.recording = tf.Variable(False, trainable=False, name="gradient_monitor_recording")
        self.recording_value = False
        self.variables = None
        self.loss_known = False
        self._loss = None
        self._patched = []

    @classmethod
    def acquire(cls, model, keep_grads):
        """Installs the model's hook and returns it, or `None` where it cannot serve."""
        if (
            keras.backend.backend() != "tensorflow"
            or model.distribute_strategy.num_replicas_in_sync > 1
        ):
            return None
        hook = getattr(model, cls.ATTRIBUTE, None)
        if hook is not None and hook.active:
            return None
        if hook is None or hook.original is not _keras_train_function(model) or (
            hook.keep_grads != keep_grads
        ):
            hook = cls(model, keep_grads)
            setattr(model, cls.ATTRIBUTE, hook)
        hook.install()
        return hook

    def install(self):
        model = self.model_ref()
        optimizer = model.optimizer
        self._patch(optimizer, "scale_loss", self._scale_loss)
        self._patch(getattr(optimizer, "inner_optimizer", optimizer), "apply", self._apply)
        if self.function is None:
            current = model.train_function
            model.make_train_function(force=True)
            self.function, model.train_function = model.train_function, current
        _swap_train_function(model, self.original, self.function)
        self.reset_snapshot()
        self.active = True

    def uninstall(self):
        for owner, name in self._patched:
            delattr(owner, name)
        self._patched = []
        self.record(False)
        _swap_train_function(self.model_ref(), self.function, self.original)
        self.active = False

    def _patch(self, owner, name, wrapper):
        setattr(owner, name, functools.partial(wrapper, getattr(owner, name)))
        self._patched.append((owner, name))

    def record(self, value):
        if value != self.recording_value:
            self.recording.assign(value)
            self.recording_value = value

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
        # Weight norms before the update, read only on recorded steps (reading them on
        # every step would make the update copy the weights).
        before = tf.cond(
            self.recording,
            lambda: _layer_norms(_with_grads([v.value for v in variables], grads), self.index, n),
            lambda: tf.zeros((n,), "float32"),
        )
        result = apply(grads, trainable_variables)

        def record():
            after = [v.value for v in variables]
            deltas = [a - old for a, old in zip(after, self.snapshot, strict=True)]
            stats = tf.concat([
                _layer_norms(grads, self.index, n), before,
                _layer_norms(_with_grads(deltas, grads), self.index, n),
                tf.reshape(tf.cast(loss, "float32"), (1,)),
            ], axis=0)
            updates = [self.stats.assign(stats)]
            updates += [old.assign(a) for old, a in zip(self.snapshot, after, strict=True)]
            if self.keep_grads:
                updates += [
                    copy.assign(tf.cast(g, "float32"))
                    for copy, g in zip(self.grads, grads, strict=True) if g is not None
                ]
            with tf.control_dependencies(updates):
                return tf.constant(True)

        tf.cond(self.recording, record, lambda: tf.constant(False))
        return result

    def _create_state(self, model, variables):
        import tensorflow as tf

        if self.variables is not None:
            return
        layers = diagnostics.trainable_layers(model)
        index, n = _layer_index(variables, layers), len(layers)
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


def _keras_train_function(model):
    """Keras's own train function, under a `BatchTap` another monitor may have put on."""
    function = model.train_function
    return function.inner if isinstance(function, diagnostics.BatchTap) else function


def _swap_train_function(model, old, new):
    """Puts `new` where `old` is: `model.train_function`, or inside the `BatchTap` there."""
    if isinstance(model.train_function, diagnostics.BatchTap):
        if model.train_function.inner is old:
            model.train_function.inner = new
    elif model.train_function is old:
        model.train_function = new

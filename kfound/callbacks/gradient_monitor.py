"""GradientMonitor: per-layer gradient norms during `fit`, and what they say is wrong."""

import math

import keras
import numpy as np

from kfound import io_utils
from kfound.callbacks import gradient_pass, monitor, summary_writer
from kfound.callbacks.monitor import GradientWarning
from kfound.callbacks.step_tap import StepTap, unpack_batch
from kfound.callbacks.train_step_hook import TrainStepHook

_CAUSES = {
    "vanishing": (
        "Likely causes (Glorot and Bengio 2010; the chapter's \"Why is a deep neural network "
        "difficult to train?\"): saturating activations (sigmoid, tanh) "
        "whose derivatives are at most 0.25 and 1; an initialization that shrinks the signal "
        "(use He init for ReLU, Glorot for tanh); a learning rate too small; a network too "
        "deep for its activations (add BatchNormalization or residual connections)."
    ),
    "exploding": (
        "Likely causes (Pascanu et al. 2013, \"On the difficulty of training recurrent neural "
        "networks\"): a learning rate too large; an initialization with "
        "weights too large; a deep or recurrent network whose layer Jacobians multiply up. "
        "Lower the learning rate, clip gradients (`clipnorm=`) or add normalization."
    ),
    "non_finite": (
        "Likely causes: exploding gradients that overflowed (a learning rate "
        "too large, weights too large for the depth); a log or division of zero in the loss; "
        "float16 overflow without loss scaling."
    ),
}


class GradientMonitor(monitor.Monitor):
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
      (the textbook chapter's "learning speed of hidden layers");
    - exploding gradients: a layer's epoch-mean norm is above `exploding_norm`, or grew
      more than `growth_factor` times since the previous epoch;
    - non-finite gradients or loss: it names the first layer, in forward order, whose
      gradient went NaN or Inf.

    Each finding is issued once per `fit` as a `GradientWarning` naming the layers, the
    numbers and the likely causes; `on_problem` says what happens next.

    **Which gradient, and what a sample costs.** Every backend works. With
    `probe_data=None` on TensorFlow, the monitor records the train step's own gradients,
    the ones the optimizer applies (unscaled under mixed precision, before clipping), with
    the batch's loss and the weights they were computed at: on a sampled step it runs a
    second train function, traced once per compiled model with the optimizer's `apply` and
    `scale_loss` wrapped, which trains exactly as Keras's own and also writes
    `3 * layers + 1` floats that the monitor reads back. The other steps run Keras's
    function untouched, so they cost nothing and sync nothing. Elsewhere (JAX, torch, a
    multi-replica strategy, a second monitor in the same `fit`), the monitor keeps a
    reference to the sampled step's batch (no copy, no host sync) and a sample costs one
    extra forward and backward pass on it, at the weights after its update, with the
    backend's own autodiff (compiled under TensorFlow and JAX, eager `torch.autograd`
    under torch) and a read-back of the same floats; BatchNorm statistics, seeds, metrics
    and the parameters' `.grad` are left untouched. With `probe_data`, that extra pass
    measures a fixed batch instead, which makes samples comparable across training.
    A sampled step is read when the next step begins (or at the epoch's end), at the same
    weights: the monitor has no `on_train_batch_end`, so Keras keeps handing batch ends
    to its helper thread, and a step it does not sample costs a few attribute writes.
    (`benchmarks/callbacks.py` measures the overhead on each backend.)

    Whatever way `fit` ends, an exception or a `KeyboardInterrupt` included, the model and
    its optimizer are left as they were: see `kfound.callbacks.step_tap.StepTap`.

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
            `model.stop_training = True` (Keras then stops after the step in progress);
            `"raise"` raises the `GradientWarning`.
        log_dir: if given, a folder where TensorBoard scalars (norms, ratios) and
            histograms (per-layer gradient values) are written at each sample.
            Needs the `tensorflow` and `tensorboard` packages (on any backend); an
            unwritable folder is refused at the start of `fit`. Defaults to `None`.
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
    row_layout = monitor.RowLayout(("grad_norm", "update_ratio"), scalars=("loss",))

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
        for name, value in (
            ("vanishing_ratio", vanishing_ratio), ("vanishing_norm", vanishing_norm),
            ("exploding_norm", exploding_norm), ("growth_factor", growth_factor),
        ):
            monitor.check_positive(name, value)
        if log_dir is not None:
            summary_writer.check_available(log_dir)
        super().__init__(every_n_batches, on_problem, verbose)
        self.probe_data = probe_data
        self.vanishing_ratio = vanishing_ratio
        self.vanishing_norm = vanishing_norm
        self.exploding_norm = exploding_norm
        self.growth_factor = growth_factor
        self.log_dir = log_dir
        self._probe = monitor.split_probe(probe_data, need_y=True)
        self._hook = None
        self._tap = None
        self._writer = None

    # -- Callback hooks -------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if self._probe is not None:
            monitor.check_probe_shape(self.model, self._probe[0])
        self._release()
        StepTap.clear(self.model)
        if self.log_dir is not None:
            self._writer = summary_writer.SummaryWriter(self.log_dir)
        self._reset()
        self._previous_epoch_mean = None
        self._layers = None
        self._pass = None
        if self.model.built:
            self._resolve_layers()
        self._steps_per_epoch = self.params.get("steps")
        self._model_in_fit = self.model  # `self.model` syncs the JAX state each time
        self._steps_per_execution = getattr(self._model_in_fit, "steps_per_execution", 1)
        self._sampling = False
        self._batch = None
        if self._probe is None:
            self._hook = TrainStepHook.acquire(
                self.model, keep_grads=self.log_dir is not None, owner=self
            )
        if self._hook is None and self._layers is not None:
            self._start_extra_pass()

    def _resolve_layers(self):
        # A subclassed model may be built only by its first training step: then this runs
        # at the first sample.
        self._layers = monitor.require_trainable_layers(self.model, "GradientMonitor")
        self._layer_names = [layer.name for layer in self._layers]

    def _start_extra_pass(self):
        self._pass = gradient_pass.gradient_pass(self.model, self._layers)
        monitor.sync_jax_state(self.model)
        self._pass.reset_snapshot()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_rows = len(self._rows)
        self._epoch_steps = 0

    def on_train_batch_begin(self, batch, logs=None):
        # The previous step is counted, and sampled, here: at the weights after its update,
        # not in `on_train_batch_end`. Keras hands batch ends to a helper thread only while
        # no callback defines one, and `self.model` syncs the whole JAX state, so an
        # unsampled step reads nothing and syncs nothing.
        self._finish_step()
        self._sampling = self._samples_step(batch)
        self._batch_index = batch
        if self._sampling and self._hook is not None:
            self._tap = StepTap.arm(self._model_in_fit, replacement=self._hook)
        else:  # the tap also tells whether the step ran (`StepTap.ran`)
            keep_batch = self._sampling and self._probe is None
            self._tap = StepTap.arm(self._model_in_fit, keep_batch=keep_batch)

    def _samples_step(self, batch):
        if (self._step + 1) % self.every_n_batches == 0:
            return True
        if len(self._rows) > self._epoch_rows:
            return False
        if self._steps_per_epoch is None:
            return batch == 0
        return batch + self._steps_per_execution >= self._steps_per_epoch

    def _finish_step(self):
        tap, self._tap = self._tap, None
        if tap is None:
            return
        tap.disarm()
        sampling, self._sampling = self._sampling, False
        if not tap.ran:
            return
        self._step += 1
        self._epoch_steps = self._batch_index + self._steps_per_execution
        if sampling:
            self._batch = tap.batch
            self._sample()

    def on_epoch_end(self, epoch, logs=None):
        self._finish_step()
        if self._steps_per_epoch is None:
            self._steps_per_epoch = self._epoch_steps
        if len(self._rows) == self._epoch_rows:
            return
        columns = self.row_layout.block("grad_norm", len(self._layer_names))
        epoch_norms = np.asarray(self._rows[self._epoch_rows:])[:, columns]
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
        self._release()

    def _release(self):
        self._release_tap()
        if self._hook is not None:
            self._hook.release(self)
            self._hook = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- Sampling -------------------------------------------------------------------------

    def _release_tap(self):
        if self._tap is not None:
            self._tap.disarm()
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
                x, y, sample_weight = unpack_batch(self._batch)
            first = self._pass is None
            if first:
                # A model built by its first step: no weights from before, so no ratio.
                self._start_extra_pass()
            monitor.sync_jax_state(self.model)
            stats, grads = self._pass(x, y, sample_weight, self._writer is not None)
            stats = keras.ops.convert_to_numpy(stats).astype("float64")
            loss_known = True
        grad_norm, weight_norm, delta_norm, loss = gradient_pass.split_stats(
            stats, len(self._layer_names)
        )
        update_ratio = delta_norm / np.maximum(weight_norm, np.finfo("float32").tiny)
        if first:
            update_ratio[:] = np.nan
        self._rows.append(
            self.row_layout.row(self._step, self._epoch, (loss,), (grad_norm, update_ratio))
        )
        if self._writer is not None:
            scalars = {"gradient_monitor/loss": loss}
            for i, name in enumerate(self._layer_names):
                scalars[f"grad_norm/{name}"] = grad_norm[i]
                scalars[f"update_ratio/{name}"] = update_ratio[i]
            histograms = {f"gradients/{name}": grads[i]
                          for i, name in enumerate(self._layer_names)}
            self._writer.write(self._step, scalars, histograms)
        if not np.all(np.isfinite(grad_norm)) or (loss_known and not math.isfinite(loss)):
            self._report_non_finite(grad_norm, weight_norm, loss)

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

        One line per layer, first layers in the coolest colours: the "learning speed of
        hidden layers" figure of the textbook chapter. Written atomically.

        Args:
            path: the PNG file to write.

        Returns:
            `path`.
        """
        from matplotlib.figure import Figure

        history = self._history_to_plot(path)
        figure = Figure(figsize=(7, 4.5), layout="constrained")
        axes = figure.add_subplot()
        colours = monitor.layer_colours(len(history["layers"]))
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

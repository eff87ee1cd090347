"""The extra forward and backward pass of `GradientMonitor`, one engine per backend, and the
per-layer norms that every path shares.

A pass computes, at the model's current weights, the gradient of the loss on one batch with
the backend's own autodiff (`tf.GradientTape`, `jax.value_and_grad`, `torch.autograd`),
through `model.stateless_call`, so BatchNorm statistics, seeds and metrics are left
untouched. It returns the per-layer gradient, weight and update norms and the loss as one
float32 vector of `3 * layers + 1` values.
"""

import inspect
import weakref

import keras


def layer_index(variables, layers):
    """For each variable, the index of the layer in `layers` that owns it, or `None`."""
    owner = {}
    for i, layer in enumerate(layers):
        for variable in layer.trainable_weights:
            owner.setdefault(id(variable), i)
    return [owner.get(id(v)) for v in variables]


def layer_norms(tensors, index, n_layers):
    """Per-layer L2 norms of `tensors` (one per variable, `None` skipped), float32."""
    ops = keras.ops
    sums = [ops.zeros((), "float32")] * n_layers
    for tensor, i in zip(tensors, index, strict=True):
        if i is not None and tensor is not None:
            sums[i] = sums[i] + ops.sum(ops.square(ops.cast(tensor, "float32")))
    return ops.sqrt(ops.stack(sums))


def with_grads(tensors, grads):
    """`tensors`, with `None` where a variable has no gradient (it is left out)."""
    return [None if g is None else t for t, g in zip(tensors, grads, strict=True)]


def stats_vector(weights, grads, deltas, loss, index, n_layers):
    """Per-layer gradient, weight and update norms and the loss, as one float32 vector."""
    ops = keras.ops
    norms = [layer_norms(part, index, n_layers)
             for part in (grads, with_grads(weights, grads), with_grads(deltas, grads))]
    return ops.concatenate(norms + [ops.reshape(ops.cast(loss, "float32"), (1,))])


def split_stats(stats, n_layers):
    """The inverse of `stats_vector` on a NumPy vector: `(grad_norm, weight_norm,
    delta_norm, loss)`, three `(n_layers,)` arrays and a scalar."""
    n = n_layers
    return stats[:n], stats[n:2 * n], stats[2 * n:3 * n], stats[3 * n]


def _layer_grads(grads, index, n_layers):
    ops = keras.ops
    flat = [[] for _ in range(n_layers)]
    for grad, i in zip(grads, index, strict=True):
        if i is not None and grad is not None:
            flat[i].append(ops.reshape(ops.cast(grad, "float32"), (-1,)))
    return [ops.concatenate(parts) for parts in flat]


def _loss_fn(model_ref):
    # `stateless_call` calls `model.call` directly, so pass `training` only where it is taken.
    model = model_ref()
    kwargs = {"training": True} if "training" in inspect.signature(model.call).parameters else {}

    def loss_fn(trainable, non_trainable, metrics, x, y, sample_weight):
        model = model_ref()
        y_pred, _ = model.stateless_call(trainable, non_trainable, x, **kwargs)
        loss, _ = model.stateless_compute_loss(
            trainable, non_trainable, metrics, x=x, y=y, y_pred=y_pred,
            sample_weight=sample_weight, training=True,
        )
        return loss

    return loss_fn


# One compiled pass per model, shared by every monitor of that model, so a fresh monitor per
# `fit` does not retrace. The passes hold the model weakly, so the cache frees it.
_PASSES = weakref.WeakKeyDictionary()


def gradient_pass(model, layers):
    """The model's extra-pass engine for `layers`: `engine(x, y, sample_weight, with_grads)`
    returns `(stats, per-layer gradients or None)`; `engine.reset_snapshot()` makes the
    current weights the reference of the next update norm."""
    index = layer_index(model.trainable_variables, layers)
    signature = (tuple(id(v) for v in model.trainable_variables), tuple(index))
    cached = _PASSES.get(model)
    if cached is None or cached[0] != signature:
        engine = _ENGINES[keras.backend.backend()](model, index, len(layers))
        cached = _PASSES[model] = (signature, engine)
    return cached[1]


def has_pass(model):
    return model in _PASSES


class _TFPass:
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
            stats = stats_vector(values, grads, deltas, loss, index, n)
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


class _JAXPass:
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
            stats = stats_vector(values, grads, deltas, loss, index, n)
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


class _TorchPass:
    """`torch.autograd.grad` over `model.stateless_call`, in eager mode. The weights enter
    as detached views (no copy) that require grad, so the parameters' own `.grad` and the
    optimizer are untouched; the snapshot is a clone (the optimizer updates in place)."""

    def __init__(self, model, index, n):
        self._model_ref = weakref.ref(model)
        self._loss_fn = _loss_fn(self._model_ref)
        self._index, self._n = index, n

    def _values(self):
        return [v.value.detach() for v in self._model_ref().trainable_variables]

    def reset_snapshot(self):
        self._snapshot = [v.clone() for v in self._values()]

    def __call__(self, x, y, sample_weight, with_grads):
        import torch

        model = self._model_ref()
        values = [v.requires_grad_(True) for v in self._values()]
        non_trainable = [v.value.detach() for v in model.non_trainable_variables]
        metrics = [v.value.detach() for v in model.metrics_variables]
        with torch.enable_grad():
            loss = self._loss_fn(values, non_trainable, metrics, x, y, sample_weight)
            grads = torch.autograd.grad(loss, values, allow_unused=True)
        with torch.no_grad():
            values = [v.detach() for v in values]
            deltas = [v - old for v, old in zip(values, self._snapshot, strict=True)]
            stats = stats_vector(values, grads, deltas, loss.detach(), self._index, self._n)
            layer_grads = _layer_grads(grads, self._index, self._n) if with_grads else None
        self._snapshot = [v.clone() for v in values]
        return stats, layer_grads


_ENGINES = {"tensorflow": _TFPass, "jax": _JAXPass, "torch": _TorchPass}

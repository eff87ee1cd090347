"""Speed of kfound's layers, as ratios measured side by side in one process.

Runs under the backend of `KERAS_BACKEND` (TensorFlow when unset), each layer against
that backend's own reference. Each measurement is a small function registered with
`@measurement`; it builds compiled steps (forward+backward unless said otherwise) and
returns a dict of ratios, which `main` merges into ONE JSON line on stdout, with the
backend's name. Timings on a shared machine drift, so the candidates of a measurement
run alternately in every repeat, each repeat gives a ratio of two adjacent timings, and
the reported ratio is the median over the repeats.

Ratios (lower is faster; goals from the issues in brackets), `MODE` one of the
backend's modes (TensorFlow: `graph` = `tf.function`, `xla` = `tf.function(
jit_compile=True)`; JAX: `jit`; torch: `eager`):
- `lrn_vs_tf_nn_lrn_MODE` (TensorFlow only): the LRN layer /
  `tf.nn.local_response_normalization` [<= 1.0]; `lrn_portable_vs_tf_nn_lrn_MODE`: its
  keras.ops path [<= 1.3].
- `group_norm_vs_keras_MODE`: GroupNorm / `keras.layers.GroupNormalization` [<= 0.8
  graph, <= 1.0 XLA].
- `weight_norm_conv2d_train_step_vs_plain_MODE`: a train step (forward, backward, SGD
  update) of a WeightNorm-wrapped `Conv2D(64, 3, padding="same")` / the same step of
  the plain Conv2D [<= 1.10].
- `*_bandwidth_vs_copy_MODE`: achieved memory bandwidth as a fraction of a plain
  copy's. A copy (`x * one`, with `one` a runtime 1.0 that graph optimizers can't
  fold away) moves 2 tensor-sized buffers (read x, write y). A normalization's
  forward+backward moves at least 5 (forward: read x, write y; backward: read x and dy,
  write dx), so the fraction is `(5 / t_layer) / (2 / t_copy)`; 1.0 means the layer runs
  at copy speed with the fewest possible passes over memory.

The tensor is (32, 56, 56, 64) float32 (25.7 MB), as in the issue. Run with `--quick`
for fewer repeats. The README quotes the figures.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kfound.layers import LRN, GroupNorm, WeightNorm  # noqa: E402
from kfound.layers.lrn import lrn_portable  # noqa: E402

BACKEND = keras.backend.backend()
SHAPE = (32, 56, 56, 64)
# Minimum tensor-sized memory transfers of a forward+backward normalization, and of a copy.
NORMALIZATION_TRANSFERS = 5
COPY_TRANSFERS = 2
MEASUREMENTS = []


def measurement(fn):
    """Registers `fn(x, dy, settings) -> dict of ratios` to run in `main`."""
    MEASUREMENTS.append(fn)
    return fn


class TensorFlowSteps:
    """Steps compiled by `tf.function`, in graph mode or with XLA."""

    modes = {"graph": False, "xla": True}

    def __init__(self):
        import tensorflow as tf

        self.tf = tf

    def tensor(self, array):
        return self.tf.constant(array)

    def block(self, result):
        result[0].numpy()

    def forward_backward(self, fn, variables, mode):
        """A step returning the gradients of `sum(fn(x) * dy)` for x and `variables`."""
        tf = self.tf

        @tf.function(jit_compile=self.modes[mode])
        def step(x, dy):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(fn(x) * dy)
            return tape.gradient(loss, [x, *variables])

        return step

    def copy(self, mode):
        """A plain copy of x: one read, one write."""
        tf = self.tf
        one = tf.Variable(1.0)

        @tf.function(jit_compile=self.modes[mode])
        def step(x, dy):
            return [x * one]

        return step

    def train(self, layer, mode):
        """An SGD step of `layer` on the loss `mean((layer(x) - dy)^2)`."""
        tf = self.tf
        optimizer = keras.optimizers.SGD(1e-3)
        optimizer.build(layer.trainable_variables)

        @tf.function(jit_compile=self.modes[mode])
        def step(x, dy):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(layer(x, training=True) - dy))
            gradients = tape.gradient(loss, layer.trainable_variables)
            optimizer.apply(gradients, layer.trainable_variables)
            return [loss]

        return step


class JaxSteps:
    """Steps compiled by `jax.jit`, through the layers' stateless calls."""

    modes = {"jit": True}

    def __init__(self):
        import jax

        self.jax = jax

    def tensor(self, array):
        return self.jax.numpy.asarray(array)

    def block(self, result):
        self.jax.block_until_ready(result)

    def forward_backward(self, fn, variables, mode):
        jax = self.jax
        layer = fn if isinstance(fn, keras.layers.Layer) else None
        trainable = [v.value for v in variables]
        non_trainable = [v.value for v in layer.non_trainable_variables] if layer else []

        def loss(trainable, x, dy):
            if layer is None:
                return (fn(x) * dy).sum()
            y, _ = layer.stateless_call(trainable, non_trainable, x)
            return (y * dy).sum()

        gradients = jax.jit(jax.grad(loss, argnums=(0, 1)))

        def step(x, dy):
            dw, dx = gradients(trainable, x, dy)
            return [dx, *dw]

        return step

    def copy(self, mode):
        one = self.jax.numpy.float32(1.0)
        copy = self.jax.jit(lambda x, one: x * one)
        return lambda x, dy: [copy(x, one)]

    def train(self, layer, mode):
        jax = self.jax
        optimizer = keras.optimizers.SGD(1e-3)
        optimizer.build(layer.trainable_variables)
        state = {
            "trainable": [v.value for v in layer.trainable_variables],
            "non_trainable": [v.value for v in layer.non_trainable_variables],
            "optimizer": [v.value for v in optimizer.variables],
        }

        # `stateless_call` passes `training` on to `call`, which a Conv2D does not take.
        kwargs = {"training": True} if isinstance(layer, WeightNorm) else {}

        def loss(trainable, non_trainable, x, dy):
            y, non_trainable = layer.stateless_call(trainable, non_trainable, x, **kwargs)
            return ((y - dy) ** 2).mean(), non_trainable

        @jax.jit
        def compiled(trainable, non_trainable, optimizer_variables, x, dy):
            (value, non_trainable), gradients = jax.value_and_grad(loss, has_aux=True)(
                trainable, non_trainable, x, dy
            )
            trainable, optimizer_variables = optimizer.stateless_apply(
                optimizer_variables, gradients, trainable
            )
            return value, trainable, non_trainable, optimizer_variables

        def step(x, dy):
            value, state["trainable"], state["non_trainable"], state["optimizer"] = compiled(
                state["trainable"], state["non_trainable"], state["optimizer"], x, dy
            )
            return [value]

        return step


class TorchSteps:
    """Eager torch steps through torch's autograd."""

    modes = {"eager": False}

    def __init__(self):
        import torch

        self.torch = torch

    def tensor(self, array):
        return self.torch.from_numpy(array)

    def block(self, result):
        pass  # CPU torch runs synchronously.

    def forward_backward(self, fn, variables, mode):
        torch = self.torch
        weights = [v.value for v in variables]

        def step(x, dy):
            x = x.detach().requires_grad_(True)
            loss = (fn(x) * dy).sum()
            return list(torch.autograd.grad(loss, [x, *weights]))

        return step

    def copy(self, mode):
        one = self.torch.tensor(1.0)
        return lambda x, dy: [x * one]

    def train(self, layer, mode):
        torch = self.torch
        optimizer = keras.optimizers.SGD(1e-3)
        optimizer.build(layer.trainable_variables)

        def step(x, dy):
            loss = ((layer(x, training=True) - dy) ** 2).mean()
            weights = [v.value for v in layer.trainable_variables]
            gradients = torch.autograd.grad(loss, weights)
            with torch.no_grad():
                optimizer.apply(gradients, layer.trainable_variables)
            return [loss]

        return step


STEPS = {"tensorflow": TensorFlowSteps, "jax": JaxSteps, "torch": TorchSteps}


def time_alternating(engine, steps, x, dy, settings):
    """Seconds per call of each step, the steps alternating in every repeat.

    Returns a dict name -> list of per-repeat seconds, in repeat order.
    """
    for step in steps.values():  # Trace, compile and warm up.
        for _ in range(2):
            engine.block(step(x, dy))
    times = {name: [] for name in steps}
    for _ in range(settings.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(settings.inner):
                result = step(x, dy)
            engine.block(result)
            times[name].append((time.perf_counter() - start) / settings.inner)
    return times


def median_ratio(times, numerator, denominator):
    """The median over repeats of the ratio of two steps' adjacent timings."""
    ratios = [a / b for a, b in zip(times[numerator], times[denominator], strict=True)]
    return round(statistics.median(ratios), 3)


@measurement
def lrn(engine, x, dy, settings):
    layer = LRN()
    layer.build(x.shape)
    args = (layer.depth_radius, layer.bias, layer.alpha, layer.beta)

    def native(v):
        return engine.tf.nn.local_response_normalization(v, *args)

    results = {}
    for mode in engine.modes:
        steps = {
            "layer": engine.forward_backward(layer, [], mode),
            "portable": engine.forward_backward(
                lambda v: lrn_portable(v, *args, axis=3), [], mode
            ),
            "copy": engine.copy(mode),
        }
        if BACKEND == "tensorflow":
            steps["native"] = engine.forward_backward(native, [], mode)
        times = time_alternating(engine, steps, x, dy, settings)
        if BACKEND == "tensorflow":
            results[f"lrn_vs_tf_nn_lrn_{mode}"] = median_ratio(times, "layer", "native")
            results[f"lrn_portable_vs_tf_nn_lrn_{mode}"] = median_ratio(
                times, "portable", "native"
            )
            results[f"tf_nn_lrn_ms_{mode}"] = milliseconds(times, "native")
        results[f"lrn_bandwidth_vs_copy_{mode}"] = bandwidth_fraction(times, "layer")
        results[f"lrn_ms_{mode}"] = milliseconds(times, "layer")
    return results


@measurement
def group_norm(engine, x, dy, settings):
    ours, theirs = GroupNorm(groups=32), keras.layers.GroupNormalization(groups=32)
    for layer in (ours, theirs):
        layer.build(x.shape)
    results = {}
    for mode in engine.modes:
        steps = {
            "keras": engine.forward_backward(theirs, theirs.trainable_variables, mode),
            "ours": engine.forward_backward(ours, ours.trainable_variables, mode),
            "copy": engine.copy(mode),
        }
        times = time_alternating(engine, steps, x, dy, settings)
        results[f"group_norm_vs_keras_{mode}"] = median_ratio(times, "ours", "keras")
        results[f"group_norm_bandwidth_vs_copy_{mode}"] = bandwidth_fraction(times, "ours")
        results[f"group_norm_ms_{mode}"] = milliseconds(times, "ours")
        results[f"keras_group_norm_ms_{mode}"] = milliseconds(times, "keras")
    return results


@measurement
def weight_norm(engine, x, dy, settings):
    results = {}
    for mode in engine.modes:
        layers = {}
        for name in ("plain", "wrapped"):
            conv = keras.layers.Conv2D(SHAPE[-1], 3, padding="same")
            layers[name] = WeightNorm(conv) if name == "wrapped" else conv
            layers[name].build(x.shape)
        # The wrapped layer's data-dependent initialization runs in the warm-up steps.
        steps = {name: engine.train(layer, mode) for name, layer in layers.items()}
        times = time_alternating(engine, steps, x, dy, settings)
        key = f"weight_norm_conv2d_train_step_vs_plain_{mode}"
        results[key] = median_ratio(times, "wrapped", "plain")
    return results


def bandwidth_fraction(times, name):
    ratio = median_ratio(times, "copy", name)
    return round(ratio * NORMALIZATION_TRANSFERS / COPY_TRANSFERS, 3)


def milliseconds(times, name):
    return round(statistics.median(times[name]) * 1e3, 2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about 4x faster)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[fn.__name__ for fn in MEASUREMENTS],
        help="run only these measurements",
    )
    args = parser.parse_args(argv)
    args.repeats, args.inner = (5, 1) if args.quick else (11, 3)
    engine = STEPS[BACKEND]()
    rng = np.random.default_rng(0)
    x = engine.tensor(rng.standard_normal(SHAPE).astype("float32"))
    dy = engine.tensor(rng.standard_normal(SHAPE).astype("float32"))
    results = {"backend": BACKEND}
    for fn in MEASUREMENTS:
        if args.only is None or fn.__name__ in args.only:
            print(f"measuring {fn.__name__} under {BACKEND}...", file=sys.stderr, flush=True)
            results.update(fn(engine, x, dy, args))
    print(json.dumps(results))


if __name__ == "__main__":
    main()

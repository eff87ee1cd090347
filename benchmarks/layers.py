"""Speed of kfound's layers, as ratios measured side by side in one process.

Each measurement is a small function registered with `@measurement`; it builds TensorFlow
steps (forward+backward unless said otherwise) and returns a dict of ratios, which
`main` merges into ONE JSON line on stdout. Timings on a shared machine drift, so the
candidates of a measurement run alternately in every repeat, each repeat gives a ratio
of two adjacent timings, and the reported ratio is the median over the repeats.

Ratios (lower is faster; goals from the issue in brackets):
- `lrn_vs_tf_nn_lrn_{graph,xla}`: the LRN layer / `tf.nn.local_response_normalization`
  [<= 1.0]; `lrn_portable_vs_tf_nn_lrn_{graph,xla}`: its keras.ops path [<= 1.3].
- `group_norm_vs_keras_{graph,xla}`: GroupNorm / `keras.layers.GroupNormalization`
  [<= 0.8 graph, <= 1.0 XLA].
- `*_bandwidth_vs_copy_{graph,xla}`: achieved memory bandwidth as a fraction of a
  plain copy's. A copy (`x * one`, with `one` a runtime 1.0 that graph optimizers can't
  fold away) moves 2 tensor-sized buffers (read x, write y). A normalization's
  forward+backward moves at least 5 (forward: read x, write y; backward: read x and dy,
  write dx), so the fraction is `(5 / t_layer) / (2 / t_copy)`; 1.0 means the layer runs
  at copy speed with the fewest possible passes over memory.

`graph` is `tf.function`, `xla` is `tf.function(jit_compile=True)`. The tensor is
(32, 56, 56, 64) float32 (25.7 MB), as in the issue. Run with `--quick` for fewer repeats.
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
import tensorflow as tf  # noqa: E402

from kfound.layers import LRN, GroupNorm  # noqa: E402
from kfound.layers.lrn import lrn_portable  # noqa: E402

SHAPE = (32, 56, 56, 64)
MODES = {"graph": False, "xla": True}
# Minimum tensor-sized memory transfers of a forward+backward normalization, and of a copy.
NORMALIZATION_TRANSFERS = 5
COPY_TRANSFERS = 2
MEASUREMENTS = []


def measurement(fn):
    """Registers `fn(x, dy, settings) -> dict of ratios` to run in `main`."""
    MEASUREMENTS.append(fn)
    return fn


def forward_backward_step(fn, variables, jit_compile):
    """A compiled step returning the gradients of `sum(fn(x) * dy)` for x and variables."""

    @tf.function(jit_compile=jit_compile)
    def step(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(x) * dy)
        return tape.gradient(loss, [x, *variables])

    return step


def copy_step(jit_compile):
    """A compiled plain copy of x: one read, one write."""
    one = tf.Variable(1.0)

    @tf.function(jit_compile=jit_compile)
    def step(x, dy):
        return [x * one]

    return step


def time_alternating(steps, x, dy, settings):
    """Median seconds per call of each step, the steps alternating in every repeat.

    Returns a dict name -> list of per-repeat seconds, in repeat order.
    """
    for step in steps.values():  # Trace, compile and warm up.
        for _ in range(2):
            step(x, dy)[0].numpy()
    times = {name: [] for name in steps}
    for _ in range(settings.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(settings.inner):
                result = step(x, dy)
            result[0].numpy()
            times[name].append((time.perf_counter() - start) / settings.inner)
    return times


def median_ratio(times, numerator, denominator):
    """The median over repeats of the ratio of two steps' adjacent timings."""
    ratios = [a / b for a, b in zip(times[numerator], times[denominator], strict=True)]
    return round(statistics.median(ratios), 3)


@measurement
def lrn(x, dy, settings):
    layer = LRN()
    args = (layer.depth_radius, layer.bias, layer.alpha, layer.beta)
    results = {}
    for mode, jit_compile in MODES.items():
        steps = {
            "native": forward_backward_step(
                lambda v: tf.nn.local_response_normalization(v, *args), [], jit_compile
            ),
            "layer": forward_backward_step(layer, [], jit_compile),
            "portable": forward_backward_step(
                lambda v: lrn_portable(v, *args, axis=3), [], jit_compile
            ),
            "copy": copy_step(jit_compile),
        }
        times = time_alternating(steps, x, dy, settings)
        results[f"lrn_vs_tf_nn_lrn_{mode}"] = median_ratio(times, "layer", "native")
        results[f"lrn_portable_vs_tf_nn_lrn_{mode}"] = median_ratio(times, "portable", "native")
        results[f"lrn_bandwidth_vs_copy_{mode}"] = bandwidth_fraction(times, "layer")
        results[f"lrn_ms_{mode}"] = milliseconds(times, "layer")
        results[f"tf_nn_lrn_ms_{mode}"] = milliseconds(times, "native")
    return results


@measurement
def group_norm(x, dy, settings):
    ours, theirs = GroupNorm(groups=32), keras.layers.GroupNormalization(groups=32)
    for layer in (ours, theirs):
        layer.build(x.shape)
    results = {}
    for mode, jit_compile in MODES.items():
        steps = {
            "keras": forward_backward_step(theirs, theirs.trainable_variables, jit_compile),
            "ours": forward_backward_step(ours, ours.trainable_variables, jit_compile),
            "copy": copy_step(jit_compile),
        }
        times = time_alternating(steps, x, dy, settings)
        results[f"group_norm_vs_keras_{mode}"] = median_ratio(times, "ours", "keras")
        results[f"group_norm_bandwidth_vs_copy_{mode}"] = bandwidth_fraction(times, "ours")
        results[f"group_norm_ms_{mode}"] = milliseconds(times, "ours")
        results[f"keras_group_norm_ms_{mode}"] = milliseconds(times, "keras")
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
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal(SHAPE).astype("float32"))
    dy = tf.constant(rng.standard_normal(SHAPE).astype("float32"))
    results = {}
    for fn in MEASUREMENTS:
        if args.only is None or fn.__name__ in args.only:
            print(f"measuring {fn.__name__}...", file=sys.stderr, flush=True)
            results.update(fn(x, dy, args))
    print(json.dumps(results))


if __name__ == "__main__":
    main()

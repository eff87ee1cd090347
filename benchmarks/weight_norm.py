"""Benchmark: a train step of a WeightNorm-wrapped Conv2D over that of a plain Conv2D.

Both models (`Conv2D(64, 3, padding="same")` on a (32, 56, 56, 64) float32 batch, MSE
loss, SGD) are compiled and warmed up (the wrapped one runs its data-dependent
initialization then), and then timed step by step, alternating (ABBA), in one process. The
ratio is that of the fastest steps: other processes on a shared machine only ever add time
(the advice of Python's `timeit`). Goal: <= 1.10.

Prints one JSON line: `weight_norm_conv2d_train_step_vs_plain` (`jit_compile=False`: a
TensorFlow graph, or torch eager) and `weight_norm_conv2d_train_step_vs_plain_xla`
(`jit_compile=True` on TensorFlow and JAX).

    python benchmarks/weight_norm.py [--quick] [--steps N]
"""

import argparse
import json
import time

import keras
import numpy as np

from kfound.layers import WeightNorm


def build_models(input_shape, filters, jit_compile):
    models = []
    for wrap in (False, True):
        conv = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal")
        layer = WeightNorm(conv) if wrap else conv
        inputs = keras.Input(input_shape[1:])
        model = keras.Model(inputs, layer(inputs))
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse", jit_compile=jit_compile)
        models.append(model)
    return models


def time_ratio(input_shape, filters, jit_compile, steps, warmup):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(input_shape).astype("float32")
    y = rng.standard_normal(input_shape[:-1] + (filters,)).astype("float32")
    plain, wrapped = build_models(input_shape, filters, jit_compile)
    for _ in range(warmup):
        plain.train_on_batch(x, y)
        wrapped.train_on_batch(x, y)
    times = {"plain": [], "wrapped": []}
    order = [("plain", plain), ("wrapped", wrapped)]
    for _ in range(steps):
        # train_on_batch returns the loss as a number, so each step has finished. The
        # order flips every round, so that neither model always runs first.
        order.reverse()
        for name, model in order:
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[name].append(time.perf_counter() - start)
    return min(times["wrapped"]) / min(times["plain"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a (4, 56, 56, 64) batch and fewer steps, for a smoke run")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per model and mode (default 15, or 5 with --quick)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="the batch size (default 32, or 4 with --quick)")
    args = parser.parse_args(argv)
    batch = args.batch_size or (4 if args.quick else 32)
    steps = args.steps or (5 if args.quick else 15)
    input_shape, filters = (batch, 56, 56, 64), 64

    # TensorFlow runs both a graph and an XLA step, JAX only XLA, torch only eager.
    backend = keras.backend.backend()
    modes = {"tensorflow": (False, True), "jax": (True,)}.get(backend, (False,))
    results = {}
    for jit_compile in modes:
        key = "weight_norm_conv2d_train_step_vs_plain" + ("_xla" if jit_compile else "")
        results[key] = round(time_ratio(input_shape, filters, jit_compile, steps, warmup=3), 3)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""Overhead of GradientMonitor (and ActivationMonitor) on `fit`, measured side by side.

A small CNN trains on scikit-learn's digits. In one process, fits without a monitor and with
each monitor configuration alternate round after round (after one warm-up fit of each, which
pays the one-off tracing), each with a fresh monitor as a user would write it. Each ratio is
the median over rounds of `time(with) / time(without)` from the same round.

Goals (issue 3): default settings <= 1.03, `every_n_batches=1` <= 1.5.

The plain ratios compare with a plain `fit(verbose=0)`, what a user without a monitor runs.
Keras runs batch-end callbacks on a helper thread only while no callback has an
`on_train_batch_end`; the monitors have one (as the progress bar does), which switches Keras
to the main thread, and on a small CPU that switch alone is faster. The `_vs_same_dispatch`
ratios compare with a `fit` that has a no-op `on_train_batch_end`, so they show the
monitors' own cost.

Also measured: the bytes `GradientMonitor` holds per history sample (tracemalloc over many
samples), which is all that grows with training.

Keras picks its backend once per process, so the script runs one subprocess per backend
(`--backends`, default all three: TensorFlow, JAX and torch) and prints one JSON line with
each backend's ratios under its name. Goal for every backend (issue 12): default settings
<= 1.05. On TensorFlow the monitor records the train step's own gradients; on JAX and torch
a sample is one extra forward and backward pass.

    python benchmarks/callbacks.py                    # all three backends
    python benchmarks/callbacks.py --backends jax --quick

Prints one JSON line, for example:
{"tensorflow": {"gradient_monitor_default": 1.01, ...}, "jax": {...}, "torch": {...}}
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")


def batch_end_no_op():
    """A callback that does nothing, but has an `on_train_batch_end`, as the monitors do
    (and as the progress bar of `verbose=1` does): Keras then hands batch logs to callbacks
    on the main thread instead of a helper thread. Timing `fit` with it isolates the
    monitors' own cost from that switch."""
    import keras

    class BatchEndNoOp(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    return BatchEndNoOp()


def build_cnn():
    import keras

    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def bytes_per_sample(model, x, y, samples):
    from kfound.callbacks import GradientMonitor

    monitor = GradientMonitor(every_n_batches=1)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])  # warm up
    steps = int(np.ceil(len(x) / 32))
    epochs = int(np.ceil(samples / steps))
    tracemalloc.start()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[monitor])
    before, _ = tracemalloc.get_traced_memory()
    count_before = len(monitor.history["step"])
    model.fit(x, y, batch_size=32, epochs=epochs + 1, verbose=0, callbacks=[monitor])
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    count_after = len(monitor.history["step"])
    return (after - before) / (count_after - count_before), len(monitor.history["layers"])


def measure(rounds, epochs):
    """This process's backend: the ratios, as a dict."""
    import keras

    from kfound.callbacks import ActivationMonitor, GradientMonitor
    from kfound.data import load_digits

    keras.utils.set_random_seed(0)
    (x, y), _ = load_digits(images=True)
    model = build_cnn()
    configs = {
        "none": lambda: [],
        "same_dispatch": lambda: [batch_end_no_op()],
        "gradient_monitor_default": lambda: [GradientMonitor()],
        "gradient_monitor_every_batch": lambda: [GradientMonitor(every_n_batches=1)],
        "activation_monitor_default": lambda: [ActivationMonitor(probe_data=x[:256])],
    }

    def timed_fit(name):
        start = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=configs[name]())
        return time.perf_counter() - start

    for name in configs:
        timed_fit(name)  # warm-up: tracing and compilation, once per configuration
    monitors = [name for name in configs if name.endswith(("_default", "_every_batch"))]
    ratios = {name: [] for name in monitors}
    ratios.update({f"{name}_vs_same_dispatch": [] for name in monitors})
    for round_ in range(rounds):
        # Reverse the order every other round, so a slow drift of the machine cancels out.
        order = list(configs) if round_ % 2 == 0 else list(reversed(configs))
        seconds = {name: timed_fit(name) for name in order}
        for name in monitors:
            ratios[name].append(seconds[name] / seconds["none"])
            ratios[f"{name}_vs_same_dispatch"].append(seconds[name] / seconds["same_dispatch"])
    result = {name: round(statistics.median(r), 3) for name, r in ratios.items()}
    per_sample, layers = bytes_per_sample(model, x, y, samples=500)
    result["gradient_monitor_bytes_per_sample"] = round(per_sample, 1)
    result["layers"] = layers
    result["steps_per_epoch"] = int(np.ceil(len(x) / 32))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=16, help="alternating rounds (default 16)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fit (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 epochs")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated Keras backends, one subprocess each "
                             "(default: all three)")
    parser.add_argument("--this-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs = 2, 2
    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or not backends:
        parser.error(f"argument --backends must name some of {', '.join(BACKENDS)}. "
                     f"Received: --backends={args.backends!r}")
    if args.this_process:
        print(json.dumps(measure(args.rounds, args.epochs)))
        return None
    result = {}
    for backend in backends:
        print(f"measuring {backend}...", file=sys.stderr)
        command = [sys.executable, os.path.abspath(__file__), "--this-process",
                   "--rounds", str(args.rounds), "--epochs", str(args.epochs)]
        done = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND=backend),
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"benchmarks/callbacks.py: the {backend} run failed:\n{done.stderr[-3000:]}")
        result[backend] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{backend}: {json.dumps(result[backend])}", file=sys.stderr)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

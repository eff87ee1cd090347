"""
Title: Batch size: time per epoch, epochs to target, time to target
Description: Tests §3.5.5's "Batch_Size is increased to a certain time, and the time is optimal"
    on scikit-learn's digits, timing every batch size from 1 to the full training set.
Run time: about 4 minutes on 2 CPU cores (`--smoke`: seconds).

§3.5.5 argues in three steps: a larger batch processes an epoch faster (item 2), but needs more
epochs to reach the same accuracy (item 3), so total time to a given accuracy is smallest at
some middle batch size (item 4). This recipe measures all three on the same small network,
with the same optimizer and learning rate at every batch size (the book's premise: only the
batch size changes). It trains until the validation accuracy first reaches a target and
records the training time of each epoch (`kfound.callbacks.EpochTimer`: validation passes are
not counted). Each batch size is run `--repeats` times, interleaved, and the medians reported,
because wall times on a shared machine are noisy.

What is fixed, and why: Adam at its default learning rate 1e-3 for every batch size, a
64-128-10 ReLU MLP, target 95% validation accuracy, at most `--max-epochs` epochs. Scaling the
learning rate with the batch size (Goyal et al. 2017) would change the answer: that is a
different experiment, which the book does not describe.

Measured at the defaults (seed 1337, 3 repeats, a quiet 2-core CPU): the claim holds. Time per
epoch falls from 1.60 s at batch 1 to 0.036 s at the full batch of 1,347, while the epochs to
95% rise from 3 to 173; time to target is 4.8 s at batch 1, 6.2 s at the full batch, and
1.17-1.43 s across batches 16 to 128. That bottom is flat: the exact minimum was at 16 in this
run and at 32 and 64 in runs on a loaded machine, so read the optimum as a band, not a number.

Usage:

```
python recipes/batch_size_tradeoff.py
```
"""

import argparse
import statistics

import numpy as np
from _light import run_arguments

# Keras and kfound are imported inside the functions that use them, once the flags are
# checked: under the TensorFlow backend, importing Keras imports TensorFlow (seconds).

"""
## Data and model

The digits as flat 64-pixel vectors: 1,347 training and 450 validation examples.
"""


def build_model(seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


"""
## Train until the target

A `LambdaCallback` stops training the epoch the validation accuracy first reaches the target;
`EpochTimer` records each epoch's training time. Before the timed run, one warm-up pass traces
the train and test steps (for the full batches and the last, smaller one); the weights and the
optimizer's state are then put back exactly, so the timed run starts from the same point and
its first epoch does not include one-off compilation.
"""


def warm_up(model, data, batch_size):
    import keras

    (x, y), (x_val, y_val) = data
    weights = model.get_weights()
    n = batch_size + len(x) % batch_size if batch_size < len(x) else len(x)
    model.fit(x[:n], y[:n], batch_size=batch_size, epochs=1, verbose=0)
    model.evaluate(x_val, y_val, batch_size=len(x_val), verbose=0)
    model.set_weights(weights)
    # Reset the step count and Adam's moments, but not the learning rate, which Keras 3
    # also keeps among the optimizer's variables (zeroing it stopped all training).
    for variable in model.optimizer.variables:
        if variable.name != "learning_rate":
            variable.assign(keras.ops.zeros(variable.shape, variable.dtype))


def train_to_target(data, batch_size, target, max_epochs, seed):
    import keras

    from kfound import theory
    from kfound.callbacks import EpochTimer

    (x, y), (x_val, y_val) = data
    model = build_model(seed)
    warm_up(model, data, batch_size)
    timer = EpochTimer()

    def stop_at_target(epoch, logs):
        if logs["val_accuracy"] >= target:
            model.stop_training = True

    history = model.fit(
        x, y, batch_size=batch_size, epochs=max_epochs, validation_data=(x_val, y_val),
        validation_batch_size=len(x_val), verbose=0,
        callbacks=[timer, keras.callbacks.LambdaCallback(on_epoch_end=stop_at_target)],
    )
    epochs = theory.epochs_to_target(history.history["val_accuracy"], target)
    return {
        "epoch_time": statistics.median(timer.epoch_times),
        "epochs_to_target": epochs,
        "time_to_target": theory.time_to_target(timer.epoch_times, epochs),
        "best_val_accuracy": float(max(history.history["val_accuracy"])),
    }


def summarize(batch_sizes, results):
    rows = []
    for batch_size in batch_sizes:
        runs_ = results[batch_size]
        reached = [r for r in runs_ if r["epochs_to_target"] is not None]
        rows.append({
            "batch_size": batch_size,
            "epoch_time_s": statistics.median(r["epoch_time"] for r in runs_),
            "epochs_to_target": (statistics.median(r["epochs_to_target"] for r in reached)
                                 if len(reached) == len(runs_) else None),
            "time_to_target_s": (statistics.median(r["time_to_target"] for r in reached)
                                 if len(reached) == len(runs_) else None),
            "reached": f"{len(reached)}/{len(runs_)}",
        })
    return rows


def verdict_for(rows):
    timed = [r for r in rows if r["time_to_target_s"] is not None]
    if len(timed) < 3:
        return ("not confirmed",
                f"only {len(timed)} batch sizes reached the target; an optimum needs three.",
                None)
    best = min(timed, key=lambda r: r["time_to_target_s"])
    sizes = [r["batch_size"] for r in rows]
    epoch_times = [r["epoch_time_s"] for r in rows]
    epochs = [r["epochs_to_target"] for r in timed]
    faster = sum(b < a for a, b in zip(epoch_times, epoch_times[1:], strict=False))
    more = sum(b >= a for a, b in zip(epochs, epochs[1:], strict=False))
    interior = sizes[0] < best["batch_size"] < sizes[-1]
    status = "confirmed" if interior else "not confirmed"
    text = (
        f"Total time to target is smallest ({best['time_to_target_s']:.2f} s) at "
        f"batch size {best['batch_size']} ({'between' if interior else 'at the edge of'} "
        f"{sizes[0]} and {sizes[-1]}); time per epoch falls in {faster} of "
        f"{len(sizes) - 1} doublings ({epoch_times[0]:.3f} s -> {epoch_times[-1]:.4f} s) while "
        f"epochs to target rise or stay in {more} of {len(epochs) - 1} "
        f"({epochs[0]} -> {epochs[-1]}). On this CPU and model; the optimum moves with the "
        "hardware, the model size and the learning rate."
    )
    return status, text, best["batch_size"]


def parse_args(argv=None):
    """Parses and checks the flags, importing neither Keras nor kfound's package.

    Raises:
        ValueError: naming the first bad flag.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run_arguments.add_run_arguments(parser, run_name="batch_size_tradeoff", not_results=())
    parser.add_argument("--target", type=float, default=0.95,
                        help="validation accuracy to reach (default: 0.95)")
    parser.add_argument("--max-epochs", type=int, default=400,
                        help="give up after this many epochs (default: 400)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per batch size, interleaved; medians reported (default: 3)")
    args = parser.parse_args(argv)
    integers, numbers = run_arguments.integers, run_arguments.numbers
    run_arguments.check_flags(
        args, target=numbers(0, 1, low_inclusive=False), max_epochs=integers(),
        repeats=integers(),
    )
    if args.seed + args.repeats - 1 > run_arguments.MAX_SEED:  # repeat r runs at seed + r
        raise run_arguments.flag_error(
            "seed", f"at most {run_arguments.MAX_SEED} - (--repeats - 1)", args.seed)
    if args.smoke:
        args.max_epochs, args.repeats, args.target = 2, 1, 0.2
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras

    from kfound import runs
    from kfound.data import load_digits

    runs.start_run(args)
    data = load_digits(images=False, seed=args.seed)
    n_train = len(data[0][0])
    if args.smoke:
        batch_sizes = [32, n_train]
    else:
        batch_sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, n_train]

    """
    ## The measurement

    Repeats are interleaved (all batch sizes, then again), so that a burst of load on the
    machine hits every batch size rather than one.
    """
    results = {b: [] for b in batch_sizes}
    progress = keras.utils.Progbar(len(batch_sizes) * args.repeats, unit_name="run")
    for repeat in range(args.repeats):
        for batch_size in batch_sizes:
            results[batch_size].append(train_to_target(
                data, batch_size, args.target, args.max_epochs, seed=args.seed + repeat
            ))
            progress.add(1)
    rows = summarize(batch_sizes, results)
    status, verdict, best = verdict_for(rows)
    print(runs.format_table(rows))
    print(f"verdict: {status}: {verdict}")
    report = {
        "recipe": "batch_size_tradeoff",
        "chapter": "§3.5.2-3.5.5",
        "claim": "an intermediate batch size minimizes the time to a target accuracy",
        "status": status,
        "setup": {"model": "64-128-10 ReLU MLP", "optimizer": "Adam(1e-3) at every batch size",
                  "target_val_accuracy": args.target, "max_epochs": args.max_epochs,
                  "repeats": args.repeats, "backend": keras.backend.backend(),
                  "train_examples": n_train},
        "rows": rows,
        "runs": {str(b): r for b, r in results.items()},
        "optimal_batch_size": best,
        "verdict": verdict,
        "plot": "batch_size_tradeoff.png",
    }
    return runs.finish_run(args, report, plot(rows, best, args.target))


def plot(rows, best, target):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 3.8), layout="constrained")
    axes = figure.subplots(1, 3)
    sizes = np.array([r["batch_size"] for r in rows], dtype=float)
    for ax, key, label in zip(
        axes, ("epoch_time_s", "epochs_to_target", "time_to_target_s"),
        ("time per epoch (s)", f"epochs to {target:.0%} val. accuracy",
         f"time to {target:.0%} val. accuracy (s)"), strict=True,
    ):
        values = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
        ax.plot(sizes, values, marker="o")
        if best is not None:
            i = [r["batch_size"] for r in rows].index(best)
            ax.plot(sizes[i], values[i], marker="*", markersize=16, color="red",
                    label=f"fastest to target: {best}")
            ax.legend()
        ax.set_xscale("log", base=2)
        if np.nanmax(values, initial=0.0) > 0:
            ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_title(label)
    return figure


if __name__ == "__main__":
    run_arguments.run_main(main)

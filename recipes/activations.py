"""
Title: ReLU, measured: sparse activations, dying units, Leaky ReLU and time per epoch
Author: kfound developers
Date created: 2026/12/01
Last modified: 2026/12/02
Description: Tests three claims of §3.4.4-3.4.8 on an MLP trained on scikit-learn's digits:
    ReLU activations are sparse, ReLU units die under a high learning rate while Leaky ReLU
    units do not, and ReLU networks are faster than sigmoid or tanh ones.

The chapter says that ReLU's "unilateral inhibition" makes activations sparse: "the neurons
only selectively respond to a small part of the input signal" (§3.4.8); that a ReLU whose
input stays negative gets no gradient and stops training, which Leaky ReLU does not cause, so
"if we encounter some dead neurons, we can use the Leaky ReLU function" (§3.4.5-3.4.6); and
that because ReLU is "an if-else statement" while sigmoid needs floating-point arithmetic,
"using ReLU ... is usually faster than using sigmoid or tanh" (§3.4.6).

The network is an MLP on the 64-pixel digits (1,347 training and 450 validation examples):
`--depth` hidden Dense layers of `--width` units, each followed by its activation layer, and
a softmax output, trained with plain SGD at batch 32. Three measurements:

1. **Sparsity.** A ReLU net trained `--epochs` epochs at `--learning-rate`. On the
   validation digits, for each hidden layer: the share of activations that are exactly zero,
   the share of units that are zero on every example (dead), and, among the other (live)
   units, the share of examples on which a unit is zero. Sparsity that comes from dead units
   is not the selective response the book means, so the verdict reads the live units.
2. **Dying units.** The same net with ReLU and with Leaky ReLU (`--leaky-slope`), trained
   `--shock-epochs` epochs at each learning rate of `--shock-learning-rates` and then
   `--recovery-epochs` epochs back at `--learning-rate`, over `--seeds` seeds. A unit is
   stuck when its pre-activation is negative on every validation example: for ReLU that is a
   dead unit (kfound's `ActivationMonitor` counts the same on its probe batch, and the recipe
   reports both); a Leaky ReLU unit in that state still gets the gradient `slope * delta` and
   can come back. The question is whether the units stuck by the shock stay stuck.
3. **Time per epoch.** The same architecture at `--timing-width` with ReLU, sigmoid and tanh,
   trained one epoch at a time, interleaved (ReLU, sigmoid, tanh, ReLU, ...) for
   `--timing-repeats` rounds after one warm-up epoch each, in one process; the median epoch
   time (kfound's `EpochTimer`: training steps only) of each is compared.

Measured at the defaults (seed 1337; about 50 s of CPU time, 4 to 13 minutes of wall time on a
shared, overloaded 2-core machine): none of the three claims holds at this scale. The trained
ReLU net's activations are 36% zeros (52% at initialization), and its live units are zero on
29% of the examples: sparse-ish, not "a small part of the input". Three epochs at learning
rate 1.0 leave 63% of the ReLU units stuck; ten epochs back at 0.05 leave 52% dead, and Leaky
ReLU with slope 0.01 does no better (62% still stuck, validation accuracy 40% against 64%):
its negative-side gradient is 100 times smaller, too small to pull a unit back in ten epochs.
At learning rate 0.5 both keep about 23%. The epoch times of ReLU, sigmoid and tanh nets
(width 512) are within noise of each other: paired round by round, sigmoid's are 0.95x and
tanh's 0.98x ReLU's (ReLU's median epoch 0.17 s; on a loaded machine, earlier runs put
sigmoid at 0.81x to 1.31x): on a CPU the matrix products dominate an epoch, and an
exponential per activation is cheap next to them.

Usage:

```
python recipes/activations.py
python recipes/activations.py --shock-learning-rates 1.0 --seeds 3
```
"""

import argparse
import math
import warnings
import weakref

import numpy as np
from _light import run_arguments

# Keras and kfound are imported inside the functions that use them, once the flags are
# checked: under the TensorFlow backend, importing Keras imports TensorFlow (seconds).

TIMED = ("relu", "sigmoid", "tanh")

"""
## The network

Each hidden layer is a linear `Dense` layer followed by a separate activation layer, so that
the pre-activations (the Dense outputs) can be read directly.
"""


def build_model(activation, depth, width, learning_rate, seed, leaky_slope=0.01):
    import keras

    keras.utils.set_random_seed(seed)
    layers = [keras.Input((64,))]
    for i in range(depth):
        layers.append(keras.layers.Dense(width, name=f"dense_{i}"))
        if activation == "relu":
            layers.append(keras.layers.ReLU(name=f"relu_{i}"))
        elif activation == "leaky_relu":
            layers.append(keras.layers.LeakyReLU(leaky_slope, name=f"leaky_relu_{i}"))
        else:
            layers.append(keras.layers.Activation(activation, name=f"{activation}_{i}"))
    layers.append(keras.layers.Dense(10, "softmax", name="output"))
    model = keras.Sequential(layers, name=activation)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def pre_activations(model, x):
    """The outputs of every hidden Dense layer on `x`, as NumPy arrays."""
    import keras

    from kfound.callbacks.monitor import sync_jax_state

    sync_jax_state(model)  # during fit, JAX keeps the weights outside the model
    if model not in _PROBES:  # one probe per model: building one per call would retrace
        dense = [layer for layer in model.layers if layer.name.startswith("dense_")]
        _PROBES[model] = keras.Model(model.inputs[0], [layer.output for layer in dense])
    return [np.asarray(v) for v in _PROBES[model].predict_on_batch(x)]


_PROBES = weakref.WeakKeyDictionary()


def stuck_fraction(values):
    """The share of units (columns) that are <= 0 on every example (row)."""
    return float(np.mean(np.all(values <= 0, axis=0)))


def stuck_units(x):
    """A `StuckUnits` callback on `x` (a Keras class, so it is defined once Keras is imported)."""
    import keras

    class StuckUnits(keras.callbacks.Callback):
        """Records each hidden layer's share of stuck units on `x` at every epoch end."""

        def __init__(self, x):
            super().__init__()
            self.x = x

        def on_train_begin(self, logs=None):
            self.history = [[stuck_fraction(v) for v in pre_activations(self.model, self.x)]]

        def on_epoch_end(self, epoch, logs=None):
            self.history.append(
                [stuck_fraction(v) for v in pre_activations(self.model, self.x)])

    return StuckUnits(x)


"""
## 1. Sparsity
"""


def sparsity(model, x):
    rows = []
    for i, values in enumerate(pre_activations(model, x)):
        zero = values <= 0  # the ReLU output is exactly zero here
        dead = np.all(zero, axis=0)
        live = zero[:, ~dead]
        rows.append({"layer": i, "zero_fraction": float(zero.mean()),
                     "dead_fraction": float(dead.mean()),
                     "live_zero_fraction": float(live.mean()) if live.size else math.nan})
    return rows


def measure_sparsity(data, args):
    (x, y), (x_val, _) = data
    model = build_model("relu", args.depth, args.width, args.learning_rate, args.seed)
    at_init = sparsity(model, x_val)
    history = model.fit(x, y, batch_size=32, epochs=args.epochs, verbose=0).history
    trained = sparsity(model, x_val)
    return {"at_init": at_init, "trained": trained,
            "train_accuracy": float(history["accuracy"][-1])}


"""
## 2. Dying units: a shock at a high learning rate, then a recovery at the normal one
"""


def shock_run(activation, shock_rate, seed, data, args):
    import keras

    from kfound.callbacks import ActivationMonitor

    (x, y), (x_val, y_val) = data
    model = build_model(activation, args.depth, args.width, shock_rate, seed, args.leaky_slope)
    epochs = args.shock_epochs + args.recovery_epochs
    schedule = keras.callbacks.LearningRateScheduler(
        lambda epoch: shock_rate if epoch < args.shock_epochs else args.learning_rate
    )
    stuck = stuck_units(x_val)
    callbacks = [schedule, stuck]
    if activation == "relu":
        monitor = ActivationMonitor(probe_data=x_val[: args.probe_size])
        callbacks.append(monitor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the monitor's findings are recorded, not printed
        history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=callbacks,
                            validation_data=(x_val, y_val)).history
    per_epoch = np.mean(stuck.history, axis=1)  # mean over hidden layers, epoch 0 = init
    result = {
        "stuck_after_shock": float(per_epoch[args.shock_epochs]),
        "stuck_after_recovery": float(per_epoch[-1]),
        "stuck_per_epoch": per_epoch.tolist(),
        "val_accuracy": [float(a) for a in history["val_accuracy"]],
    }
    if activation == "relu":
        dead = monitor.history["dead_fraction"]
        relu_layers = [i for i, name in enumerate(monitor.history["layers"])
                       if name.startswith("relu_")]
        result["monitor_dead_after_recovery"] = float(np.mean(dead[-1, relu_layers]))
        result["monitor_findings"] = sorted({p["kind"] for p in monitor.problems})
    return result


def summarize_shock(results):
    from kfound import theory

    rows = []
    for (activation, rate), runs_ in results.items():
        after_shock, _ = theory.mean_and_spread([r["stuck_after_shock"] for r in runs_])
        stuck, stuck_sd = theory.mean_and_spread([r["stuck_after_recovery"] for r in runs_])
        accuracy, _ = theory.mean_and_spread([r["val_accuracy"][-1] for r in runs_])
        row = {"activation": activation, "shock_learning_rate": rate,
               "stuck_after_shock": after_shock, "stuck_after_recovery": stuck,
               "stuck_sd": stuck_sd, "val_accuracy": accuracy}
        if activation == "relu":
            row["monitor_dead"] = float(np.mean(
                [r["monitor_dead_after_recovery"] for r in runs_]))
        rows.append(row)
    return rows


"""
## 3. Time per epoch, interleaved
"""


def measure_timing(data, args):
    from kfound.callbacks import EpochTimer

    (x, y), _ = data
    models = {a: build_model(a, args.depth, args.timing_width, args.learning_rate, args.seed)
              for a in TIMED}
    times = {a: [] for a in TIMED}
    for round_ in range(args.timing_repeats + 1):  # round 0 warms up (tracing, compiling)
        for activation, model in models.items():
            timer = EpochTimer()
            model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[timer])
            if round_:
                times[activation].extend(timer.epoch_times)
    return {a: {"median_epoch_seconds": float(np.median(t)), "epoch_seconds": t}
            for a, t in times.items()}


"""
## The verdicts

- **Sparse**: confirmed when the live ReLU units of the trained net are zero on at least
  `--sparse-threshold` of the validation examples (mean over layers); holds only under
  conditions when only the share of zeros counting dead units reaches it; else not confirmed.
- **Dying**: for each shock rate, ReLU "dies" when its stuck share after the recovery exceeds
  `--dead-threshold`, and Leaky ReLU "avoids it" when its stuck share after recovery is lower
  than ReLU's by more than their spread across seeds. Confirmed when both hold at every shock
  rate, holds only under conditions when both hold at some, not confirmed otherwise.
- **Faster**: each sigmoid or tanh epoch against the ReLU epoch of the same round (the
  rounds are interleaved, so a change in the machine's load hits both alike). An activation
  is slower when the geometric mean of these paired ratios exceeds `1 + --time-margin` and
  the mean log-ratio exceeds twice its standard error across rounds: a difference inside the
  noise does not count. Confirmed when both are slower, not confirmed when neither is, holds
  only under conditions otherwise.

The overall status is confirmed when all three are, not confirmed when none is, and holds
only under conditions otherwise.
"""


def sparse_verdict(trained, threshold):
    live = float(np.nanmean([r["live_zero_fraction"] for r in trained]))
    overall = float(np.mean([r["zero_fraction"] for r in trained]))
    dead = float(np.mean([r["dead_fraction"] for r in trained]))
    if live >= threshold:
        status = "confirmed"
    elif overall >= threshold:
        status = "holds only under conditions"
    else:
        status = "not confirmed"
    text = (f"sparse {status}: trained ReLU activations are {overall:.0%} zeros; live units "
            f"are zero on {live:.0%} of examples, {dead:.0%} of units dead")
    return status, text


def dying_verdict(rows, dead_threshold):
    rates = sorted({r["shock_learning_rate"] for r in rows})
    holds, parts = [], []
    for rate in rates:
        by = {r["activation"]: r for r in rows if r["shock_learning_rate"] == rate}
        relu, leaky = by["relu"], by["leaky_relu"]
        dies = relu["stuck_after_recovery"] > dead_threshold
        spread = max(relu["stuck_sd"], leaky["stuck_sd"])
        avoids = relu["stuck_after_recovery"] - leaky["stuck_after_recovery"] > spread
        holds.append(dies and avoids)
        parts.append(f"lr {rate:g}: ReLU {relu['stuck_after_recovery']:.0%} dead, Leaky "
                     f"{leaky['stuck_after_recovery']:.0%} stuck after recovery (val acc "
                     f"{relu['val_accuracy']:.0%} vs {leaky['val_accuracy']:.0%})")
    status = ("confirmed" if all(holds) else
              "holds only under conditions" if any(holds) else "not confirmed")
    return status, f"dying/Leaky {status}: " + "; ".join(parts)


def speed_verdict(timing, margin):
    relu = np.asarray(timing["relu"]["epoch_seconds"])
    ratios, slower = {}, []
    for a in TIMED:
        if a == "relu":
            continue
        logs = np.log(np.asarray(timing[a]["epoch_seconds"]) / relu)
        error = float(np.std(logs, ddof=1) / np.sqrt(len(logs))) if len(logs) > 1 else math.inf
        ratios[a] = float(np.exp(np.mean(logs)))
        slower.append(bool(ratios[a] > 1.0 + margin and np.mean(logs) > 2 * error))
    status = ("confirmed" if all(slower) else
              "not confirmed" if not any(slower) else "holds only under conditions")
    listed = ", ".join(f"{a} {r:.2f}x{'' if s else ' (within noise)' if r > 1.0 + margin else ''}"
                       for (a, r), s in zip(ratios.items(), slower, strict=True))
    relu = timing["relu"]["median_epoch_seconds"]
    return status, (f"ReLU faster {status}: epoch time relative to ReLU's (median "
                    f"{relu:.3f} s), geometric mean over paired rounds: {listed}")


def overall_status(statuses):
    if all(s == "confirmed" for s in statuses):
        return "confirmed"
    if all(s == "not confirmed" for s in statuses):
        return "not confirmed"
    return "holds only under conditions"


def plot(shock, sparse, timing, args):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 8), layout="constrained")
    (stuck_ax, acc_ax), (sparse_ax, time_ax) = figure.subplots(2, 2)
    for i, rate in enumerate(sorted({rate for _, rate in shock})):
        for activation, style in (("relu", "-"), ("leaky_relu", "--")):
            runs_ = shock[(activation, rate)]
            label = f"{activation}, shock lr {rate:g}"
            stuck_ax.plot(np.mean([r["stuck_per_epoch"] for r in runs_], axis=0), style,
                          color=f"C{i}", label=label)
            acc = np.mean([r["val_accuracy"] for r in runs_], axis=0)
            acc_ax.plot(range(1, len(acc) + 1), acc, style, color=f"C{i}", label=label)
    for ax in (stuck_ax, acc_ax):
        ax.axvline(args.shock_epochs, color="gray", linewidth=0.5)
        ax.set_xlabel("epoch (shock, then recovery at the normal rate)")
    stuck_ax.set_ylabel("share of hidden units stuck negative")
    stuck_ax.legend(fontsize="x-small")
    acc_ax.set_ylabel("validation accuracy")
    layers = np.arange(args.depth)
    for offset, key, label in ((-0.2, "at_init", "at init"), (0.2, "trained", "trained")):
        sparse_ax.bar(layers + offset, [r["zero_fraction"] for r in sparse[key]], 0.4,
                      label=f"all units, {label}")
        sparse_ax.scatter(layers + offset, [r["live_zero_fraction"] for r in sparse[key]],
                          color="k", marker="x", zorder=3)
    sparse_ax.set_xticks(layers)
    sparse_ax.set_xlabel("hidden layer (x: live units only)")
    sparse_ax.set_ylabel("share of ReLU outputs that are zero")
    sparse_ax.legend(fontsize="small")
    time_ax.boxplot([timing[a]["epoch_seconds"] for a in TIMED])
    time_ax.set_xticks(range(1, len(TIMED) + 1), TIMED)
    time_ax.set_ylabel(f"epoch time (s), width {args.timing_width}")
    return figure


def parse_args(argv=None):
    """Parses and checks the flags, importing neither Keras nor kfound's package.

    Raises:
        ValueError: naming the first bad flag.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run_arguments.add_run_arguments(parser, run_name="activations", not_results=())
    parser.add_argument("--depth", type=int, default=3, help="hidden layers (default: 3)")
    parser.add_argument("--width", type=int, default=128, help="units per layer (default: 128)")
    parser.add_argument("--learning-rate", type=float, default=0.05,
                        help="the normal SGD learning rate (default: 0.05)")
    parser.add_argument("--epochs", type=int, default=20,
                        help="epochs of the sparsity run (default: 20)")
    parser.add_argument("--shock-learning-rates", nargs="+", type=float, default=[0.5, 1.0],
                        help="high learning rates of the shock phase (default: 0.5 1.0)")
    parser.add_argument("--shock-epochs", type=int, default=3,
                        help="epochs at the high learning rate (default: 3)")
    parser.add_argument("--recovery-epochs", type=int, default=10,
                        help="epochs back at the normal learning rate (default: 10)")
    parser.add_argument("--leaky-slope", type=float, default=0.01,
                        help="Leaky ReLU's negative slope (default: 0.01, Maas et al.)")
    parser.add_argument("--seeds", type=int, default=2,
                        help="seeds per shock setting (default: 2)")
    parser.add_argument("--probe-size", type=int, default=256,
                        help="validation examples in ActivationMonitor's probe (default: 256)")
    parser.add_argument("--timing-width", type=int, default=512,
                        help="units per layer of the timed nets (default: 512)")
    parser.add_argument("--timing-repeats", type=int, default=7,
                        help="interleaved timed epochs per activation (default: 7)")
    parser.add_argument("--sparse-threshold", type=float, default=0.5,
                        help="share of zeros that counts as sparse (default: 0.5)")
    parser.add_argument("--dead-threshold", type=float, default=0.1,
                        help="share of dead units that counts as dying (default: 0.1)")
    parser.add_argument("--time-margin", type=float, default=0.05,
                        help="relative epoch-time difference that counts (default: 0.05)")
    args = parser.parse_args(argv)
    integers, numbers = run_arguments.integers, run_arguments.numbers
    positive, share = numbers(0, low_inclusive=False), numbers(0, 1, high_inclusive=False)
    run_arguments.check_flags(
        args, depth=integers(), width=integers(), learning_rate=positive, epochs=integers(),
        shock_learning_rates=positive, shock_epochs=integers(), recovery_epochs=integers(),
        leaky_slope=positive, seeds=integers(), probe_size=integers(),
        timing_width=integers(), timing_repeats=integers(), sparse_threshold=share,
        dead_threshold=share, time_margin=positive,
    )
    if args.smoke:
        args.depth, args.width, args.timing_width, args.epochs = 2, 16, 32, 1
        args.shock_learning_rates, args.shock_epochs, args.recovery_epochs = [1.0], 1, 1
        args.seeds, args.timing_repeats = 1, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras

    from kfound import runs
    from kfound.data import load_digits

    runs.start_run(args)
    data = load_digits(images=False, seed=args.seed)
    if args.smoke:
        (x, y), (x_val, y_val) = data
        data = (x[:256], y[:256]), (x_val[:128], y_val[:128])

    settings = [(a, rate) for rate in args.shock_learning_rates for a in ("relu", "leaky_relu")]
    progress = keras.utils.Progbar(2 + len(settings) * args.seeds, unit_name="part")
    sparse = measure_sparsity(data, args)
    progress.add(1)
    shock = {}
    for seed in range(args.seed, args.seed + args.seeds):
        for activation, rate in settings:
            shock.setdefault((activation, rate), []).append(
                shock_run(activation, rate, seed, data, args))
            progress.add(1)
    timing = measure_timing(data, args)
    progress.add(1)

    shock_rows = summarize_shock(shock)
    statuses, texts = zip(
        sparse_verdict(sparse["trained"], args.sparse_threshold),
        dying_verdict(shock_rows, args.dead_threshold),
        speed_verdict(timing, args.time_margin), strict=True,
    )
    status = overall_status(statuses)
    verdict = f"{status}: " + "; ".join(texts) + "."
    timing_rows = [{"activation": a, "median_epoch_seconds": t["median_epoch_seconds"],
                    "relative_to_relu": t["median_epoch_seconds"]
                    / timing["relu"]["median_epoch_seconds"]} for a, t in timing.items()]
    print(runs.format_table(sparse["trained"]))
    print(runs.format_table(shock_rows))
    print(runs.format_table(timing_rows))
    print(f"verdict: {verdict}")
    report = {
        "recipe": "activations",
        "chapter": "§3.4.4-3.4.8",
        "claim": "ReLU activations are sparse; ReLU units die under a high learning rate and "
                 "Leaky ReLU avoids it; ReLU networks train faster than sigmoid or tanh ones.",
        "status": status,
        "verdict": verdict,
        "plot": "activations.png",
        "statuses": dict(zip(("sparse", "dying_and_leaky", "relu_faster"), statuses,
                             strict=True)),
        "setup": {"model": f"64-{args.depth}x{args.width}-10 MLP, plain SGD, batch 32",
                  "learning_rate": args.learning_rate, "epochs": args.epochs,
                  "shock_learning_rates": args.shock_learning_rates,
                  "shock_epochs": args.shock_epochs, "recovery_epochs": args.recovery_epochs,
                  "leaky_slope": args.leaky_slope, "seeds": args.seeds,
                  "timing_width": args.timing_width, "timing_repeats": args.timing_repeats},
        "sparsity": sparse,
        "rows": shock_rows,
        "shock_runs": [{"activation": a, "shock_learning_rate": r, "runs": v}
                       for (a, r), v in shock.items()],
        "timing": timing,
    }
    return runs.finish_run(args, report, plot(shock, sparse, timing, args))


if __name__ == "__main__":
    run_arguments.run_main(main)

"""
Title: Which dropout rate, and does max-norm help?
Description: Tests §3.12.4's "a hidden dropout rate of 0.5 is best" and "dropout plus
    max-norm is better" on a wide MLP that over-fits a small subset of scikit-learn's digits.
Run time: about 9 minutes on 2 CPU cores (`--smoke`: seconds).

The chapter (after Srivastava et al., 2014, "Dropout: A Simple Way to Prevent Neural Networks
from Overfitting") says that cross-validation finds a hidden-unit dropout rate of 0.5 best, and
that max-norm regularization of the weights (each unit's incoming weight vector kept inside a
ball of radius c) is "very useful" with dropout, notably with large learning rates.

The setup over-fits on purpose: two hidden layers of 512 ReLU units (about 300k weights)
trained on 300 digits (`--train-size`), validated on the 450 held-out digits. Every run uses
SGD with momentum 0.9 at learning rate 0.05 (a high rate, the regime the paper pairs with
max-norm), batch 32, and a fixed number of epochs; the validation error is read at the end.
Only the dropout rate (applied after both hidden layers) and the max-norm constraint
(`keras.constraints.MaxNorm(c)`, c = 3 as in the paper) change. Each setting runs with
`--seeds` seeds and the recipe reports mean and standard deviation.

Usage:

```
python recipes/dropout_rate.py
```
"""

import argparse

import numpy as np
from _light import run_arguments

# Keras and kfound are imported inside the functions that use them, once the flags are
# checked: under the TensorFlow backend, importing Keras imports TensorFlow (seconds).

# kfound.data.load_digits keeps 1,347 of the 1,797 digits for training (its validation
# share is 0.25). The stratified subset needs at least one example of each of the 10
# classes on either side of its split.
TRAIN_EXAMPLES, CLASSES = 1347, 10

"""
## An over-fitting setup
"""


def small_subset(x, y, size, seed):
    from sklearn.model_selection import train_test_split

    x_small, _, y_small, _ = train_test_split(
        x, y, train_size=size, random_state=seed, stratify=y
    )
    return x_small, y_small


def build_model(rate, max_norm, width, learning_rate, seed):
    import keras

    keras.utils.set_random_seed(seed)
    constraint = keras.constraints.MaxNorm(max_norm) if max_norm else None
    layers = [keras.Input((64,))]
    for _ in range(2):
        layers += [keras.layers.Dense(width, activation="relu", kernel_constraint=constraint),
                   keras.layers.Dropout(rate)]
    layers.append(keras.layers.Dense(10, activation="softmax", kernel_constraint=constraint))
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def run_one(data, rate, max_norm, args, seed):
    (x, y), (x_val, y_val) = data
    model = build_model(rate, max_norm, args.width, args.learning_rate, seed)
    history = model.fit(x, y, batch_size=32, epochs=args.epochs, verbose=0).history
    _, val_accuracy = model.evaluate(x_val, y_val, batch_size=len(x_val), verbose=0)
    return {"train_error": 1.0 - float(history["accuracy"][-1]),
            "val_error": 1.0 - float(val_accuracy)}


"""
## The verdicts

"0.5 is best" holds when 0.5 has the lowest mean validation error; it holds only under
conditions when another rate is best but 0.5 is within one standard deviation (across seeds)
of it. "Dropout plus max-norm is better" holds when the best dropout run with max-norm beats
the best without by more than their spread. The recipe's status is "confirmed" when both
parts are, "not confirmed" when neither holds at all, and "holds only under conditions"
otherwise.
"""


def verdict_for(rows):
    from kfound import theory

    def best(norm):
        candidates = [r for r in rows if r["max_norm"] == norm and r["rate"] > 0]
        return min(candidates, key=lambda r: r["val_error"])

    plain = [r for r in rows if not r["max_norm"]]
    top = min(plain, key=lambda r: r["val_error"])
    half = next((r for r in plain if r["rate"] == 0.5), None)
    if half is None:
        first = "0.5 was not run"
        half_status = "not confirmed"
    else:
        # Choosing 0.5 over the best rate "hurts" when it loses more than their spread.
        loss = theory.classify_gain(top["val_error"] - half["val_error"],
                                    max(half["val_sd"], top["val_sd"]))
        if top["rate"] == 0.5:
            half_status = "confirmed"
        elif loss == "hurts":
            half_status = "not confirmed"
        else:
            half_status = "holds only under conditions"
        none = next((r for r in plain if r["rate"] == 0), None)  # --rates may leave 0 out
        first = (f"'0.5 is best' {half_status}: best rate {top['rate']:.1f} "
                 f"({top['val_error']:.2%} +- {top['val_sd']:.2%}), 0.5 gives "
                 f"{half['val_error']:.2%} +- {half['val_sd']:.2%}"
                 + (f", no dropout {none['val_error']:.2%}" if none else ""))
    norms = sorted({r["max_norm"] for r in rows if r["max_norm"]})
    if not norms:
        return first, half_status, "not run"
    with_norm, without = best(norms[0]), best(None)
    margin = without["val_error"] - with_norm["val_error"]
    spread = max(with_norm["val_sd"], without["val_sd"])
    effect = theory.classify_gain(margin, spread)
    if effect == "helps":
        norm_status = "confirmed"
    elif effect == "no clear effect" and margin > 0:
        norm_status = "holds only under conditions"
    else:
        norm_status = "not confirmed"
    second = (f"'dropout plus max-norm is better' {norm_status}: best with max-norm "
              f"{with_norm['val_error']:.2%} (rate {with_norm['rate']:.1f}) vs without "
              f"{without['val_error']:.2%} (rate {without['rate']:.1f}), spread "
              f"{spread:.2%}")
    return f"{first}; {second}.", half_status, norm_status


def overall_status(*statuses):
    """One status for a claim made of parts (a part that was not run does not count)."""
    statuses = [s for s in statuses if s != "not run"]
    if all(s == "confirmed" for s in statuses):
        return "confirmed"
    if all(s == "not confirmed" for s in statuses):
        return "not confirmed"
    return "holds only under conditions"


def parse_args(argv=None):
    """Parses and checks the flags, importing neither Keras nor kfound's package.

    Raises:
        ValueError: naming the first bad flag.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run_arguments.add_run_arguments(parser, run_name="dropout_rate", not_results=())
    parser.add_argument("--rates", nargs="+", type=float,
                        default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
                        help="hidden dropout rates (default: 0.0 to 0.8 by 0.1)")
    parser.add_argument("--max-norm", type=float, default=3.0,
                        help="radius c of keras.constraints.MaxNorm (default: 3, the paper's)")
    parser.add_argument("--train-size", type=int, default=300,
                        help="training examples, a stratified subset (default: 300)")
    parser.add_argument("--width", type=int, default=512, help="hidden units (default: 512)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs (default: 100)")
    parser.add_argument("--learning-rate", type=float, default=0.05,
                        help="SGD learning rate, momentum 0.9 (default: 0.05)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (default: 3)")
    args = parser.parse_args(argv)
    integers, numbers = run_arguments.integers, run_arguments.numbers
    run_arguments.check_flags(
        args, rates=numbers(0, 1, high_inclusive=False),
        max_norm=numbers(0, low_inclusive=False),
        train_size=integers(CLASSES, TRAIN_EXAMPLES - CLASSES), width=integers(),
        epochs=integers(), learning_rate=numbers(0, low_inclusive=False), seeds=integers(),
    )
    # The max-norm comparison is between the best dropout runs with and without it.
    if max(args.rates) <= 0:
        raise run_arguments.flag_error("rates", "a list with at least one rate above 0",
                                       args.rates)
    if args.smoke:
        args.rates, args.train_size, args.width = [0.0, 0.5], 100, 32
        args.epochs, args.seeds = 2, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras

    from kfound import runs, theory
    from kfound.data import load_digits

    runs.start_run(args)
    (x, y), validation = load_digits(images=False, seed=args.seed)
    data = (small_subset(x, y, args.train_size, args.seed), validation)

    """
    ## The sweep
    """
    settings = [(rate, norm) for norm in (None, args.max_norm) for rate in args.rates]
    progress = keras.utils.Progbar(len(settings) * args.seeds, unit_name="run")
    results = {}
    for seed in range(args.seed, args.seed + args.seeds):  # seeds outermost: load hits all
        for rate, norm in settings:
            results.setdefault((rate, norm), []).append(run_one(data, rate, norm, args, seed))
            progress.add(1)
    rows = []
    for (rate, norm), runs_ in results.items():
        val, val_sd = theory.mean_and_spread([r["val_error"] for r in runs_])
        train, _ = theory.mean_and_spread([r["train_error"] for r in runs_])
        rows.append({"rate": rate, "max_norm": norm, "train_error": train,
                     "val_error": val, "val_sd": val_sd})
    verdict, half_status, norm_status = verdict_for(rows)
    status = overall_status(half_status, norm_status)
    print(runs.format_table(rows))
    print(f"verdict: {status}: {verdict}")
    report = {
        "recipe": "dropout_rate",
        "chapter": "§3.12.3-3.12.5",
        "claim": "a hidden dropout rate of 0.5 is best; dropout plus max-norm is better",
        "status": status,
        "setup": {"model": f"64-{args.width}-{args.width}-10 ReLU MLP, dropout after each "
                           "hidden layer", "optimizer": f"SGD({args.learning_rate}, momentum 0.9)",
                  "train_size": args.train_size, "validation_size": len(validation[0]),
                  "epochs": args.epochs, "seeds": args.seeds, "max_norm": args.max_norm},
        "rows": rows,
        "runs": [{"rate": r, "max_norm": n, "runs": v} for (r, n), v in results.items()],
        "half_is_best": half_status,
        "max_norm_helps": norm_status,
        "verdict": verdict,
        "plot": "dropout_rate.png",
    }
    return runs.finish_run(args, report, plot(rows, args))


def plot(rows, args):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.add_subplot()
    variants = ((None, "dropout"), (args.max_norm, f"dropout + max-norm (c={args.max_norm:g})"))
    for norm, label in variants:
        sel = [r for r in rows if r["max_norm"] == norm]
        rates = np.array([r["rate"] for r in sel])
        val = np.array([r["val_error"] for r in sel])
        sd = np.array([r["val_sd"] for r in sel])
        ax.errorbar(rates, val, yerr=sd, marker="o", capsize=3, label=f"{label}: validation")
        ax.plot(rates, [r["train_error"] for r in sel], linestyle=":",
                label=f"{label}: training")
    ax.axvline(0.5, color="gray", linewidth=0.5)
    ax.set_xlabel("hidden dropout rate")
    ax.set_ylabel("error")
    ax.set_title(f"{args.train_size} digits, 2x{args.width} MLP, mean +- sd of {args.seeds} seeds")
    ax.legend()
    return figure


if __name__ == "__main__":
    run_arguments.run_main(main)

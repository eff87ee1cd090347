"""
Title: Input normalization and the speed of gradient descent
Description: Tests §3.6.3-3.6.5 ("normalization improves the solution speed"; the "zigzag") on
    scikit-learn's wine data: raw, min-max, standardized and log features, and the measured
    path of gradient descent over the loss contours of a 2-D problem.
Run time: about 2 minutes on 2 CPU cores (`--smoke`: seconds).

The chapter says that gradient descent on unnormalized features takes a "zigzag" (or "L")
route across elongated loss contours and needs many iterations, while normalized features give
round contours and fast convergence; it lists min-max scaling, standardization and nonlinear
(log) transforms. This recipe measures both pictures on real data whose features differ in
scale by three orders of magnitude: the 13 chemical measurements of scikit-learn's bundled
wine dataset (standard deviations from 0.12 for nonflavanoid phenols to 314 for proline).

1. The same MLP, the same optimizer and learning rate, on each version of the features:
   training-loss curves, final validation accuracy, over `--seeds` seeds. Plain SGD is the
   optimizer the book reasons about; Adam is run too, because its per-weight step sizes undo
   part of the effect, and the verdict must say under which optimizer the claim holds.
2. A 2-D least-squares problem (two wine features, alcohol and magnesium, whose standard
   deviations differ 17-fold like the book's [-10, 10] vs [-100, 100]): full-batch gradient
   descent with `keras.optimizers.SGD`, the weights recorded after every step, drawn over the
   exact loss contours, raw vs standardized. Each problem gets the same fraction
   (`--lr-fraction`, default 0.9) of its own largest stable learning rate `2 / lambda_max`,
   so neither is handicapped by a badly chosen step size.

Usage:

```
python recipes/input_normalization.py
```
"""

import argparse

import numpy as np
from _light import run_arguments

# Keras and kfound are imported inside the functions that use them, once the flags are
# checked: under the TensorFlow backend, importing Keras imports TensorFlow (seconds).

"""
## Data and the four feature versions

Every transform is a scikit-learn transformer fitted on the training split only.
"""


def transforms():
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler

    return {
        "raw": FunctionTransformer(),
        "min-max": MinMaxScaler(),
        "standardized": StandardScaler(),
        "log": FunctionTransformer(np.log1p),  # every wine feature is positive
    }


def wine_split(seed):
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    bunch = load_wine()
    return bunch, train_test_split(
        bunch.data, bunch.target, test_size=0.3, random_state=seed, stratify=bunch.target
    )


"""
## Part 1: the same model on each feature version
"""


def build_model(optimizer, learning_rate, seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((13,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
    ])
    optimizers = {"SGD": keras.optimizers.SGD, "Adam": keras.optimizers.Adam}
    model.compile(optimizer=optimizers[optimizer](learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(x, y, x_val, y_val, optimizer, learning_rate, epochs, seed):
    import keras

    model = build_model(optimizer, learning_rate, seed)
    history = model.fit(
        x, y, batch_size=16, epochs=epochs, validation_data=(x_val, y_val), verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN()],
    ).history
    losses = history["loss"]
    diverged = not np.isfinite(losses[-1])
    return {
        "loss": losses,
        "diverged": diverged,
        "final_loss": float("nan") if diverged else float(losses[-1]),
        "val_accuracy": float("nan") if diverged else float(history["val_accuracy"][-1]),
    }


def part1(args):
    import keras

    _, (x, x_val, y, y_val) = wine_split(args.seed)
    results = {}
    progress = keras.utils.Progbar(len(args.optimizers) * 4 * args.seeds, unit_name="run")
    for optimizer, learning_rate in zip(args.optimizers, args.learning_rates, strict=True):
        for name, transform in transforms().items():
            xt = transform.fit_transform(x).astype("float32")
            xv = transform.transform(x_val).astype("float32")
            runs_ = []
            for seed in range(args.seed, args.seed + args.seeds):
                runs_.append(train(xt, y, xv, y_val, optimizer, learning_rate, args.epochs, seed))
                progress.add(1)
            results[(optimizer, name)] = runs_
    return results


def part1_rows(results):
    from kfound import theory

    rows = []
    for (optimizer, name), runs_ in results.items():
        finite = [r for r in runs_ if not r["diverged"]]
        row = {"optimizer": optimizer, "features": name,
               "diverged": f"{len(runs_) - len(finite)}/{len(runs_)}"}
        if finite:
            loss, loss_sd = theory.mean_and_spread([r["final_loss"] for r in finite])
            acc, acc_sd = theory.mean_and_spread([r["val_accuracy"] for r in finite])
            half = [theory.epochs_to_target(r["loss"], 0.5 * r["loss"][0], False) for r in finite]
            row.update({
                "final_loss": loss, "loss_sd": loss_sd, "val_accuracy": acc, "acc_sd": acc_sd,
                "epochs_to_half_loss": (float(np.median(half)) if None not in half else None),
            })
        rows.append(row)
    return rows


"""
## Part 2: the optimizer's path over the loss contours

The model is `keras.layers.Dense(1, use_bias=False)` on two centered features, started at
zero, trained by full-batch `SGD` on the mean squared error against the centered indicator of
cultivar 0. Centering isolates what the book's figure is about, the features' scales; the
loss is an exact quadratic, so its contours are ellipses whose axes are set by the feature
scales, and its minimum is known in closed form. A `LambdaCallback` records the weights after
every step.
"""

PATH_FEATURES = ("alcohol", "magnesium")


def path_problem(seed, standardize):
    bunch, (x, _, y, _) = wine_split(seed)
    columns = [list(bunch.feature_names).index(f) for f in PATH_FEATURES]
    x = x[:, columns] - x[:, columns].mean(axis=0)
    if standardize:
        x = x / x.std(axis=0)
    y = (y == 0).astype("float64")
    return x.astype("float32"), (y - y.mean()).astype("float32")


def descend(x, y, lr_fraction, steps):
    import keras

    from kfound import theory

    limit, condition = theory.gradient_descent_limit(x)
    learning_rate = lr_fraction * limit
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    path = [np.zeros(2)]
    # Full-batch steps, one call each, so that the weights can be read after every step on
    # every backend (under JAX, `fit` keeps them in its own state until it returns).
    for _ in range(steps):
        model.train_on_batch(x, y)
        path.append(keras.ops.convert_to_numpy(model.layers[0].kernel)[:, 0].astype("float64"))
    path = np.array(path)
    optimum = np.linalg.lstsq(x.astype("float64"), y.astype("float64"), rcond=None)[0]
    losses = [_mse(x, y, w) for w in path]
    best = _mse(x, y, optimum)
    # Steps until the excess loss is 1% of where it started.
    excess = np.array(losses) - best
    steps_to_1pct = theory.epochs_to_target(excess[1:], 0.01 * excess[0], higher_is_better=False)
    return {"path": path, "optimum": optimum, "learning_rate": learning_rate,
            "condition_number": condition, "steps_to_1pct": steps_to_1pct,
            "final_excess_loss": float(excess[-1]), "initial_excess_loss": float(excess[0])}


def _mse(x, y, w):
    return float(np.mean((x.astype("float64") @ w - y) ** 2))


"""
## The run
"""


def parse_args(argv=None):
    """Parses and checks the flags, importing neither Keras nor kfound's package.

    Raises:
        ValueError: naming the first bad flag.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run_arguments.add_run_arguments(parser, run_name="input_normalization", not_results=())
    parser.add_argument("--epochs", type=int, default=100, help="epochs per run (default: 100)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (default: 3)")
    parser.add_argument("--optimizers", nargs="+", default=["SGD", "Adam"],
                        choices=["SGD", "Adam"], help="optimizers to run (default: SGD Adam)")
    parser.add_argument("--learning-rates", nargs="+", type=float, default=[0.01, 0.001],
                        help="one learning rate per optimizer (default: 0.01 0.001, the "
                             "Keras defaults)")
    parser.add_argument("--steps", type=int, default=60,
                        help="gradient-descent steps on the 2-D problem (default: 60)")
    parser.add_argument("--lr-fraction", type=float, default=0.9,
                        help="2-D problem: learning rate as a fraction of 2 / lambda_max "
                             "(default: 0.9)")
    args = parser.parse_args(argv)
    integers, numbers = run_arguments.integers, run_arguments.numbers
    run_arguments.check_flags(
        args, epochs=integers(), seeds=integers(), steps=integers(),
        lr_fraction=numbers(0, low_inclusive=False),
        # One per optimizer: two optimizers may share a learning rate.
        learning_rates=run_arguments.repeatable(numbers(0, low_inclusive=False)),
    )
    if len(set(args.optimizers)) < len(args.optimizers):
        raise run_arguments.flag_error("optimizers", "a list of distinct optimizers",
                                       args.optimizers)
    if len(args.learning_rates) != len(args.optimizers):
        raise run_arguments.flag_error(
            "learning_rates", f"one value per optimizer (--optimizers {' '.join(args.optimizers)})",
            args.learning_rates)
    if args.smoke:
        args.epochs, args.seeds, args.steps = 2, 1, 5
        args.optimizers, args.learning_rates = args.optimizers[:1], args.learning_rates[:1]
    return args


def main(argv=None):
    args = parse_args(argv)
    from kfound import runs

    runs.start_run(args)

    results = part1(args)
    rows = part1_rows(results)
    paths = {name: descend(*path_problem(args.seed, name == "standardized"),
                           args.lr_fraction, args.steps)
             for name in ("raw", "standardized")}
    path_rows = [{"features": name, "condition_number": p["condition_number"],
                  "learning_rate": p["learning_rate"], "steps_to_1pct": p["steps_to_1pct"],
                  "final_excess_loss": p["final_excess_loss"]} for name, p in paths.items()]
    status, verdict = verdict_for(rows, paths, args)
    print(runs.format_table(rows))
    print()
    print(runs.format_table(path_rows, floatfmt="{:.4g}"))
    print(f"verdict: {status}: {verdict}")
    report = {
        "recipe": "input_normalization",
        "chapter": "§3.6.3-3.6.5",
        "claim": "normalized inputs make gradient descent converge faster; raw ones zigzag",
        "status": status,
        "setup": {"data": "sklearn wine, 70/30 stratified split",
                  "model": "13-32-3 ReLU MLP, batch 16", "epochs": args.epochs,
                  "seeds": args.seeds,
                  "optimizers": dict(zip(args.optimizers, args.learning_rates, strict=True)),
                  "path_features": PATH_FEATURES, "path_lr_fraction": args.lr_fraction},
        "rows": rows,
        "loss_curves": {f"{o}/{n}": [r["loss"] for r in v] for (o, n), v in results.items()},
        "path": {name: {**row, "weights": paths[name]["path"], "optimum": paths[name]["optimum"]}
                 for name, row in zip(paths, path_rows, strict=True)},
        "verdict": verdict,
        "plot": "input_normalization.png",
    }
    return runs.finish_run(args, report, plot(results, paths, args))


def verdict_for(rows, paths, args):
    by = {(r["optimizer"], r["features"]): r for r in rows}
    parts = []
    holds = []
    for optimizer in args.optimizers:
        raw, std = by[(optimizer, "raw")], by[(optimizer, "standardized")]
        raw_loss = raw.get("final_loss", float("inf"))
        std_loss = std.get("final_loss", float("inf"))
        holds.append(std_loss < raw_loss)
        parts.append(
            f"{optimizer}: final loss raw {_fmt(raw)} vs min-max {_fmt(by[(optimizer, 'min-max')])}"
            f" vs standardized {_fmt(std)} vs log {_fmt(by[(optimizer, 'log')])}"
        )
    raw_p, std_p = paths["raw"], paths["standardized"]
    parts.append(
        f"2-D path: condition number {raw_p['condition_number']:.0f} raw vs "
        f"{std_p['condition_number']:.2f} standardized; steps to 1% excess loss "
        f"{_steps(raw_p, args)} vs {_steps(std_p, args)}"
    )
    if all(holds):
        status = "confirmed"
    elif any(holds):
        status = "holds only under conditions"
    else:
        status = "not confirmed"
    return status, "; ".join(parts) + "."


def _steps(path, args):
    return path["steps_to_1pct"] or f"more than {args.steps}"


def _fmt(row):
    if "final_loss" not in row:
        return "diverged"
    return f"{row['final_loss']:.3f}"


def plot(results, paths, args):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 8), layout="constrained")
    axes = figure.subplots(2, 2)
    for ax, optimizer in zip(axes[0], args.optimizers, strict=False):
        for (opt, name), runs_ in results.items():
            if opt != optimizer:
                continue
            curves = np.full((len(runs_), args.epochs), np.nan)
            for i, r in enumerate(runs_):
                curves[i, :len(r["loss"])] = r["loss"]
            ax.plot(np.arange(1, args.epochs + 1), np.nanmedian(curves, axis=0), label=name)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (median over seeds)")
        ax.set_title(f"{optimizer}, same model and learning rate")
        ax.legend()
    for ax, (name, p) in zip(axes[1], paths.items(), strict=True):
        x, y = path_problem(args.seed, name == "standardized")
        path, optimum = p["path"], p["optimum"]
        # One scale on both axes, so elongated contours look elongated.
        span = np.abs(np.concatenate([path, optimum[None]])).max() * 1.2 + 1e-12
        w1, w2 = np.meshgrid(np.linspace(-span, span, 300), np.linspace(-span, span, 300))
        grid = np.stack([w1.ravel(), w2.ravel()], axis=1)
        z = np.mean((grid @ x.astype("float64").T - y) ** 2, axis=1).reshape(w1.shape)
        ax.contour(w1, w2, z, levels=np.quantile(z, np.linspace(0.002, 0.6, 14)),
                   cmap="viridis", linewidths=0.7)
        ax.plot(path[:, 0], path[:, 1], marker=".", color="red", linewidth=1,
                label=f"SGD, {len(path) - 1} steps")
        ax.plot(*optimum, marker="*", markersize=14, color="black", label="minimum")
        ax.set_aspect("equal")
        ax.set_xlabel(f"w ({PATH_FEATURES[0]})")
        ax.set_ylabel(f"w ({PATH_FEATURES[1]})")
        ax.set_title(f"{name}: condition number {p['condition_number']:.0f}")
        ax.legend()
    return figure


if __name__ == "__main__":
    run_arguments.run_main(main)

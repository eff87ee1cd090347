"""
Title: Depth against width on an iterated sawtooth
Author: kfound contributors
Date created: 2026/12/01
Last modified: 2026/12/02
Description: Tests §3.1.4's "if the shallow network wants to achieve the same calculation
    result, the number of cells requiring exponential growth" and §3.2.6's "with the same
    number of neurons, the deep network has a larger capacity" on Telgarsky's sawtooth.

§3.1.4 and §3.2.6 say that composing layers gives an exponential expressive space: a deep
network with few units per layer computes functions that a shallow network can only match
with exponentially many units. The cleanest case is Telgarsky's (2016, "Benefits of depth in
neural networks"): the tent map `t(x) = 2x` for `x < 1/2`, `2 - 2x` otherwise, composed `k`
times, is a sawtooth with `2^k` linear pieces on [0, 1].

**Representation, exactly.** `t(x) = 2 relu(x) - 4 relu(x - 1/2)` on [0, 1], so `k` hidden
ReLU layers of 2 units compute `t^k` exactly, with `6k + 1` parameters. A network with one
hidden layer of `W` ReLU units is piecewise linear with at most `W + 1` pieces, so it needs
`W >= 2^k - 1` units, and `2^k` suffice (one kink per breakpoint): `3 * 2^k + 1`
parameters. The recipe builds both networks in Keras, sets their weights by hand and checks
that they reproduce `t^k` on 4,001 points.

**Training.** Representation is not learning. For each `k` in `--ks` the recipe trains, on
2,048 random points of [0, 1] (squared error, Adam at `--learning-rate`, batch 128,
`--steps` steps, `--seeds` seeds):

- a deep net of `k` hidden ReLU layers of `--deep-width` units;
- a shallow net with one hidden layer and the same number of parameters (`shallow_equal`);
- shallow nets of 2, 4, ..., `--max-width` units, to find the smallest width whose relative
  test error (mean squared error / variance of `t^k`) is below `--target`.

Kernels are He-normal. Biases are not Keras's zeros: with inputs in [0, 1], zero biases put
every first-layer kink at the edge of the data, so each unit is linear or dead on all of it
and every net starts as a line, an exact critical point for the symmetric sawtooth (measured:
a 256-unit shallow net then stays at relative error 0.93 on `t^3`). Each unit's bias instead
puts its kink through a random training point, layer after layer.

All these nets of one `k` and one seed are branches of one Keras model with one loss per
branch: their parameters are disjoint and Adam updates each parameter on its own, so each
branch trains exactly as it would alone, on the same batches, for one compilation.

**The verdict.** The width claim holds when the smallest trained shallow width reaching the
target grows exponentially in `k`: the slope of `log2(width)` against `k`, over the `k`s
where some width reached the target, is at least `--growth-slope`; it needs at least two such
`k`s (a sweep that fits nothing beyond `k = 1` measures the optimizer, not the growth). The
capacity claim holds when, at the largest `k`, the trained deep net reaches the target and
its relative error is below the equal-parameter shallow net's by more than their seed
spread. Both: confirmed; one: holds only under conditions; neither: not confirmed.

Measured at the defaults (seed 1337, 2 seeds; 8 minutes of wall time on 2 CPU cores,
40 on an overloaded shared machine): holds only under conditions. The exact nets match `t^k` within
1.1e-4 up to `k = 6`. Trained shallow nets reach the target with 4, 8 and 64 units at
`k = 1, 2, 3` (the exact need is 1, 3 and 7), a log2-slope of 2.0, but no width up to 256
fits `t^4` to `t^6` in 3,000 steps (relative error 0.53 at `k = 4`, 0.88 at 5, 1.0 at 6):
past `k = 3` the sweep measures what Adam finds in this budget, not what a width can
represent. The trained deep nets reach the target once (`k = 1`, one of two seeds) and are
no better than the equal-parameter shallow nets at `k = 6` (1.003 against 1.006): depth's
advantage is one of representation, which gradient descent from a random start does not
find here.

Usage:

```
python recipes/depth_vs_width.py
python recipes/depth_vs_width.py --ks 2 4 6 8 --max-width 512
```
"""

import argparse

import numpy as np
from _light import run_arguments

# Keras and kfound are imported inside the functions that use them, once the flags are
# checked: under the TensorFlow backend, importing Keras imports TensorFlow (seconds).

"""
## The target and the two exact networks
"""


def sawtooth(x, k):
    """`t^k(x)`, the tent map composed `k` times, for `x` in [0, 1]."""
    x = np.asarray(x, dtype="float64")
    for _ in range(k):
        x = np.where(x < 0.5, 2 * x, 2 - 2 * x)
    return x


def exact_deep(k):
    """`k` hidden layers of 2 ReLU units computing `t^k` exactly (Telgarsky's construction)."""
    import keras

    model = keras.Sequential([keras.Input((1,))] + [
        keras.layers.Dense(2, "relu") for _ in range(k)] + [keras.layers.Dense(1)])
    first, *rest, output = model.layers
    first.set_weights([np.array([[1.0, 1.0]]), np.array([0.0, -0.5])])
    for layer in rest:  # feeds t = 2 h1 - 4 h2 into relu(t) and relu(t - 1/2)
        layer.set_weights([np.array([[2.0, 2.0], [-4.0, -4.0]]), np.array([0.0, -0.5])])
    output.set_weights([np.array([[2.0], [-4.0]]), np.array([0.0])])
    return model


def exact_shallow(k):
    """One hidden layer of `2^k` ReLU units computing `t^k` exactly: one kink per breakpoint."""
    import keras

    pieces = 2**k
    knots = np.arange(pieces) / pieces
    slopes = np.where(np.arange(pieces) % 2 == 0, 1.0, -1.0) * pieces
    changes = np.diff(slopes, prepend=0.0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(pieces, "relu"),
                              keras.layers.Dense(1)])
    model.layers[0].set_weights([np.ones((1, pieces)), -knots])
    model.layers[1].set_weights([changes[:, None], np.array([0.0])])
    return model


def representation_rows(ks, x_test):
    rows = []
    for k in ks:
        target = sawtooth(x_test, k)
        for name, model in (("deep", exact_deep(k)), ("shallow", exact_shallow(k))):
            predicted = model.predict(x_test[:, None], batch_size=4096, verbose=0)[:, 0]
            rows.append({"k": k, "network": f"exact_{name}", "units": 2 * k if name == "deep"
                         else 2**k, "params": model.count_params(),
                         "max_abs_error": float(np.max(np.abs(predicted - target)))})
    return rows


"""
## The trained networks, as branches of one model
"""


def deep_params(k, width):
    return 2 * width + (k - 1) * (width * width + width) + width + 1


def equal_shallow_width(k, width):
    return max(1, round((deep_params(k, width) - 1) / 3))


def shallow_widths(max_width):
    widths, w = [], 2
    while w <= max_width:
        widths.append(w)
        w *= 2
    return widths


def kinks_through_training_points(layers, x, rng):
    """Sets each ReLU unit's bias so that its kink passes through one random training point.

    Keras's zero biases put every first-layer kink at `x = 0`, the edge of the data: each unit
    is then linear on [0, 1] or dead on all of it (half of them), so every net starts as a
    linear function. For the symmetric sawtooth that is an exact critical point: the residual
    of the best line is orthogonal to `1` and `x`, the only features the live units have, so
    no gradient moves a kink inside. Each unit here instead gets `b = -w . h(x_r)` for a
    random training point `x_r` and its input `h(x_r)`, layer after layer, so that each unit
    starts with its kink inside the data.
    """
    h = x[:, None]
    for layer in layers:
        kernel, _ = layer.get_weights()
        points = h[rng.integers(len(h), size=kernel.shape[1])]
        bias = -np.sum(points * kernel.T, axis=1)
        layer.set_weights([kernel, bias])
        h = np.maximum(h @ kernel + bias, 0.0)


def build_branches(k, args, seed, x):
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng([seed, 1])  # not the stream that drew `x`
    inputs = keras.Input((1,))
    outputs = {}
    h = inputs
    deep = [keras.layers.Dense(args.deep_width, "relu", kernel_initializer="he_normal",
                               name=f"deep_{i}") for i in range(k)]
    for layer in deep:
        h = layer(h)
    outputs["deep"] = keras.layers.Dense(1, name="deep")(h)
    hidden = [deep]
    for name, width in [("shallow_equal", equal_shallow_width(k, args.deep_width))] + [
            (f"shallow_{w}", w) for w in shallow_widths(args.max_width)]:
        layer = keras.layers.Dense(width, "relu", kernel_initializer="he_normal",
                                   name=f"{name}_hidden")
        outputs[name] = keras.layers.Dense(1, name=name)(layer(inputs))
        hidden.append([layer])
    for layers in hidden:
        kinks_through_training_points(layers, x, rng)
    model = keras.Model(inputs, outputs, name=f"sawtooth_{k}")
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss={name: "mse" for name in outputs}, run_eagerly=args.smoke)
    return model, list(outputs)


def train_branches(k, args, seed, x_test):
    rng = np.random.default_rng(seed)
    x = rng.random(2048).astype("float32")
    y = sawtooth(x, k).astype("float32")
    model, names = build_branches(k, args, seed, x)
    targets = {name: y[:, None] for name in names}
    epochs = max(1, -(-args.steps * 128 // len(x)))
    model.fit(x[:, None], targets, batch_size=128, epochs=epochs, verbose=0)
    predicted = model.predict(x_test[:, None].astype("float32"), batch_size=4096, verbose=0)
    target = sawtooth(x_test, k)
    variance = float(np.var(target))
    return {name: float(np.mean((np.asarray(p)[:, 0] - target) ** 2) / variance)
            for name, p in predicted.items()}


"""
## The verdict
"""


def smallest_width(row_by_width, target, max_width):
    """The smallest width whose relative error is below `target`; `2 * max_width` if none."""
    reached = [w for w, error in sorted(row_by_width.items()) if error < target]
    return (reached[0], True) if reached else (2 * max_width, False)


def growth_slope(ks, widths):
    """The least-squares slope of `log2(width)` against `k`."""
    if len(ks) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(ks, dtype="float64"), np.log2(widths), 1)[0])


def verdict_for(width_rows, deep_rows, growth_threshold, target):
    """`width_rows`: `k`, `min_width`, `reached`; `deep_rows`: `k`, `deep`, `deep_sd`,
    `shallow_equal`, `shallow_equal_sd` (relative test errors)."""
    reached = [r for r in width_rows if r["reached"]]
    slope = growth_slope([r["k"] for r in reached], [r["min_width"] for r in reached])
    width_holds = len(reached) >= 2 and bool(slope >= growth_threshold)
    last = max(deep_rows, key=lambda r: r["k"])
    margin = last["shallow_equal"] - last["deep"]
    deep_holds = bool(last["deep"] < target and margin > 0
                      and margin > max(last["deep_sd"], last["shallow_equal_sd"]))
    if width_holds and deep_holds:
        status = "confirmed"
    elif width_holds or deep_holds:
        status = "holds only under conditions"
    else:
        status = "not confirmed"
    widths = ", ".join(f"k={r['k']}: {r['min_width']}{'' if r['reached'] else ' (not reached)'}"
                       for r in width_rows)
    text = (f"smallest trained shallow width reaching the target: {widths}, "
            f"log2-slope {slope:.2f} per composition over the {len(reached)} k reached "
            f"({'exponential' if width_holds else 'not shown exponential'}, threshold "
            f"{growth_threshold:g}); at k={last['k']} the trained deep net's relative error "
            f"is {last['deep']:.3f} against {last['shallow_equal']:.3f} for the "
            f"equal-parameter shallow net ({'deep wins' if deep_holds else 'deep does not win'})")
    return status, text, width_holds, deep_holds


def parse_args(argv=None):
    """Parses and checks the flags, importing neither Keras nor kfound's package.

    Raises:
        ValueError: naming the first bad flag.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run_arguments.add_run_arguments(parser, run_name="depth_vs_width", not_results=())
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6],
                        help="compositions of the tent map, at most 12 (default: 1 to 6)")
    parser.add_argument("--deep-width", type=int, default=4,
                        help="units per layer of the trained deep nets (default: 4)")
    parser.add_argument("--max-width", type=int, default=256,
                        help="the widest shallow net of the sweep (default: 256)")
    parser.add_argument("--steps", type=int, default=3000,
                        help="training steps of batch 128 (default: 3000)")
    parser.add_argument("--learning-rate", type=float, default=3e-3,
                        help="Adam's learning rate (default: 0.003)")
    parser.add_argument("--target", type=float, default=0.05,
                        help="relative test error (MSE / variance) that counts as fitted "
                             "(default: 0.05)")
    parser.add_argument("--growth-slope", type=float, default=0.5,
                        help="least log2-slope of the smallest width against k that counts "
                             "as exponential growth (default: 0.5, a factor 1.41 per k)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per k (default: 2)")
    args = parser.parse_args(argv)
    integers, numbers = run_arguments.integers, run_arguments.numbers
    positive = numbers(0, low_inclusive=False)
    run_arguments.check_flags(
        args, ks=integers(1, 12), deep_width=integers(), max_width=integers(2),
        steps=integers(), learning_rate=positive, target=positive, growth_slope=positive,
        seeds=integers(),
    )
    if len(args.ks) < 2:
        raise run_arguments.flag_error("ks", "at least two different integers from 1 to 12",
                                       args.ks)
    if args.smoke:
        args.ks, args.max_width, args.steps, args.seeds = [1, 2], 4, 2, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras

    from kfound import runs, theory

    runs.start_run(args)
    ks = sorted(args.ks)  # distinct: check_flags refuses repeats
    x_test = np.linspace(0.0, 1.0, 4001)

    """
    ## Exact representation, then training
    """
    exact = representation_rows(ks, x_test)
    progress = keras.utils.Progbar(len(ks) * args.seeds, unit_name="model")
    errors = {}
    for seed in range(args.seed, args.seed + args.seeds):
        for k in ks:
            for name, error in train_branches(k, args, seed, x_test).items():
                errors.setdefault((k, name), []).append(error)
            progress.add(1)

    trained, width_rows, deep_rows = [], [], []
    for k in ks:
        by_width = {}
        summary = {"k": k}
        for (k2, name), values in errors.items():
            if k2 != k:
                continue
            mean, sd = theory.mean_and_spread(values)
            if name == "deep":
                width, params = args.deep_width, deep_params(k, args.deep_width)
            else:
                width = (equal_shallow_width(k, args.deep_width) if name == "shallow_equal"
                         else int(name.split("_")[1]))
                params = 3 * width + 1
                if name != "shallow_equal":
                    by_width[width] = mean
            if name in ("deep", "shallow_equal"):
                summary[name], summary[f"{name}_sd"] = mean, sd
            trained.append({"k": k, "network": name, "width": width, "params": params,
                            "relative_error": mean, "sd": sd})
        min_width, reached = smallest_width(by_width, args.target, args.max_width)
        width_rows.append({"k": k, "min_width": min_width, "reached": reached,
                           "lower_bound": 2**k - 1})
        deep_rows.append(summary)
    status, text, width_holds, deep_holds = verdict_for(width_rows, deep_rows,
                                                        args.growth_slope, args.target)
    worst = max(r["max_abs_error"] for r in exact)
    verdict = (f"{status.capitalize()}: exact Keras nets compute t^k with max error {worst:.1e} "
               f"using 6k+1 parameters deep against 3*2^k+1 shallow; {text}.")
    print(runs.format_table(exact, floatfmt="{:.2e}"))
    print(runs.format_table(trained, floatfmt="{:.4f}"))
    print(runs.format_table(width_rows))
    print(f"verdict: {verdict}")
    report = {
        "recipe": "depth_vs_width",
        "chapter": "§3.1.4, §3.2.6",
        "claim": "A shallow network needs exponentially more units than a deep one to compute "
                 "the same composed function.",
        "status": status,
        "verdict": verdict,
        "plot": "depth_vs_width.png",
        "width_grows_exponentially": width_holds,
        "trained_deep_beats_equal_shallow": deep_holds,
        "setup": {"ks": ks, "deep_width": args.deep_width, "max_width": args.max_width,
                  "steps": args.steps, "learning_rate": args.learning_rate,
                  "target": args.target, "seeds": args.seeds, "train_points": 2048,
                  "test_points": len(x_test)},
        "exact": exact,
        "rows": trained,
        "smallest_width": width_rows,
        "runs": [{"k": k, "network": n, "relative_error": v} for (k, n), v in errors.items()],
    }
    return runs.finish_run(args, report, plot(trained, width_rows, args))


def plot(trained, width_rows, args):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4), layout="constrained")
    shape, widths, equal = figure.subplots(1, 3)
    x = np.linspace(0, 1, 1001)
    for k in sorted({r["k"] for r in width_rows})[-2:]:
        shape.plot(x, sawtooth(x, k), label=f"t^{k}")
    shape.set_title("the target: the tent map composed k times")
    shape.legend()
    ks = [r["k"] for r in width_rows]
    widths.semilogy(ks, [r["min_width"] for r in width_rows], "o-",
                    label="trained shallow, smallest width reaching target")
    widths.semilogy(ks, [max(r["lower_bound"], 1) for r in width_rows], "k--",
                    label="exact shallow needs >= 2^k - 1")
    widths.semilogy(ks, [2 * k for k in ks], "g:", label="exact deep: 2k units")
    widths.set_xlabel("k")
    widths.set_ylabel("hidden units")
    widths.set_title(f"target: relative error < {args.target:g}")
    widths.legend(fontsize=8)
    for name, label in (("deep", f"deep, width {args.deep_width}"),
                        ("shallow_equal", "shallow, same parameters")):
        sel = [r for r in trained if r["network"] == name]
        equal.errorbar([r["k"] for r in sel], [r["relative_error"] for r in sel],
                       yerr=[r["sd"] for r in sel], marker="o", capsize=3, label=label)
    equal.axhline(args.target, color="gray", linewidth=0.5)
    equal.set_xlabel("k")
    equal.set_ylabel("relative test error (MSE / variance)")
    equal.set_title("trained, equal parameter counts")
    equal.legend(fontsize=8)
    return figure


if __name__ == "__main__":
    run_arguments.run_main(main)

"""
Title: Local convolution against full convolution: aligned against shifted digits
Author: kfound contributors
Date created: 2026/12/01
Last modified: 2026/12/01
Description: Tests §3.15's rule (shared weights when every region follows one distribution,
    local convolution when regions differ) with kfound's LocallyConnected2D and Conv2D on
    centred and randomly shifted digits.

§3.15 says: "when the data set has a global local feature distribution [every region of the
image follows the same distribution], full convolution is suitable; when different areas have
different feature distributions, local-conv is suitable". This is the reasoning behind
DeepFace's locally connected layers (Taigman et al., 2014): on aligned faces the eyes are
always in one place and the mouth in another, so a filter learned for the eye region need not
be the one used for the mouth region.

**Two datasets, one canvas.** Each 8x8 digit of scikit-learn's set is drawn on a 16x16 black
canvas. In `aligned`, every digit sits in the centre, so each region of the canvas always
holds the same part of a digit (regions differ from each other). In `shifted`, each digit
sits at a random offset (0-8 pixels in each direction), so a stroke can appear anywhere and
every region follows the same distribution. Training and test images are built the same way.

**Two networks, one shape.** Both are `[3x3, 16] -> 2x2 max-pool -> [3x3, 32] -> softmax`
with ReLU; in one the bracketed layers are `Conv2D` (shared weights, 12,810 parameters in
all), in the other `kfound.layers.LocallyConnected2D` (one filter bank per position, 155,370
parameters). Both start from He-normal weights computed from each position's own fan-in (the
layer's default Glorot initializer counts the positions in the fan, see its docstring).
Adam at 1e-3, batch 32, the same number of steps for every run.

Local layers have many more parameters, so they need more data. The recipe therefore
measures at two training sizes (`--train-sizes`, default 300 and all 1,347 training digits)
and reports the test error of each network, with `--seeds` seeds.

**The verdict.** The rule is confirmed at a training size when Conv2D beats
LocallyConnected2D on shifted digits *and* LocallyConnected2D beats Conv2D on aligned ones,
each by more than the spread of the paired error differences across seeds. A tie on aligned
digits (local as good as full convolution, with 12 times the parameters) counts only
partly.

Usage:

```
python recipes/local_conv.py
python recipes/local_conv.py --train-sizes 100 300 1347 --seeds 5
```
"""

import argparse

import numpy as np
from _light import run_arguments

# Keras and kfound are imported inside the functions that use them, once the flags are
# checked: under the TensorFlow backend, importing Keras imports TensorFlow (seconds).

CANVAS = 16
DATASETS = ("aligned", "shifted")
LAYERS = ("conv", "local")

"""
## The canvases
"""


def on_canvas(images, shifted, seed):
    """Draws `(n, 8, 8, 1)` digits on `(n, 16, 16, 1)` canvases, centred or at random."""
    rng = np.random.default_rng(seed)
    n = len(images)
    room = CANVAS - images.shape[1]
    if shifted:
        rows, cols = rng.integers(room + 1, size=n), rng.integers(room + 1, size=n)
    else:
        rows = cols = np.full(n, room // 2)
    canvas = np.zeros((n, CANVAS, CANVAS, 1), dtype="float32")
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        canvas[i, r : r + 8, c : c + 8] = images[i]
    return canvas


"""
## The networks
"""


def local_he_normal(positions):
    import keras

    # VarianceScaling's fan-in of the local kernel (positions, window, filters) is
    # positions * window; scaling by `positions` leaves He's 2 / window.
    return keras.initializers.VarianceScaling(2.0 * positions, "fan_in", "truncated_normal")


def build_model(layer, seed, run_eagerly=False):
    import keras

    from kfound.layers import LocallyConnected2D

    keras.utils.set_random_seed(seed)

    def block(filters, size):
        if layer == "conv":
            return keras.layers.Conv2D(filters, 3, activation="relu",
                                       kernel_initializer="he_normal")
        positions = (size - 2) ** 2
        return LocallyConnected2D(filters, 3, activation="relu",
                                  kernel_initializer=local_he_normal(positions))

    model = keras.Sequential([
        keras.Input((CANVAS, CANVAS, 1)),
        block(16, CANVAS),
        keras.layers.MaxPooling2D(),
        block(32, (CANVAS - 2) // 2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ], name=layer)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  run_eagerly=run_eagerly)
    return model


def run_one(data, layer, args, seed):
    (x, y), (x_test, y_test) = data
    model = build_model(layer, seed, run_eagerly=args.smoke)
    epochs = max(1, -(-args.steps * 32 // len(x)))
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    return 1.0 - float(accuracy), model.count_params()


"""
## The verdict

`verdict_for` reads rows of mean test errors and paired gaps `local - conv` (positive: full
convolution is better), per dataset and training size.
"""


def compare(gap, gap_sd):
    if gap > gap_sd and gap > 0:
        return "conv better"
    if gap < -gap_sd and gap < 0:
        return "local better"
    return "tie"


def verdict_for(gaps):
    """`gaps`: dicts with `train_size`, `dataset`, `gap` and `gap_sd`."""
    at_size, parts = {}, []
    for size in sorted({g["train_size"] for g in gaps}):
        here = {g["dataset"]: g for g in gaps if g["train_size"] == size}
        shifted = compare(here["shifted"]["gap"], here["shifted"]["gap_sd"])
        aligned = compare(here["aligned"]["gap"], here["aligned"]["gap_sd"])
        if shifted == "conv better" and aligned == "local better":
            at_size[size] = "both"
        elif shifted == "conv better" and aligned == "tie":
            at_size[size] = "partly"
        else:
            at_size[size] = "no"
        parts.append(f"{size} training digits: shifted {shifted} (local-conv error "
                     f"{here['shifted']['gap']:+.1%}), aligned {aligned} "
                     f"({here['aligned']['gap']:+.1%})")
    if all(v == "both" for v in at_size.values()):
        status = "confirmed"
    elif any(v in ("both", "partly") for v in at_size.values()):
        status = "holds only under conditions"
    else:
        status = "not confirmed"
    return status, "; ".join(parts), at_size


def parse_args(argv=None):
    """Parses and checks the flags, importing neither Keras nor kfound's package.

    Raises:
        ValueError: naming the first bad flag.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run_arguments.add_run_arguments(parser, run_name="local_conv", not_results=())
    parser.add_argument("--train-sizes", type=int, nargs="+", default=[300, 1347],
                        help="training digits, one experiment each, at most 1347 "
                             "(default: 300 1347)")
    parser.add_argument("--steps", type=int, default=400,
                        help="training steps of batch 32, rounded up to whole epochs "
                             "(default: 400)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (default: 3)")
    args = parser.parse_args(argv)
    integers = run_arguments.integers
    run_arguments.check_flags(
        args, train_sizes=integers(1, 1347), steps=integers(), seeds=integers(),
    )
    if args.smoke:
        args.train_sizes, args.steps, args.seeds = [64], 2, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras

    from kfound import runs, theory
    from kfound.data import load_digits

    runs.start_run(args)
    (x, y), (x_test, y_test) = load_digits(images=True, seed=args.seed)
    if args.smoke:
        x_test, y_test = x_test[:128], y_test[:128]

    """
    ## The sweep
    """
    progress = keras.utils.Progbar(
        args.seeds * len(args.train_sizes) * len(DATASETS) * len(LAYERS), unit_name="run")
    errors, params = {}, {}
    for seed in range(args.seed, args.seed + args.seeds):
        for name in DATASETS:
            shifted = name == "shifted"
            canvas = on_canvas(x, shifted, seed)
            test = (on_canvas(x_test, shifted, seed + 10_000), y_test)
            for size in args.train_sizes:
                data = ((canvas[:size], y[:size]), test)
                for layer in LAYERS:
                    error, params[layer] = run_one(data, layer, args, seed)
                    errors.setdefault((name, size, layer), []).append(error)
                    progress.add(1)

    rows, gaps = [], []
    for (name, size, layer), values in errors.items():
        mean, sd = theory.mean_and_spread(values)
        rows.append({"dataset": name, "train_size": size, "layer": layer,
                     "params": params[layer], "test_error": mean, "sd": sd})
        if layer == "local":
            gap, gap_sd = theory.mean_and_spread(
                list(np.array(values) - np.array(errors[(name, size, "conv")])))
            gaps.append({"dataset": name, "train_size": size, "gap": gap, "gap_sd": gap_sd})
    status, text, at_size = verdict_for(gaps)
    verdict = f"The rule {status}: {text} (test error; positive: Conv2D better)."
    print(runs.format_table(rows))
    print(f"verdict: {verdict}")
    report = {
        "recipe": "local_conv",
        "chapter": "§3.15",
        "claim": "Full convolution suits data whose regions share one distribution; "
                 "local convolution suits data whose regions differ.",
        "status": status,
        "verdict": verdict,
        "plot": "local_conv.png",
        "per_train_size": at_size,
        "setup": {"canvas": f"{CANVAS}x{CANVAS}", "steps": args.steps, "seeds": args.seeds,
                  "train_sizes": args.train_sizes, "test_size": len(x_test),
                  "model": "[3x3,16]-maxpool-[3x3,32]-softmax, ReLU, Adam 1e-3, batch 32"},
        "rows": rows,
        "gaps": gaps,
        "runs": [{"dataset": n, "train_size": s, "layer": la, "test_error": v}
                 for (n, s, la), v in errors.items()],
    }
    return runs.finish_run(args, report, plot(rows, x, args))


def plot(rows, x, args):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    examples, chart = figure.subfigures(1, 2, width_ratios=(1, 2))
    cells = examples.subplots(2, 4)
    for r, name in enumerate(DATASETS):
        canvas = on_canvas(x[:4], name == "shifted", args.seed)
        for c in range(4):
            cells[r, c].imshow(canvas[c, ..., 0], cmap="gray_r")
            cells[r, c].set_xticks([])
            cells[r, c].set_yticks([])
        cells[r, 0].set_ylabel(name)
    axes = chart.subplots()
    labels = [f"{d}\n{s} digits" for d in DATASETS for s in args.train_sizes]
    positions = np.arange(len(labels))
    for i, layer in enumerate(LAYERS):
        sel = {(r["dataset"], r["train_size"]): r for r in rows if r["layer"] == layer}
        keys = [(d, s) for d in DATASETS for s in args.train_sizes]
        axes.bar(positions + (i - 0.5) * 0.4, [sel[k]["test_error"] for k in keys], 0.4,
                 yerr=[sel[k]["sd"] for k in keys], capsize=3,
                 label="Conv2D" if layer == "conv" else "LocallyConnected2D")
    axes.set_xticks(positions, labels)
    axes.set_ylabel("test error")
    axes.set_title(f"mean +- sd of {args.seeds} seeds")
    axes.legend()
    return figure


if __name__ == "__main__":
    run_arguments.run_main(main)

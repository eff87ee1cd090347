"""
Title: Normalization layers against batch size
Description: Tests §3.6.11's claim (Wu & He, 2018) that GroupNorm's error is stable across batch
    sizes while BatchNorm's degrades at very small batches, with BatchNorm, GroupNorm,
    WeightNorm, LRN and no normalization in the same small CNN on scikit-learn's digits.
Run time: about 11 minutes on 2 CPU cores (`--smoke`: seconds).

Wu & He ("Group Normalization", ECCV 2018) train ResNet-50 on ImageNet at 32 down to 2 images
per GPU: BatchNorm's error rises from 23.6% to 34.7% while GroupNorm's stays near 24%
(24.1% at batch 2); the book quotes this as "10.6% lower". This recipe asks the same question of
a small CNN on the 8x8 digits, with every normalization the chapter discusses (§3.6.6-3.6.13):

- `keras.layers.BatchNormalization` after each convolution;
- `kfound.layers.GroupNorm` after each convolution (`--groups`, default 8);
- `kfound.layers.WeightNorm(conv, data_init=True)` around each convolution (Salimans &
  Kingma, 2016: a reparameterization of the weights, no statistics of the batch at all);
- `kfound.layers.LRN` after each ReLU, with the book's k=2, n=5, alpha=1e-4, beta=0.75
  (AlexNet's placement);
- no normalization.

What is held fixed, and why: the number of EPOCHS (`--epochs`), as in Wu & He, so every run
sees the same data the same number of times (smaller batches thus take more updates); and, as
in Wu & He, the learning rate follows the linear scaling rule, `lr = --base-lr * batch / 32`,
SGD with momentum 0.9. The validation error is read after the last epoch, in inference mode
(BatchNorm then uses its moving averages, which is where small batches hurt it). Time per
epoch is the median training time per epoch (`kfound.callbacks.EpochTimer`).

Two measurements say why the results look as they do:

- **BatchNorm in training mode.** After each BatchNorm run, the validation set is scored
  a second time in training mode, in batches of the training batch size: the noisy
  normalization the network was trained under, against the moving averages it is scored
  with. On 8x8 digits each statistic at batch 2 still averages 2x8x8 = 128 values per
  channel before the pooling and 32 after it, which bounds how noisy it can be.
- **Why LRN starts slowly.** With k=2 each LRN is nearly a constant multiplication by
  2^-0.75 = 0.595; the recipe measures that ratio on the digits and trains, at batch 32
  for `--lrn-epochs` (default 40), the LRN network beside a copy of it in which every LRN
  is that constant multiplication, and the network without normalization.

Usage:

```
python recipes/norm_vs_batch_size.py
```
"""

import argparse
import math
import statistics

import numpy as np
from _light import run_arguments

# Keras and kfound are imported inside the functions that use them, once the flags are
# checked: under the TensorFlow backend, importing Keras imports TensorFlow (seconds).

NORMALIZATIONS = ("batch", "group", "weight", "lrn", "none")
# Training steps per call into the compiled train function: the same updates in the same
# order (the weights come out identical) without most of the per-step overhead of Python
# and the callbacks, which dominates a step at batch 2. The epoch times measured are then
# mostly the steps' own cost. (Keras's torch backend takes only 1.)
STEPS_PER_EXECUTION = 32


def steps_per_execution():
    """`STEPS_PER_EXECUTION`, or 1 under torch."""
    import keras

    return 1 if keras.backend.backend() == "torch" else STEPS_PER_EXECUTION

"""
## One CNN, five normalizations

Three 3x3 convolutions (16, 32, 32 filters) with ReLU, a 2x2 max-pooling after the second,
global average pooling and a softmax layer.
Each convolution block is `kfound.layers.normalization_block`, the one the
hyperparameter searches use: the papers' placements, bias-free convolutions before
BatchNorm and GroupNorm.
"""


def conv_block(x, filters, normalization, groups):
    import keras

    from kfound import layers

    conv = keras.layers.Conv2D(filters, 3, padding="same")
    for layer in layers.normalization_block(normalization, conv, "relu", groups=groups):
        x = layer(x)
    return x


def build_model(normalization, groups, learning_rate, seed):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = conv_block(inputs, 16, normalization, groups)
    x = conv_block(x, 32, normalization, groups)
    x = keras.layers.MaxPooling2D(2)(x)
    x = conv_block(x, 32, normalization, groups)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name=f"cnn_{normalization}")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=steps_per_execution())
    return model


def run_one(data, normalization, batch_size, args, seed):
    from kfound.callbacks import EpochTimer

    (x, y), (x_val, y_val) = data
    learning_rate = args.base_lr * batch_size / 32
    model = build_model(normalization, args.groups, learning_rate, seed)
    timer = EpochTimer()
    history = model.fit(x, y, batch_size=batch_size, epochs=args.epochs, verbose=0,
                        callbacks=[timer]).history
    _, accuracy = model.evaluate(x_val, y_val, batch_size=len(x_val), verbose=0)
    steady = timer.epoch_times[1:] or timer.epoch_times  # the first epoch also compiles
    result = {"val_error": 1.0 - float(accuracy),
              "train_loss": float(history["loss"][-1]),
              "epoch_time": statistics.median(steady)}
    if normalization == "batch":
        result["train_mode_val_error"] = train_mode_error(model, x_val, y_val, batch_size)
    return result


"""
## BatchNorm with the statistics it trained on

In inference mode BatchNorm normalizes with its moving averages; in training mode it uses
the statistics of the batch in hand, which at batch 2 are those of two images. Scoring the
validation set in training mode, in batches of the training batch size, measures how noisy
the normalization the network was trained under is: Wu & He's explanation of BatchNorm's
small-batch error ("inaccurate batch statistics estimation"). It runs after the
inference-mode score, since training mode also moves the averages.
"""


def train_mode_error(model, x_val, y_val, batch_size):
    import keras

    wrong = 0
    for start in range(0, len(x_val), batch_size):
        probabilities = model(x_val[start:start + batch_size], training=True)
        predicted = np.argmax(keras.ops.convert_to_numpy(probabilities), axis=-1)
        wrong += int(np.sum(predicted != y_val[start:start + batch_size]))
    return wrong / len(x_val)


"""
## Why LRN trains slowly here

With the book's constants (k=2, alpha=1e-4, beta=0.75), LRN divides each activation by
`(k + alpha * sum of the squares of its neighbours) ** beta`; for activations of order one,
`alpha * sum` is about 1e-4 to 1e-3, so each LRN is nearly the constant scaling
`k ** -beta = 2 ** -0.75 = 0.595`. `lrn_scaling` measures the actual ratio output/input of
each LRN layer on validation digits (positive inputs only: ReLU zeros stay zero). The LRN
network is then compared with a copy of itself, same initial weights, in which every LRN
is replaced by a plain multiplication by `k ** -beta` (`keras.models.clone_model`), and with
no normalization, at batch 32 for `--lrn-epochs` epochs: if the copy trains like LRN, LRN's
slow start is that constant scaling, not anything the normalization does.
"""


def lrn_scaling(model, x):
    import keras

    from kfound import layers

    lrn_layers = [layer for layer in model.layers if isinstance(layer, layers.LRN)]
    probe = keras.Model(model.inputs, [[layer.input, layer.output] for layer in lrn_layers])
    found = []
    for inputs, outputs in probe.predict(x, verbose=0):
        positive = inputs > 1e-3
        ratios = outputs[positive] / inputs[positive]
        found.append({"median": float(np.median(ratios)),
                      "p05": float(np.percentile(ratios, 5)),
                      "p95": float(np.percentile(ratios, 95))})
    return found


def as_constant_scaling(model):
    """A copy of `model`, same weights, with each LRN replaced by `x * bias ** -beta`."""
    import keras

    from kfound import layers

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, layers.LRN):
            return keras.layers.Rescaling(config["bias"] ** -config["beta"],
                                          name=f"{layer.name}_as_scaling")
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    copy.compile(optimizer=model.optimizer.__class__.from_config(model.optimizer.get_config()),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                 steps_per_execution=steps_per_execution())
    return copy


def epochs_at_chance(losses, num_classes, fraction):
    """How many epochs, from the first, end with a training loss above `fraction * ln(C)`."""
    chance = math.log(num_classes)
    return next((i for i, loss in enumerate(losses) if loss <= fraction * chance), len(losses))


def lrn_experiment(data, args):
    (x, y), (x_val, y_val) = data
    lrn = build_model("lrn", args.groups, args.base_lr, args.seed)
    models = {"lrn": lrn, "lrn as constant scaling": as_constant_scaling(lrn),
              "none": build_model("none", args.groups, args.base_lr, args.seed)}
    scaling = {"at_init": lrn_scaling(lrn, x_val)}
    result = {"batch_size": 32, "epochs": args.lrn_epochs, "chance_fraction":
              args.chance_fraction, "constant": 2.0 ** -0.75, "variants": {}}
    for name, model in models.items():
        history = model.fit(x, y, batch_size=32, epochs=args.lrn_epochs, verbose=0).history
        _, accuracy = model.evaluate(x_val, y_val, batch_size=len(x_val), verbose=0)
        result["variants"][name] = {
            "losses": [float(v) for v in history["loss"]],
            "epochs_at_chance": epochs_at_chance(history["loss"], 10, args.chance_fraction),
            "val_error": 1.0 - float(accuracy),
        }
    scaling["trained"] = lrn_scaling(lrn, x_val)
    result["scaling"] = scaling
    return result


"""
## The verdict

BatchNorm "degrades at very small batches" when its error at the smallest batch exceeds its
best error by more than twice the noise, the larger of the spread across seeds and the
binomial standard error `sqrt(p (1 - p) / n)` of an error rate `p` measured on `n` validation
examples (with one seed on 450 digits, one misclassified digit is 0.22 points). GroupNorm is
"stable" when its errors across batch sizes stay within `--stable-band` (absolute, default 2
points). The claim holds when BatchNorm degrades, GroupNorm is stable and GroupNorm beats
BatchNorm at the smallest batch; it is not confirmed when BatchNorm does not degrade (the
claim's core), and holds only under conditions otherwise.

The verdict then says what the extra measurements found: BatchNorm's training-mode against
inference-mode error, and whether LRN behaves like its constant scaling (the two leave
chance within `SAME_START` epochs of each other) and learns in the end (below
`LEARNED_ERROR` validation error within `--lrn-epochs`): slower, not broken.
"""

SAME_START = 1  # epochs
LEARNED_ERROR = 0.1


def verdict_for(rows, batch_sizes, stable_band, validation_size, lrn=None):
    def errors(norm):
        return {r["batch_size"]: r for r in rows if r["normalization"] == norm}

    bn, gn = errors("batch"), errors("group")
    small = batch_sizes[0]
    bn_best = min(r["val_error"] for r in bn.values())
    spread = max(r["val_sd"] for r in bn.values())
    binomial = math.sqrt(max(bn_best * (1 - bn_best), 1e-12) / validation_size)
    noise = max(spread, binomial)
    bn_gap = bn[small]["val_error"] - bn_best
    bn_degrades = bn_gap > 2 * noise
    gn_values = [r["val_error"] for r in gn.values()]
    gn_stable = max(gn_values) - min(gn_values) <= stable_band
    gn_wins = gn[small]["val_error"] < bn[small]["val_error"]
    if bn_degrades and gn_stable and gn_wins:
        status = "confirmed"
    elif not bn_degrades:
        status = "not confirmed"
    else:
        status = "holds only under conditions"
    text = (
        f"At batch {small} BatchNorm {bn[small]['val_error']:.2%} vs GroupNorm "
        f"{gn[small]['val_error']:.2%} validation error (Wu & He, ResNet-50/ImageNet: 34.7% vs "
        f"24.1%); BatchNorm's batch-{small} error is {bn_gap:.2%} above its best "
        f"({bn_best:.2%}), {'more' if bn_degrades else 'less'} than twice the noise "
        f"({noise:.2%}), so it {'degrades' if bn_degrades else 'does not measurably degrade'}; "
        f"GroupNorm spans {min(gn_values):.2%}-{max(gn_values):.2%} across batch sizes "
        f"({'stable' if gn_stable else 'not stable'} within {stable_band:.0%})."
    )
    large = batch_sizes[-1]
    if "train_mode_val_error" in bn[small]:
        text += (
            f" Scored in training mode, normalized by batches of {small} as in training, "
            f"BatchNorm's error is {bn[small]['train_mode_val_error']:.2%} (inference mode "
            f"{bn[small]['val_error']:.2%}; at batch {large}: "
            f"{bn[large]['train_mode_val_error']:.2%} vs {bn[large]['val_error']:.2%})."
        )
    if lrn is not None:
        text += " " + lrn_verdict(lrn)
    return status, text


def lrn_verdict(lrn):
    variants = lrn["variants"]
    chance = {name: v["epochs_at_chance"] for name, v in variants.items()}
    errors = {name: v["val_error"] for name, v in variants.items()}
    medians = ", ".join(f"{s['median']:.3f}" for s in lrn["scaling"]["at_init"])
    like_scaling = abs(chance["lrn"] - chance["lrn as constant scaling"]) <= SAME_START
    learned = chance["lrn"] < lrn["epochs"] and errors["lrn"] < LEARNED_ERROR
    cause = ("so the slow start is the constant scaling" if like_scaling
             else "so the constant alone does not explain it")
    return (
        f"LRN (k=2, n=5, alpha=1e-4, beta=0.75) multiplies each block's activations by "
        f"{medians} (median, at initialization; k^-beta = {lrn['constant']:.3f}), and at batch "
        f"{lrn['batch_size']} the training loss stays at chance for {chance['lrn']} epochs "
        f"with LRN, {chance['lrn as constant scaling']} with each LRN replaced by that constant "
        f"and {chance['none']} without normalization "
        f"({cause}); "
        f"after {lrn['epochs']} epochs the validation errors are {errors['lrn']:.2%}, "
        f"{errors['lrn as constant scaling']:.2%} and {errors['none']:.2%}: "
        f"{'slower, not broken' if learned else 'LRN has not learned within that budget'}."
    )


def parse_args(argv=None):
    """Parses and checks the flags, importing neither Keras nor kfound's package.

    Raises:
        ValueError: naming the first bad flag.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run_arguments.add_run_arguments(parser, run_name="norm_vs_batch_size", not_results=())
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[2, 4, 8, 16, 32],
                        help="batch sizes, smallest first (default: 2 4 8 16 32)")
    parser.add_argument("--normalizations", nargs="+", default=list(NORMALIZATIONS),
                        choices=NORMALIZATIONS, help="which to run (default: all five)")
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs for every run, fixed across batch sizes (default: 10)")
    parser.add_argument("--base-lr", type=float, default=0.05,
                        help="SGD learning rate at batch 32, scaled linearly (default: 0.05)")
    parser.add_argument("--groups", type=int, default=8,
                        help="GroupNorm groups (16 and 32 channels; default: 8)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (default: 3)")
    parser.add_argument("--stable-band", type=float, default=0.02,
                        help="GroupNorm counts as stable if its errors span at most this "
                             "(default: 0.02)")
    parser.add_argument("--lrn-epochs", type=int, default=40,
                        help="epochs of the LRN experiment at batch 32 (default: 40)")
    parser.add_argument("--chance-fraction", type=float, default=0.95,
                        help="an epoch is 'at chance' while its training loss is above this "
                             "fraction of ln(10) (default: 0.95)")
    args = parser.parse_args(argv)
    integers, numbers = run_arguments.integers, run_arguments.numbers
    run_arguments.check_flags(
        args, batch_sizes=integers(), epochs=integers(),
        base_lr=numbers(0, low_inclusive=False), groups=integers(), seeds=integers(),
        stable_band=numbers(0), lrn_epochs=integers(),
        chance_fraction=numbers(0, 1, low_inclusive=False),
    )
    if len(set(args.normalizations)) < len(args.normalizations):
        raise run_arguments.flag_error("normalizations", "a list of distinct normalizations",
                                       args.normalizations)
    if args.smoke:
        args.batch_sizes, args.epochs, args.seeds, args.lrn_epochs = [64], 1, 1, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras

    from kfound import runs, theory
    from kfound.data import load_digits

    batch_sizes = sorted(args.batch_sizes)
    runs.start_run(args)
    data = load_digits(images=True, seed=args.seed)
    if args.smoke:
        (x, y), (x_val, y_val) = data
        data = ((x[:128], y[:128]), (x_val[:64], y_val[:64]))

    """
    ## The sweep

    Seeds outermost and batch sizes interleaved, so load on the machine is shared fairly.
    """
    results = {}
    total = len(args.normalizations) * len(batch_sizes) * args.seeds
    progress = keras.utils.Progbar(total, unit_name="run")
    for seed in range(args.seed, args.seed + args.seeds):
        for batch_size in batch_sizes:
            for norm in args.normalizations:
                results.setdefault((norm, batch_size), []).append(
                    run_one(data, norm, batch_size, args, seed))
                progress.add(1)
    rows = []
    for (norm, batch_size), runs_ in sorted(results.items(),
                                             key=lambda kv: (NORMALIZATIONS.index(kv[0][0]),
                                                             kv[0][1])):
        val, val_sd = theory.mean_and_spread([r["val_error"] for r in runs_])
        row = {"normalization": norm, "batch_size": batch_size, "val_error": val,
               "val_sd": val_sd,
               "train_loss": statistics.median(r["train_loss"] for r in runs_),
               "epoch_time_s": statistics.median(r["epoch_time"] for r in runs_)}
        if norm == "batch":
            row["train_mode_val_error"] = statistics.mean(
                r["train_mode_val_error"] for r in runs_)
        rows.append(row)
    lrn = lrn_experiment(data, args) if "lrn" in args.normalizations else None
    has_both = {"batch", "group"} <= set(args.normalizations)
    status, verdict = (
        verdict_for(rows, batch_sizes, args.stable_band, len(data[1][0]), lrn) if has_both
        else ("not confirmed", "Run both batch and group normalization to test the claim."))
    print(runs.format_table(rows))
    print(f"verdict: {status}: {verdict}")
    report = {
        "recipe": "norm_vs_batch_size",
        "chapter": "§3.6.8-3.6.13",
        "claim": "GroupNorm is stable across batch sizes, BatchNorm degrades at tiny batches",
        "status": status,
        "setup": {"model": "3-conv CNN (16, 32, 32 filters), digits 8x8",
                  "fixed": f"{args.epochs} epochs for every batch size",
                  "optimizer": f"SGD momentum 0.9, lr = {args.base_lr} * batch / 32",
                  "groups": args.groups, "seeds": args.seeds,
                  "train_size": len(data[0][0]), "validation_size": len(data[1][0])},
        "rows": rows,
        "lrn": lrn,
        "verdict": verdict,
        "plot": "norm_vs_batch_size.png",
    }
    return runs.finish_run(args, report, plot(rows, lrn, args))


def plot(rows, lrn, args):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16, 4.5), layout="constrained")
    left, right, losses = figure.subplots(1, 3)
    for norm in args.normalizations:
        sel = [r for r in rows if r["normalization"] == norm]
        sizes = [r["batch_size"] for r in sel]
        left.errorbar(sizes, [r["val_error"] for r in sel], yerr=[r["val_sd"] for r in sel],
                      marker="o", capsize=3, label=norm)
        right.plot(sizes, [r["epoch_time_s"] for r in sel], marker="o", label=norm)
    for ax, label in ((left, "validation error"), (right, "training time per epoch (s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.legend()
    left.set_title(f"{args.epochs} epochs each, lr scaled with batch size")
    right.set_yscale("log")
    right.set_title("time per epoch")
    if lrn is not None:
        for name, variant in lrn["variants"].items():
            epochs = range(1, len(variant["losses"]) + 1)
            losses.plot(epochs, variant["losses"], label=name)
        losses.axhline(math.log(10), color="grey", linestyle=":", label="chance, ln 10")
        losses.set_xlabel("epoch")
        losses.set_ylabel("training loss")
        losses.set_title(f"LRN vs a constant x{lrn['constant']:.3f}, batch {lrn['batch_size']}")
        losses.legend()
    return figure


if __name__ == "__main__":
    run_arguments.run_main(main)

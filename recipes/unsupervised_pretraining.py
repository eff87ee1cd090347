"""
Title: Greedy layer-wise autoencoder pretraining, with few labels
Author: kfound contributors
Date created: 2026/12/01
Last modified: 2026/12/01
Description: Tests §3.7.1's "after [greedy layer-wise unsupervised] pre-training, a better
    local optimal solution can be obtained" on a deep sigmoid net (the original setting) and
    on a ReLU+He net, with 5 to 100 labelled digits per class.

§3.7.1 says that deep networks need many labelled samples, get stuck in poor local optima and
suffer from vanishing gradients, and that greedy layer-wise unsupervised pretraining fixes
this: train the first hidden layer without labels, then the second on the first's outputs,
and so on, and use those weights to initialize the whole network. The claim comes from
Hinton et al. (2006, with RBMs) and Bengio et al. (2007, "Greedy Layer-Wise Training of Deep
Networks", with autoencoders), on sigmoid networks started from small random weights. Since
then, ReLU units with He initialization (2015) train deep nets from random weights, and
pretraining has fallen out of use. This recipe measures both.

**The setup.** scikit-learn's digits, 64 pixels in [0, 1]. The unlabelled pool is all 1,347
training digits; `--labels-per-class` of them (default 5, 25 and 100 per class) keep their
labels; the 450 validation digits are the test set. Two deep MLPs of `--depth` hidden layers
of `--width` units:

- `sigmoid`: sigmoid units, weights uniform in +-1/sqrt(fan_in), the "standard"
  initialization of the pre-2010 papers (Glorot & Bengio, 2010, eq. 1);
- `relu_he`: ReLU units, He-normal weights.

**Pretraining** (Bengio et al., 2007, §2-3): for each hidden layer in turn, an autoencoder
whose encoder is that layer and whose decoder is a fresh Dense layer is trained to reconstruct
its input (the previous layer's codes), then the decoder is thrown away and the codes are
passed on. Decoders are sigmoid with binary cross-entropy where the codes lie in [0, 1] (the
pixels, and every sigmoid layer), linear with squared error on ReLU codes. Adam at 1e-3,
`--pretrain-epochs` epochs per layer, batch 32, on the unlabelled pool.

**Fine-tuning.** The stacked encoders plus a softmax output are trained on the labelled
digits, as is the same network from its random initialization: Adam at 1e-3, batch 32,
`--steps` steps. Each comparison is paired (same seed, same labelled digits) and repeated for
`--seeds` seeds; pretraining "helps" when it lowers the mean test error by more than the
spread of the paired differences.

Usage:

```
python recipes/unsupervised_pretraining.py
python recipes/unsupervised_pretraining.py --depth 8 --labels-per-class 5 10
```
"""

import argparse
import math

import numpy as np
from _light import run_arguments

# Keras and kfound are imported inside the functions that use them, once the flags are
# checked: under the TensorFlow backend, importing Keras imports TensorFlow (seconds).

NETS = ("sigmoid", "relu_he")
INITS = ("random", "pretrained")

"""
## The networks
"""


def standard_uniform(fan_in):
    import keras

    limit = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-limit, limit)


def hidden_layer(net, fan_in, width, name):
    import keras

    if net == "sigmoid":
        return keras.layers.Dense(width, "sigmoid", kernel_initializer=standard_uniform(fan_in),
                                  name=name)
    return keras.layers.Dense(width, "relu", kernel_initializer="he_normal", name=name)


def build_classifier(net, args, seed, encoder_weights=None):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,))
    h, fan_in = inputs, 64
    hidden = []
    for i in range(args.depth):
        layer = hidden_layer(net, fan_in, args.width, f"hidden_{i}")
        h, fan_in = layer(h), args.width
        hidden.append(layer)
    outputs = keras.layers.Dense(10, "softmax", name="output")(h)
    model = keras.Model(inputs, outputs, name=net)
    if encoder_weights is not None:
        for layer, weights in zip(hidden, encoder_weights, strict=True):
            layer.set_weights(weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  run_eagerly=args.smoke)
    return model


"""
## Greedy layer-wise pretraining

Returns each hidden layer's `[kernel, bias]` and each autoencoder's final reconstruction loss.
"""


def pretrain(net, x, args, seed):
    import keras

    keras.utils.set_random_seed(seed)
    codes, fan_in = x, 64
    weights, losses = [], []
    for i in range(args.depth):
        bounded = net == "sigmoid" or i == 0  # codes in [0, 1]: the pixels or sigmoid units
        encoder = hidden_layer(net, fan_in, args.width, f"encoder_{i}")
        decoder = keras.layers.Dense(fan_in, "sigmoid" if bounded else None, name=f"decoder_{i}")
        autoencoder = keras.Sequential([keras.Input((fan_in,)), encoder, decoder])
        autoencoder.compile(optimizer=keras.optimizers.Adam(1e-3),
                            loss="binary_crossentropy" if bounded else "mse",
                            run_eagerly=args.smoke)
        history = autoencoder.fit(codes, codes, batch_size=32, epochs=args.pretrain_epochs,
                                  verbose=0).history
        losses.append(float(history["loss"][-1]))
        weights.append(encoder.get_weights())
        codes = np.asarray(keras.ops.convert_to_numpy(encoder(codes)))
        fan_in = args.width
    return weights, losses


def labelled_subset(y, per_class, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                           for c in range(10)])


def fine_tune(net, data, encoder_weights, args, seed):
    (x, y), (x_test, y_test) = data
    model = build_classifier(net, args, seed, encoder_weights)
    epochs = max(1, -(-args.steps * 32 // len(x)))
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    return 1.0 - float(accuracy)


"""
## The verdict

`kfound.theory.classify_gain` names the effect of pretraining in one cell (net, labels per
class) from the paired error reductions and their spread over seeds. The claim is confirmed
when pretraining helps both nets at the fewest labels; it holds only under conditions when it
helps in some cells (say, the sigmoid net only, or few labels only); it is not confirmed when
it helps in none.
"""


def verdict_for(cells):
    """`cells`: dicts with `net`, `per_class`, `random_error`, `pretrained_error`, `effect`."""
    fewest = min(c["per_class"] for c in cells)
    first = [c for c in cells if c["per_class"] == fewest]
    helped = [c for c in cells if c["effect"] == "helps"]
    if first and all(c["effect"] == "helps" for c in first):
        status = "confirmed"
    elif helped:
        status = "holds only under conditions"
    else:
        status = "not confirmed"
    parts = [f"{c['net']} at {c['per_class']}/class: {c['random_error']:.1%} random -> "
             f"{c['pretrained_error']:.1%} pretrained ({c['effect']})" for c in cells]
    where = ", ".join(f"{c['net']} {c['per_class']}/class" for c in helped) or "nowhere"
    return status, f"pretraining helps in: {where}. " + "; ".join(parts)


def parse_args(argv=None):
    """Parses and checks the flags, importing neither Keras nor kfound's package.

    Raises:
        ValueError: naming the first bad flag.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run_arguments.add_run_arguments(parser, run_name="unsupervised_pretraining", not_results=())
    parser.add_argument("--labels-per-class", type=int, nargs="+", default=[5, 25, 100],
                        help="labelled training digits per class, at most 120 "
                             "(default: 5 25 100)")
    parser.add_argument("--depth", type=int, default=5, help="hidden layers (default: 5)")
    parser.add_argument("--width", type=int, default=64, help="units per layer (default: 64)")
    parser.add_argument("--pretrain-epochs", type=int, default=15,
                        help="autoencoder epochs per layer (default: 15)")
    parser.add_argument("--steps", type=int, default=400,
                        help="fine-tuning steps of batch 32, rounded up to whole epochs "
                             "(default: 400)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (default: 3)")
    args = parser.parse_args(argv)
    integers = run_arguments.integers
    run_arguments.check_flags(
        args, labels_per_class=integers(1, 120),  # the rarest class has 131 training digits
        depth=integers(), width=integers(), pretrain_epochs=integers(), steps=integers(),
        seeds=integers(),
    )
    if args.smoke:
        args.labels_per_class, args.depth, args.width = [2], 2, 8
        args.pretrain_epochs, args.steps, args.seeds = 1, 2, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras

    from kfound import runs, theory
    from kfound.data import load_digits

    runs.start_run(args)
    (x, y), test = load_digits(images=False, seed=args.seed)
    if args.smoke:
        x, y, test = x[:256], y[:256], (test[0][:128], test[1][:128])

    """
    ## The sweep
    """
    sizes = sorted(args.labels_per_class)  # distinct: check_flags refuses repeats
    progress = keras.utils.Progbar(args.seeds * len(NETS) * (1 + 2 * len(sizes)),
                                   unit_name="run")
    errors, reconstruction = {}, {net: [] for net in NETS}
    for seed in range(args.seed, args.seed + args.seeds):
        for net in NETS:
            weights, losses = pretrain(net, x, args, seed)
            reconstruction[net].append(losses)
            progress.add(1)
            for per_class in sizes:
                index = labelled_subset(y, per_class, seed)
                data = ((x[index], y[index]), test)
                for init in INITS:
                    error = fine_tune(net, data, weights if init == "pretrained" else None,
                                      args, seed)
                    errors.setdefault((net, per_class, init), []).append(error)
                    progress.add(1)

    cells = []
    for net in NETS:
        for per_class in sizes:
            random_errors = np.array(errors[(net, per_class, "random")])
            pretrained_errors = np.array(errors[(net, per_class, "pretrained")])
            random_error, random_sd = theory.mean_and_spread(random_errors)
            pretrained_error, pretrained_sd = theory.mean_and_spread(pretrained_errors)
            gain, gain_sd = theory.mean_and_spread(list(random_errors - pretrained_errors))
            cells.append({"net": net, "per_class": per_class, "random_error": random_error,
                          "random_sd": random_sd, "pretrained_error": pretrained_error,
                          "pretrained_sd": pretrained_sd, "gain": gain, "gain_sd": gain_sd,
                          "effect": theory.classify_gain(gain, gain_sd)})
    status, text = verdict_for(cells)
    verdict = f"{status.capitalize()} ({args.depth}x{args.width} MLPs, test error): {text}."
    print(runs.format_table(cells))
    print(f"verdict: {verdict}")
    report = {
        "recipe": "unsupervised_pretraining",
        "chapter": "§3.7.1",
        "claim": "Greedy layer-wise unsupervised pretraining gives a better solution than "
                 "random initialization when labels are few.",
        "status": status,
        "verdict": verdict,
        "plot": "unsupervised_pretraining.png",
        "setup": {"depth": args.depth, "width": args.width, "unlabelled": len(x),
                  "test_size": len(test[0]), "pretrain_epochs": args.pretrain_epochs,
                  "steps": args.steps, "seeds": args.seeds, "optimizer": "Adam(1e-3)"},
        "rows": cells,
        "reconstruction_loss": reconstruction,
        "runs": [{"net": n, "per_class": p, "init": i, "test_error": v}
                 for (n, p, i), v in errors.items()],
    }
    return runs.finish_run(args, report, plot(cells, args))


def plot(cells, args):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for net in NETS:
        sel = [c for c in cells if c["net"] == net]
        sizes = [c["per_class"] for c in sel]
        for init, style in (("random", ":"), ("pretrained", "-")):
            axes.errorbar(sizes, [c[f"{init}_error"] for c in sel],
                          yerr=[c[f"{init}_sd"] for c in sel], linestyle=style, marker="o",
                          capsize=3, label=f"{net}, {init}")
    axes.set_xscale("log")
    axes.set_xlabel("labelled digits per class")
    axes.set_ylabel("test error")
    axes.set_title(f"{args.depth}x{args.width} MLP, mean +- sd of {args.seeds} seeds")
    axes.legend()
    return figure


if __name__ == "__main__":
    run_arguments.run_main(main)

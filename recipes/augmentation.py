"""
Title: Data augmentation with few images, and label shuffle for imbalanced classes
Author: kfound contributors
Date created: 2026/12/01
Last modified: 2026/12/01
Description: Measures §3.13's augmentations (flip, shift, rotation, scale, noise, colour
    jitter, PCA lighting) one at a time on a few coloured digits, and label shuffle
    (class-balanced sampling) on a training set made imbalanced on purpose.

§3.13 lists the augmentations "commonly used in deep learning": colour jittering (brightness,
saturation, contrast), PCA jittering (AlexNet's lighting noise along the principal components
of the RGB pixels), random scale, random crop, horizontal/vertical flip, shift, rotation,
noise, and "label shuffle, an augmentation of category imbalance data" (Shen et al., 2016,
"Relay Backpropagation for Effective Learning of Deep Convolutional Neural Networks", §4.1:
class-aware sampling). The chapter says nothing about when each helps. The folk rule is that
augmentation matters most when training images are few, so that is where this recipe looks.

**The task.** scikit-learn ships no coloured image classification set, so the recipe builds
one from what it does ship: each of the 1,797 8x8 digits is upsampled to 16x16 and painted
with a foreground and a background colour drawn from the pixels of scikit-learn's two sample
photos (`load_sample_images`), so the colours follow the statistics of real photographs.
`--per-class` images per class (default 10, and 40 to see how the effect changes with more
data) are the training set; all the remaining digits (about 1,400-1,700) are the test set.

**The augmentations**, each a Keras preprocessing layer in front of the same small CNN
(active in `fit`, the identity in `predict`; a saturation factor of 0.5 is
Keras's no-op):

| name | layer |
| --- | --- |
| `flip` | `RandomFlip("horizontal")` |
| `shift` | `RandomTranslation(0.125, 0.125)` (2 pixels) |
| `rotation` | `RandomRotation(15 / 360)` (+-15 degrees) |
| `scale` | `RandomZoom(0.15)` |
| `noise` | `GaussianNoise(0.1)` |
| `colour_jitter` | `RandomColorJitter`: brightness, contrast 0.2, saturation 0.4-0.6, hue 0.05 |
| `pca_lighting` | `kfound.layers.RandomPCALighting(0.1)`, fitted to the training images |
| `combined` | all of the above except flip |

Random crop is shift plus scale here (the images are too small to crop further), so it is
not a separate row. A mirrored digit is not a digit of the same class (a mirrored 2 looks like
a 5), so flip is expected to hurt: it is measured, but it is not counted for the claim.

**Label shuffle.** A second training set keeps `--majority` images of classes 0-4 and
`--minority` of classes 5-9 (a 10:1 imbalance by default). Plain sampling draws batches from
it uniformly; label shuffle (Shen et al.) shuffles each class's list, repeats it up to the
size of the largest class, and shuffles the concatenation, so every class is seen equally
often. Both train for the same number of steps and are judged by balanced accuracy (the
mean of the per-class recalls) on the test set, which is what imbalance hurts.

Every setting runs with `--seeds` seeds; gains are paired (same seed, same training images)
and reported as mean and standard deviation. An augmentation "helps" when its mean gain
exceeds the spread of the gains across seeds, and "hurts" when its mean loss does.

Usage:

```
python recipes/augmentation.py                 # the full run, a few minutes on 2 cores
python recipes/augmentation.py --per-class 5   # fewer training images
```
"""

import argparse
import functools

import numpy as np
from _light import run_arguments

# Keras and kfound are imported inside the functions that use them, once the flags are
# checked: under the TensorFlow backend, importing Keras imports TensorFlow (seconds).

AUGMENTATIONS = ("none", "flip", "shift", "rotation", "scale", "noise", "colour_jitter",
                 "pca_lighting", "combined")
# Not label-preserving for digits: measured, not counted for the claim.
NOT_LABEL_PRESERVING = ("flip",)
IMAGE_SIZE = 16
# The rarest digit class has 174 images; the test set needs some of each.
MAX_PER_CLASS = 150

"""
## Coloured digits

The foreground and background colours of each digit are two random pixels of the sample
photos, redrawn until their luminances differ by at least `min_contrast` (a digit drawn in
nearly its background's colour is invisible, whatever the model).
"""


def coloured_digits(seed, min_contrast=0.3):
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits, load_sample_images

    digits = load_digits()
    masks = zoom(digits.images / 16.0, (1, IMAGE_SIZE / 8, IMAGE_SIZE / 8), order=1)
    masks = np.clip(masks, 0.0, 1.0)[..., None]
    pixels = np.concatenate([p.reshape(-1, 3) for p in load_sample_images().images]) / 255.0
    luma = pixels @ np.array([0.299, 0.587, 0.114])
    rng = np.random.default_rng(seed)
    n = len(masks)
    fg, bg = rng.integers(len(pixels), size=n), rng.integers(len(pixels), size=n)
    while np.any(low := np.abs(luma[fg] - luma[bg]) < min_contrast):
        fg[low] = rng.integers(len(pixels), size=int(low.sum()))
    colour_fg, colour_bg = pixels[fg][:, None, None, :], pixels[bg][:, None, None, :]
    images = colour_bg + masks * (colour_fg - colour_bg)
    return images.astype("float32"), digits.target.astype("int32")


def split(y, counts, seed):
    """Training indices, `counts[c]` per class, and the test indices (all the rest)."""
    rng = np.random.default_rng(seed)
    train = np.concatenate([
        rng.choice(np.flatnonzero(y == c), size=count, replace=False)
        for c, count in enumerate(counts)
    ])
    test = np.setdiff1d(np.arange(len(y)), train)
    return rng.permutation(train), test


"""
## Sampling: plain and label shuffle

One `keras.utils.PyDataset` feeds both: `steps` batches drawn either uniformly (a fresh
permutation of the training set each pass) or by label shuffle. It works under every backend.
"""


def label_shuffle_order(y, rng):
    """One label-shuffle epoch (Shen et al., 2016): every class repeated to the largest's size."""
    classes = np.unique(y)
    largest = max(int(np.sum(y == c)) for c in classes)
    lists = []
    for c in classes:
        members = rng.permutation(np.flatnonzero(y == c))
        repeats = -(-largest // len(members))
        lists.append(np.concatenate([rng.permutation(members) for _ in range(repeats)])[:largest])
    return rng.permutation(np.concatenate(lists))


@functools.cache
def batches_class():
    """The `Batches` class, a `keras.utils.PyDataset`, defined once Keras is imported."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self, x, y, batch_size, steps, balanced, seed):
            super().__init__()
            rng = np.random.default_rng(seed)
            orders, total = [], 0
            while total < batch_size * steps:
                order = label_shuffle_order(y, rng) if balanced else rng.permutation(len(y))
                orders.append(order)
                total += len(order)
            self.order = np.concatenate(orders)[: batch_size * steps]
            self.x, self.y, self.batch_size, self.steps = x, y, batch_size, steps

        def __len__(self):
            return self.steps

        def __getitem__(self, index):
            batch = self.order[index * self.batch_size : (index + 1) * self.batch_size]
            return self.x[batch], self.y[batch]

    return Batches


"""
## The model

Two 3x3 convolutions (16 and 32 filters, ReLU, 2x2 max-pooling) and a softmax, behind one
augmentation layer. Adam at 1e-3, batch 32, `--steps` steps.
"""


def augmentation_layers(name, x_train, seed):
    import keras

    from kfound.layers import RandomPCALighting, fit_pca_lighting

    def make(kind):
        if kind == "flip":
            return keras.layers.RandomFlip("horizontal", seed=seed)
        if kind == "shift":
            return keras.layers.RandomTranslation(0.125, 0.125, fill_mode="nearest", seed=seed)
        if kind == "rotation":
            return keras.layers.RandomRotation(15 / 360, fill_mode="nearest", seed=seed)
        if kind == "scale":
            return keras.layers.RandomZoom(0.15, fill_mode="nearest", seed=seed)
        if kind == "noise":
            return keras.layers.GaussianNoise(0.1, seed=seed)
        if kind == "colour_jitter":
            return keras.layers.RandomColorJitter(
                value_range=(0, 1), brightness_factor=0.2, contrast_factor=0.2,
                saturation_factor=(0.4, 0.6), hue_factor=0.05, seed=seed)
        eigenvalues, eigenvectors = fit_pca_lighting(x_train, value_range=(0, 1), verbose=0)
        return RandomPCALighting(0.1, eigenvalues, eigenvectors, value_range=(0, 1), seed=seed)

    if name == "none":
        return []
    if name == "combined":
        return [make(k) for k in AUGMENTATIONS[2:-1]]
    return [make(name)]


def build_model(augmentation, x_train, seed, run_eagerly=False):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
        *augmentation_layers(augmentation, x_train, seed),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", run_eagerly=run_eagerly)
    return model


def train_and_score(x, y, train, test, augmentation, balanced, args, seed):
    from sklearn.metrics import balanced_accuracy_score

    model = build_model(augmentation, x[train], seed, run_eagerly=args.smoke)
    Batches = batches_class()
    model.fit(Batches(x[train], y[train], 32, args.steps, balanced, seed), verbose=0)
    predicted = np.argmax(model.predict(x[test], batch_size=512, verbose=0), axis=-1)
    return {"accuracy": float(np.mean(predicted == y[test])),
            "balanced_accuracy": float(balanced_accuracy_score(y[test], predicted))}


"""
## The verdicts

`kfound.theory.classify_gain` names one augmentation's effect from its paired gains over
`none`: it helps when its mean gain exceeds their spread over seeds, and hurts when its mean
loss does.
`augmentation_verdict` says the claim is confirmed when every label-preserving augmentation
helps at the smallest training size, holds only under conditions when some do, and is not
confirmed when none does; the rows at larger sizes say how the effect changes with the data.
`label_shuffle_verdict` confirms label shuffle when its balanced-accuracy gain exceeds the
spread of the gains.
"""


def augmentation_verdict(rows):
    smallest = min(r["per_class"] for r in rows)
    counted = [r for r in rows if r["per_class"] == smallest
               and r["augmentation"] not in ("none", *NOT_LABEL_PRESERVING)]
    helping = [r["augmentation"] for r in counted if r["effect"] == "helps"]
    if counted and len(helping) == len(counted):
        status = "confirmed"
    elif helping:
        status = "holds only under conditions"
    else:
        status = "not confirmed"
    parts = []
    for per_class in sorted({r["per_class"] for r in rows}):
        at = {r["augmentation"]: r for r in rows if r["per_class"] == per_class}
        gains = ", ".join(f"{name} {r['gain']:+.1%}" for name, r in at.items() if name != "none")
        parts.append(f"{per_class}/class: none {at['none']['accuracy']:.1%}; {gains}")
    helped = ", ".join(helping) or "none"
    text = (f"with {smallest} images per class, {len(helping)} of {len(counted)} "
            f"label-preserving augmentations help beyond the seed spread ({helped}). "
            + "; ".join(parts))
    return status, text


def label_shuffle_verdict(plain, shuffled, gain_sd):
    from kfound import theory

    gain = shuffled - plain
    status = "confirmed" if theory.classify_gain(gain, gain_sd) == "helps" else "not confirmed"
    text = (f"label shuffle {'lifts' if gain > 0 else 'changes'} balanced accuracy from "
            f"{plain:.1%} to {shuffled:.1%} ({gain:+.1%}, spread {gain_sd:.1%})")
    return status, text


def overall_status(augmentation_status, shuffle_status):
    statuses = {augmentation_status, shuffle_status}
    if statuses == {"confirmed"}:
        return "confirmed"
    if statuses == {"not confirmed"}:
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
    run_arguments.add_run_arguments(parser, run_name="augmentation", not_results=())
    parser.add_argument("--augmentations", nargs="+", choices=AUGMENTATIONS[1:],
                        default=list(AUGMENTATIONS[1:]),
                        help="augmentations to compare with none (default: all)")
    parser.add_argument("--per-class", type=int, nargs="+", default=[10, 40],
                        help="training images per class, one experiment each (default: 10 40)")
    parser.add_argument("--majority", type=int, default=60,
                        help="images of classes 0-4 in the imbalanced set (default: 60)")
    parser.add_argument("--minority", type=int, default=6,
                        help="images of classes 5-9 in the imbalanced set (default: 6)")
    parser.add_argument("--steps", type=int, default=300,
                        help="training steps of batch 32 per run (default: 300)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (default: 3)")
    args = parser.parse_args(argv)
    integers = run_arguments.integers
    images = integers(1, MAX_PER_CLASS)
    run_arguments.check_flags(
        args, per_class=images, majority=images, minority=images, steps=integers(),
        seeds=integers(),
    )
    if args.smoke:
        args.per_class, args.majority, args.minority = [5], 10, 2
        args.steps, args.seeds, args.augmentations = 2, 1, ["pca_lighting"]
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras

    from kfound import runs, theory

    runs.start_run(args)
    x, y = coloured_digits(args.seed)

    """
    ## The sweep
    """
    names = ["none", *dict.fromkeys(args.augmentations)]
    seeds = range(args.seed, args.seed + args.seeds)
    total = args.seeds * (len(args.per_class) * len(names) + 2)
    progress = keras.utils.Progbar(total, unit_name="run")
    results = {}
    shuffle_results = {"plain": [], "label_shuffle": []}
    imbalanced = [args.majority] * 5 + [args.minority] * 5
    for seed in seeds:
        for per_class in args.per_class:
            train, test = split(y, [per_class] * 10, seed)
            for name in names:
                score = train_and_score(x, y, train, test, name, False, args, seed)
                results.setdefault((per_class, name), []).append(score["accuracy"])
                progress.add(1)
        train, test = split(y, imbalanced, seed)
        for arm, balanced in (("plain", False), ("label_shuffle", True)):
            score = train_and_score(x, y, train, test, "none", balanced, args, seed)
            shuffle_results[arm].append(score["balanced_accuracy"])
            progress.add(1)

    rows = []
    for (per_class, name), accuracies in results.items():
        baseline = np.array(results[(per_class, "none")])
        accuracy, sd = theory.mean_and_spread(accuracies)
        gain, gain_sd = theory.mean_and_spread(list(np.array(accuracies) - baseline))
        rows.append({"per_class": per_class, "augmentation": name, "accuracy": accuracy,
                     "sd": sd, "gain": gain, "gain_sd": gain_sd,
                     "effect": "-" if name == "none" else theory.classify_gain(gain, gain_sd)})
    augmentation_status, augmentation_text = augmentation_verdict(rows)
    plain, _ = theory.mean_and_spread(shuffle_results["plain"])
    shuffled, _ = theory.mean_and_spread(shuffle_results["label_shuffle"])
    _, shuffle_sd = theory.mean_and_spread(
        list(np.array(shuffle_results["label_shuffle"]) - np.array(shuffle_results["plain"])))
    shuffle_status, shuffle_text = label_shuffle_verdict(plain, shuffled, shuffle_sd)
    status = overall_status(augmentation_status, shuffle_status)
    verdict = f"Augmentation {augmentation_status}: {augmentation_text}. Label shuffle " \
              f"{shuffle_status}: {shuffle_text} on a {args.majority}:{args.minority} imbalance."
    print(runs.format_table(rows, floatfmt="{:.3f}"))
    print(runs.format_table([{"sampling": arm, "balanced_accuracy": float(np.mean(v))}
                             for arm, v in shuffle_results.items()], floatfmt="{:.3f}"))
    print(f"verdict: {verdict}")

    report = {
        "recipe": "augmentation",
        "chapter": "§3.13",
        "claim": "Augmentation (flip, shift, rotation, scale, noise, colour jitter, PCA "
                 "lighting) helps when training images are few; label shuffle helps "
                 "imbalanced classes.",
        "status": status,
        "verdict": verdict,
        "plot": "augmentation.png",
        "augmentation_status": augmentation_status,
        "label_shuffle_status": shuffle_status,
        "setup": {"images": f"{IMAGE_SIZE}x{IMAGE_SIZE} digits coloured from the sample photos",
                  "model": "Conv16-pool-Conv32-pool-softmax, Adam 1e-3, batch 32",
                  "per_class": args.per_class, "steps": args.steps, "seeds": args.seeds,
                  "imbalance": imbalanced},
        "rows": rows,
        "label_shuffle": {"plain_balanced_accuracy": plain,
                          "label_shuffle_balanced_accuracy": shuffled,
                          "gain_sd": shuffle_sd, "runs": shuffle_results},
        "runs": [{"per_class": p, "augmentation": n, "accuracy": v}
                 for (p, n), v in results.items()],
    }
    return runs.finish_run(args, report, plot(rows, shuffle_results, args))


def plot(rows, shuffle_results, args):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=(3, 1))
    names = list(dict.fromkeys(args.augmentations))
    width = 0.8 / len(args.per_class)
    for i, per_class in enumerate(args.per_class):
        at = {r["augmentation"]: r for r in rows if r["per_class"] == per_class}
        positions = np.arange(len(names)) + (i - (len(args.per_class) - 1) / 2) * width
        left.bar(positions, [at[n]["gain"] for n in names], width,
                 yerr=[at[n]["gain_sd"] for n in names], capsize=2,
                 label=f"{per_class}/class (none: {at['none']['accuracy']:.1%})")
    left.axhline(0, color="gray", linewidth=0.5)
    left.set_xticks(np.arange(len(names)), names, rotation=30)
    left.set_ylabel("test accuracy gain over no augmentation")
    left.set_title(f"Each augmentation alone, mean +- sd of {args.seeds} seeds")
    left.legend()
    arms = list(shuffle_results)
    right.bar(arms, [np.mean(shuffle_results[a]) for a in arms],
              yerr=[np.std(shuffle_results[a]) for a in arms], capsize=3)
    right.set_ylabel("balanced test accuracy")
    right.set_title(f"{args.majority}:{args.minority} imbalance")
    return figure


if __name__ == "__main__":
    run_arguments.run_main(main)

"""
Title: The convolution output-size formula, checked against Keras layers
Description: W2 = (W1 - F + 2P) / S + 1 (§3.2.3-3.2.4) against real Conv2D, MaxPooling2D and
    AveragePooling2D over a grid of sizes, kernels, strides and paddings, and the book's examples.
Run time: about 30 seconds on a CPU (`--smoke`: a few seconds, a smaller grid).

The chapter gives one formula for the width of a convolution's or a pooling's output:
`W2 = (W1 - F + 2P) / S + 1`, with `W1` the input width, `F` the filter width, `P` the zeros
added on each side and `S` the stride. This recipe runs real Keras layers on crops of a real
photograph (scikit-learn's bundled `china.jpg`) and compares every output size with the formula
(`kfound.theory.conv_output_size`). It then writes Keras's own `padding="valid"` and
`padding="same"` in the formula's terms (`kfound.theory.keras_padding`), and checks the book's
examples: a 5x5 input with a 3x3 filter at strides 1 and 2, and the 7x7x3 input with two 3x3x3
filters at stride 2 and padding 1 that the book says gives 3x3x2 and 56 parameters.

Usage:

```
python recipes/conv_output_size.py
```
"""

import argparse
import itertools

import numpy as np
from _light import run_arguments

# Keras and kfound are imported inside the functions that use them, once the flags are
# checked: under the TensorFlow backend, importing Keras imports TensorFlow (seconds).

"""
## Real input

Crops of a real photograph that ships with scikit-learn, scaled to [0, 1]. Only the shapes
matter to the formula, but the layers run on real pixels.
"""


def photo_crop(size):
    from sklearn.datasets import load_sample_image

    image = load_sample_image("china.jpg").astype("float32") / 255.0
    return image[None, 100:100 + size, 200:200 + size, :]


"""
## Measuring a layer's output

Explicit padding is the book's `P`: `ZeroPadding2D(P)` then the layer with `padding="valid"`.
Keras's `"same"` and `"valid"` are measured as they are. Each entry of `LAYERS` builds its
layer from `keras.layers`, which it is given.
"""

LAYERS = {
    "Conv2D": lambda layers, f, s, padding: layers.Conv2D(2, f, strides=s, padding=padding),
    "MaxPooling2D": lambda layers, f, s, padding: layers.MaxPooling2D(
        f, strides=s, padding=padding
    ),
    "AveragePooling2D": lambda layers, f, s, padding: layers.AveragePooling2D(
        f, strides=s, padding=padding
    ),
}


def measured_size(layer_name, image, kernel, stride, padding):
    """Runs the layer on `image`; `padding` is an int (the book's P) or 'same'/'valid'."""
    import keras

    x = image
    if isinstance(padding, int):
        x = keras.layers.ZeroPadding2D(padding)(x)
        padding = "valid"
    y = LAYERS[layer_name](keras.layers, kernel, stride, padding)(x)
    return int(y.shape[1]), int(y.shape[2])


def grid_rows(sizes, kernels, strides, paddings):
    from kfound import theory

    images = {w: photo_crop(w) for w in sizes}
    rows = []
    for layer_name, w1, f, s, p in itertools.product(LAYERS, sizes, kernels, strides, paddings):
        explicit = isinstance(p, int)
        if f > w1 + 2 * (p if explicit else 0) and p != "same":
            continue  # the window does not fit: Keras (rightly) refuses it
        height, width = measured_size(layer_name, images[w1], f, s, p)
        if explicit:
            predicted = theory.conv_output_size(w1, f, stride=s, padding=p)
            exact = (w1 - f + 2 * p) % s == 0
        else:
            predicted = theory.keras_output_size(w1, f, s, p)
            before, after = theory.keras_padding(w1, f, s, p)
            exact = (w1 - f + before + after) % s == 0
        rows.append({
            "layer": layer_name, "W1": w1, "F": f, "S": s, "P": p,
            "formula": predicted, "keras": width,
            "match": predicted == width == height,
            "integer": exact,  # the book's formula is an integer without flooring
        })
    return rows


"""
## The book's examples

- 5x5 input, 3x3 filter, stride 1 -> 3x3; stride 2 -> 2x2 (the book computes the latter).
- "7x7x3 input, two 3x3x3 filters, stride 2, zero padding 1 -> 3x3x2", with
  `(3 * 3 * 3 + 1) * 2 = 56` parameters. The figure this comes from (CS231n's convolution demo)
  shows a 5x5x3 input drawn with its padding, 7x7x3 in all. Taken literally, a 7x7 input with
  P = 1 gives `(7 - 3 + 2) / 2 + 1 = 4`, not 3: the 3x3x2 needs W1 = 5 with P = 1, or the padded
  7x7 with P = 0. The recipe measures all three readings.
"""


def book_examples():
    import keras

    from kfound import theory

    rows = []
    for label, w1, f, s, p, depth, book in [
        ("5x5, 3x3, stride 1", 5, 3, 1, 0, 1, "3x3"),
        ("5x5, 3x3, stride 2", 5, 3, 2, 0, 1, "2x2"),
        ("7x7x3, P=1, stride 2 (literal)", 7, 3, 2, 1, 3, "3x3x2"),
        ("5x5x3, P=1, stride 2 (the figure)", 5, 3, 2, 1, 3, "3x3x2"),
        ("7x7x3 already padded, P=0, stride 2", 7, 3, 2, 0, 3, "3x3x2"),
    ]:
        x = photo_crop(w1)[..., :depth]
        padded = keras.layers.ZeroPadding2D(p)(x)
        conv = keras.layers.Conv2D(2 if depth == 3 else 1, f, strides=s)
        y = conv(padded)
        dims = y.shape[1:] if depth == 3 else y.shape[1:3]
        shape = "x".join(str(d) for d in dims)
        rows.append({
            "example": label, "book": book, "formula": theory.conv_output_size(w1, f, s, p),
            "keras": shape, "parameters": conv.count_params(),
            "formula_parameters": theory.conv_parameter_count(f, depth, conv.filters),
            "agrees_with_book": shape == book,
        })
    return rows


"""
## Keras's "valid" and "same" in the formula's terms

- `padding="valid"` is `P = 0`: `W2 = floor((W1 - F) / S) + 1`; the last `(W1 - F) mod S`
  columns are never reached by a window and are dropped.
- `padding="same"` fixes the output first, `W2 = ceil(W1 / S)`, then pads the fewest zeros that
  give it: `total = max((W2 - 1) * S + F - W1, 0)`, `total // 2` before and the rest after. So
  `2P` becomes `total`, which may be odd (one more zero at the end, where the book's `P` is
  symmetric), and "same" means "same size" only at stride 1.
"""


def same_padding_rows(sizes, kernel, strides):
    from kfound import theory

    return [
        {"W1": w1, "F": kernel, "S": s, "before": theory.keras_padding(w1, kernel, s, "same")[0],
         "after": theory.keras_padding(w1, kernel, s, "same")[1],
         "W2": theory.keras_output_size(w1, kernel, s, "same")}
        for s in strides for w1 in sizes
    ]


def parse_args(argv=None):
    """Parses and checks the flags, importing neither Keras nor kfound's package.

    Raises:
        ValueError: naming the first bad flag.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run_arguments.add_run_arguments(parser, run_name="conv_output_size", not_results=())
    args = parser.parse_args(argv)
    run_arguments.check_flags(args)  # --seed, the only numeric flag
    return args


def main(argv=None):
    args = parse_args(argv)
    from kfound import runs

    runs.start_run(args)
    if args.smoke:
        sizes, kernels, strides, paddings = (5, 8), (1, 3), (1, 2), (0, 1, "valid", "same")
    else:
        sizes, kernels = (5, 6, 7, 8, 13, 32), (1, 2, 3, 5)
        strides, paddings = (1, 2, 3), (0, 1, 2, "valid", "same")
    grid = grid_rows(sizes, kernels, strides, paddings)
    examples = book_examples()
    same = same_padding_rows(range(4, 12), 3, (1, 2, 3))

    matches = sum(r["match"] for r in grid)
    floored = sum(not r["integer"] for r in grid)
    literal = examples[2]
    if matches < len(grid):
        status = "not confirmed"
    elif floored:
        status = "holds only under conditions"
    else:
        status = "confirmed"
    verdict = (
        "As written, the formula is right when S divides W1 - F + 2P; with a floor "
        f"it gives every output size Keras measures ({matches}/{len(grid)} Conv2D/MaxPooling2D/"
        f"AveragePooling2D configurations), and {floored} of them need that floor, which the "
        "book does not mention. "
        f"The book's 7x7x3, P=1, S=2 example gives {literal['keras']} taken literally, not "
        "3x3x2: its 7x7 is the 5x5 input already padded. Its 56 parameters are right "
        f"({literal['parameters']})."
    )
    print(runs.format_table(examples))
    print()
    print(runs.format_table(same[8:16]))
    print()
    mismatches = [r for r in grid if not r["match"]]
    print(f"{len(grid)} grid configurations, {len(mismatches)} mismatches")
    if mismatches:
        print(runs.format_table(mismatches))
    print(f"verdict: {status}: {verdict}")
    report = {
        "recipe": "conv_output_size",
        "chapter": "§3.2.3-3.2.4",
        "claim": "W2 = (W1 - F + 2P) / S + 1 gives conv and pooling output sizes",
        "status": status,
        "grid": grid,
        "book_examples": examples,
        "keras_same_padding": same,
        "matches": matches,
        "configurations": len(grid),
        "non_integer_cases": floored,
        "verdict": verdict,
        "plot": "conv_output_size.png",
    }
    return runs.finish_run(args, report, plot(grid, same))


def plot(grid, same):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    left, right = figure.subplots(1, 2)
    rng = np.random.default_rng(0)
    for padding, marker in (("explicit P", "o"), ("valid", "s"), ("same", "^")):
        rows = [r for r in grid if (isinstance(r["P"], int) and padding == "explicit P")
                or r["P"] == padding]
        jitter = rng.uniform(-0.15, 0.15, len(rows))
        left.scatter([r["formula"] + j for r, j in zip(rows, jitter, strict=True)],
                     [r["keras"] for r in rows], marker=marker, alpha=0.5, label=padding)
    top = max(r["keras"] for r in grid)
    left.plot([0, top], [0, top], color="black", linewidth=0.5)
    left.set_xlabel("formula W2 (jittered)")
    left.set_ylabel("Keras output width")
    left.set_title("Formula vs Keras layers")
    left.legend()
    for s in sorted({r["S"] for r in same}):
        rows = [r for r in same if r["S"] == s]
        right.plot([r["W1"] for r in rows], [r["before"] + r["after"] for r in rows],
                   marker="o", label=f"S={s}")
    right.set_xlabel("input width W1 (F = 3)")
    right.set_ylabel('total zeros added by "same"')
    right.set_title('"same" = ceil(W1/S) outputs, fewest zeros')
    right.legend()
    return figure


if __name__ == "__main__":
    run_arguments.run_main(main)

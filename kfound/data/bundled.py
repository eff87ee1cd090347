"""Small real datasets that ship with well-kept packages, for offline runs and tests.

Everything here is NumPy: no TensorFlow, so the `mlp` and `cnn` searches and the recipes
run on any backend, with or without TensorFlow installed.
"""

import numpy as np

from kfound import checks


def load_digits(validation_fraction=0.25, images=True, seed=0):
    """scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), split.

    The data ships inside scikit-learn, so this works with no internet.

    Args:
        validation_fraction: the share of examples held out, stratified by class.
            Defaults to `0.25`.
        images: if `True` (default), `x` has shape `(n, 8, 8, 1)`; else `(n, 64)`.
        seed: the seed of the split. Defaults to `0`.

    Returns:
        `((x_train, y_train), (x_val, y_val))`, with `x` float32 in `[0, 1]` and
        `y` int32 labels.

    Example:

    >>> (x, y), (x_val, y_val) = load_digits()
    >>> x.shape[1:], int(y.max())
    ((8, 8, 1), 9)
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            "Argument `validation_fraction` must be in (0, 1). "
            f"Received: validation_fraction={validation_fraction}"
        )
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x = (bunch.images / 16.0).astype("float32")
    y = bunch.target.astype("int32")
    x = x[..., None] if images else x.reshape(len(x), -1)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=validation_fraction, random_state=seed, stratify=y
    )
    return (x_train, y_train), (x_val, y_val)


def embedded_digits(task, train_per_class=10, seed=0):
    """The offline transfer-learning tasks, on two disjoint halves of scikit-learn's digits.

    The 1,797 digit images are split into two disjoint halves, stratified by digit
    (`seed` picks the split). The tasks differ in both their images and their labels, as
    ImageNet pretraining and a new dataset do:

    - `"source"`: classify the ten digits (class names `"0"`..`"9"`) on half A, for
      pretraining a backbone; three quarters of A train, one quarter is validation.
    - `"target"`: a new label space on half B, the digit's parity (labels 0 and 1, class
      names `"even"` and `"odd"`), with only `train_per_class` labelled training images per
      class; every other image of B is the validation set. A small labelled set is the
      regime where pretraining matters. Parity is a function of the digit, so what
      transfers is a representation that separates digits, reused for a label space the
      backbone never saw, on images it never saw.

    Args:
        task: `"source"` or `"target"`.
        train_per_class: labelled training images per class of the target task.
            Defaults to `10`.
        seed: the seed of the splits. Defaults to `0`.

    Returns:
        `((x_train, y_train), (x_val, y_val), class_names)`, with `x` float32 in `[0, 1]`
        of shape `(n, 8, 8, 1)` and `y` int32.
    """
    if task not in ("source", "target"):
        raise ValueError(f"Argument `task` must be 'source' or 'target'. Received: task={task!r}")
    if task == "target":
        checks.positive_int("train_per_class", train_per_class)
    (x_a, y_a), (x_b, y_b) = load_digits(validation_fraction=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    if task == "source":
        order = rng.permutation(len(x_a))
        cut = (3 * len(x_a)) // 4
        train_idx, val_idx = np.sort(order[:cut]), np.sort(order[cut:])
        return (
            (x_a[train_idx], y_a[train_idx]),
            (x_a[val_idx], y_a[val_idx]),
            [str(d) for d in range(10)],
        )
    parity = (y_b % 2).astype("int32")
    train_idx, val_idx = [], []
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(parity == label))
        if len(idx) <= train_per_class:
            raise ValueError(
                "Argument `train_per_class` must leave validation images in every class "
                f"(the smallest class has {len(idx)} images). "
                f"Received: train_per_class={train_per_class}"
            )
        train_idx.extend(idx[:train_per_class])
        val_idx.extend(idx[train_per_class:])
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    return (
        (x_b[train_idx], parity[train_idx]),
        (x_b[val_idx], parity[val_idx]),
        ["even", "odd"],
    )


def digits_to_rgb(images, image_size):
    """Grey digits in `[0, 1]` to RGB images in `[0, 255]` of side `image_size` (bilinear).

    Args:
        images: float array of shape `(n, h, w, 1)` with values in `[0, 1]`.
        image_size: the side of the square output.

    Returns:
        A float32 NumPy array of shape `(n, image_size, image_size, 3)`.
    """
    import keras

    rgb = np.repeat(np.asarray(images, "float32") * 255.0, 3, axis=-1)
    return keras.ops.convert_to_numpy(
        keras.ops.image.resize(rgb, (image_size, image_size), interpolation="bilinear")
    ).astype("float32")

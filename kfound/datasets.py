"""Small real datasets that ship with well-kept packages, for offline runs and tests."""


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



"""Image augmentation for the training pipelines: Keras preprocessing layers and PCA lighting."""

import keras


def augmentation_layers(
    flip="horizontal", rotation=0.1, zoom=0.1, contrast=0.1, pca_lighting=0.1, seed=None
):
    """The standard Keras preprocessing-layer augmentation plus AlexNet's PCA lighting.

    The pipeline feeds RGB images in `[0, 255]`, the value range every layer here expects.

    Args:
        flip: `RandomFlip` mode, or `None` to skip flipping. Defaults to `"horizontal"`.
        rotation: `RandomRotation` factor (fraction of a full turn). Defaults to `0.1`.
        zoom: `RandomZoom` height factor. Defaults to `0.1`.
        contrast: `RandomContrast` factor. Defaults to `0.1`.
        pca_lighting: `kfound.layers.RandomPCALighting` standard deviation (AlexNet's
            "PCA jittering", Krizhevsky et al., 2012, with the ImageNet principal
            components), or `0` to skip it. Defaults to `0.1`, AlexNet's value.
        seed: the layers' seed. Defaults to `None`.

    Returns:
        A `keras.layers.Pipeline` of the layers, for `load_image_data(augment=...)`. Unlike a
        `keras.Sequential`, a `Pipeline` runs inside a `tf.data` map on every backend.

    Raises:
        ValueError: when every augmentation is off (pass `augment=None` instead).
    """
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip(flip, seed=seed))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, seed=seed))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, seed=seed))
    if contrast:
        # RandomContrast expects values in [0, 255] by default, which is what we feed it.
        layers.append(keras.layers.RandomContrast(contrast, seed=seed))
    if pca_lighting:
        from kfound.layers import RandomPCALighting

        layers.append(RandomPCALighting(stddev=pca_lighting, value_range=(0, 255), seed=seed))
    if not layers:
        raise ValueError(
            "augmentation_layers() needs at least one augmentation; to train without any, "
            "pass augment=None. Received: flip=None, rotation=0, zoom=0, contrast=0, "
            "pca_lighting=0"
        )
    for layer in layers:
        # They hold no weights. Built up front, so that `Pipeline` (which has no `build` of
        # its own) does not warn, under JAX and torch, that it holds unbuilt layers.
        layer.build((None, None, None, 3))
    return keras.layers.Pipeline(layers, name="augmentation")

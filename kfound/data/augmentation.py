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
        A `keras.Sequential` of the layers, for `load_image_data(augment=...)`.
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
    return keras.Sequential(layers, name="augmentation")

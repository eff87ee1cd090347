"""`BackbonePreprocessing`: a backbone's own input preprocessing, as a layer."""

import keras

SMALL_BACKBONE = "SmallConvNet"


def application_names():
    """The names of the `keras.applications` backbone constructors, sorted."""
    return sorted(
        name for name in dir(keras.applications)
        if name[0].isupper() and callable(getattr(keras.applications, name))
    )


def application(name):
    """The `keras.applications` constructor called `name`, and its module.

    The module holds the constructor's own `preprocess_input` and `decode_predictions`.

    Raises:
        ValueError: `name` is not a `keras.applications` constructor.
    """
    if name not in application_names():
        raise ValueError(
            f"Argument `backbone` must be one of "
            f"{', '.join([SMALL_BACKBONE, *application_names()])}. Received: backbone={name!r}"
        )
    constructor = getattr(keras.applications, name)
    module = getattr(keras.applications, constructor.__module__.rsplit(".", 1)[-1])
    return constructor, module


@keras.saving.register_keras_serializable(package="kfound")
class BackbonePreprocessing(keras.layers.Layer):
    """A backbone's own input preprocessing as a layer, so saved models take raw images.

    Args:
        backbone: a `keras.applications` constructor name (its module's
            `preprocess_input` runs) or `"SmallConvNet"` (scales `[0, 255]` to `[0, 1]`).

    Call arguments:
        inputs: RGB images with values in `[0, 255]`.

    Returns:
        The images as the backbone expects them.

    Example:

    >>> layer = BackbonePreprocessing("MobileNet")
    >>> float(layer(np.full((1, 2, 2, 3), 255.0, "float32"))[0, 0, 0, 0])
    1.0
    """

    def __init__(self, backbone, **kwargs):
        if backbone != SMALL_BACKBONE:
            application(backbone)
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, inputs):
        if self.backbone == SMALL_BACKBONE:
            return inputs / 255.0
        return application(self.backbone)[1].preprocess_input(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}

"""AlexNet's PCA lighting augmentation ("fancy PCA") and a helper to fit it to your images."""

import math
import sys

import keras
import numpy as np
from keras import ops

from kfound import checks

# The ImageNet RGB principal components used by fb.resnet.torch (datasets/imagenet.lua,
# "computed from random subset of ImageNet training images") for RGB pixels in [0, 1];
# eigenvectors are the columns. Caffe2's ImageInputOp and ClassyVision use the same numbers
# (with the eigenvectors multiplied by 255, for pixels in [0, 255]). AlexNet did not print
# its values.
IMAGENET_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def _check_value_range(value_range):
    if (
        not isinstance(value_range, (tuple, list))
        or len(value_range) != 2
        or not all(checks.is_finite_number(v) for v in value_range)
        or not value_range[0] < value_range[1]
    ):
        raise ValueError(
            "Argument `value_range` must be a pair of finite numbers (low, high) with "
            f"low < high. Received: value_range={value_range!r}"
        )
    return float(value_range[0]), float(value_range[1])


def _check_array(value, name, shape):
    try:
        array = np.asarray(value, dtype="float64")
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != shape or not np.all(np.isfinite(array)):
        raise ValueError(
            f"Argument `{name}` must be an array of finite numbers of shape {shape}. "
            f"Received: {name}={value!r}"
        )
    return array


@keras.saving.register_keras_serializable(package="kfound")
class RandomPCALighting(keras.layers.Layer):
    """Adds a random multiple of the RGB principal components to each image.

    AlexNet's "PCA color augmentation": for every image, draw
    `alpha ~ N(0, stddev²)` for each of the three principal components of the
    RGB pixel values of the training set, and add
    `eigenvectors @ (alpha * eigenvalues)` to every pixel of that image. The
    shift models changes in the intensity and color of the illumination, which
    leave an object's identity unchanged.

    **Value range.** `eigenvalues` and `eigenvectors` describe RGB pixels
    scaled to `[0, 1]`, as the published ImageNet values do (and as
    `fit_pca_lighting` returns them). The layer maps its input's
    `value_range` onto that: the shift is multiplied by
    `value_range[1] - value_range[0]`, so images in `[0, 255]` (the default)
    get 255 times the `[0, 1]` shift, exactly as in Caffe2's and
    ClassyVision's `[0, 255]` versions of the same numbers. The output is not
    clipped to `value_range` (neither AlexNet nor fb.resnet.torch clipped).

    **When it is active.** Like Keras's augmentation layers, the layer
    augments when called directly (`training` defaults to `True`, so it works
    in `dataset.map(layer)`), and it is the identity inside `predict`,
    `evaluate` and any call with `training=False`; `fit` passes
    `training=True`.

    The inputs are channels-last RGB images, `(height, width, 3)` or
    `(batch, height, width, 3)`; integer inputs are cast to the layer's
    compute dtype. Like Keras's own augmentation layers, it also runs inside a
    `tf.data` pipeline on every backend: there (in a TensorFlow graph, under
    JAX or torch) it computes with TensorFlow ops and draws from a
    `tf.random.Generator` seeded with `seed`. Compose it with other layers for
    `tf.data` in a `keras.layers.Pipeline`, not a `keras.Sequential` (which
    converts its inputs to the backend's tensors).

    Args:
        stddev: non-negative float, the standard deviation of `alpha`.
            Defaults to `0.1` (AlexNet). `0` makes the layer the identity.
        eigenvalues: the 3 eigenvalues of the RGB covariance of pixels in
            `[0, 1]`, largest first. Defaults to the ImageNet values of
            fb.resnet.torch, `(0.2175, 0.0188, 0.0045)`.
        eigenvectors: a 3x3 array whose *columns* are the matching unit
            eigenvectors, rows in R, G, B order (as `numpy.linalg.eigh`
            returns them). Defaults to fb.resnet.torch's ImageNet eigenvectors.
        value_range: `(low, high)`, the range of the input pixel values.
            Defaults to `(0, 255)`.
        seed: integer or `None`, the seed of the layer's
            `keras.random.SeedGenerator`. Defaults to `None`.
        **kwargs: base `Layer` arguments such as `name` and `dtype`.

    Call arguments:
        inputs: channels-last RGB images of rank 3 or 4.
        training: whether to augment. Defaults to `True`.

    Returns:
        The images with one random RGB shift per image, in the layer's
        compute dtype.

    Example:

    >>> images = np.random.randint(0, 256, (8, 32, 32, 3)).astype("uint8")
    >>> layer = RandomPCALighting(stddev=0.1, seed=0)
    >>> layer(images).shape
    (8, 32, 32, 3)
    >>> eigenvalues, eigenvectors = fit_pca_lighting(images, verbose=0)
    >>> mine = RandomPCALighting(eigenvalues=eigenvalues, eigenvectors=eigenvectors)

    Reference:
        - [Krizhevsky et al., 2012. ImageNet Classification with Deep
          Convolutional Neural Networks](
          https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks),
          §4.1.
        - The ImageNet values: [fb.resnet.torch, datasets/imagenet.lua](
          https://github.com/facebookarchive/fb.resnet.torch/blob/master/datasets/imagenet.lua).
    """

    def __init__(
        self,
        stddev=0.1,
        eigenvalues=IMAGENET_EIGENVALUES,
        eigenvectors=IMAGENET_EIGENVECTORS,
        value_range=(0, 255),
        seed=None,
        **kwargs,
    ):
        stddev = checks.non_negative_number("stddev", stddev)
        eigenvalue_array = _check_array(eigenvalues, "eigenvalues", (3,))
        if np.any(eigenvalue_array < 0):
            raise ValueError(
                "Argument `eigenvalues` must be non-negative (they are variances). "
                f"Received: eigenvalues={eigenvalues!r}"
            )
        eigenvector_array = _check_array(eigenvectors, "eigenvectors", (3, 3))
        low, high = _check_value_range(value_range)
        if seed is not None:
            seed = checks.integer("seed", seed)
        super().__init__(**kwargs)
        self.stddev = float(stddev)
        self.eigenvalues = tuple(eigenvalue_array.tolist())
        self.eigenvectors = tuple(tuple(row) for row in eigenvector_array.tolist())
        self.value_range = (low, high)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self._tf_generator = None  # Made on the first call in a tf.data pipeline (not TF).
        # shift = alpha @ basis: row k is eigenvector k times eigenvalue k, in input units.
        self._basis = (eigenvector_array * eigenvalue_array).T * (high - low)

    def __call__(self, inputs, *args, **kwargs):
        if keras.backend.backend() != "tensorflow" and _in_tensorflow_graph(inputs):
            return self._call_in_tensorflow(inputs, *args, **kwargs)
        return super().__call__(inputs, *args, **kwargs)

    def _call_in_tensorflow(self, inputs, training=True):
        """`call` in TensorFlow ops, for a tf.data pipeline under another backend."""
        import tensorflow as tf

        self._check_shape(tuple(inputs.shape))
        inputs = tf.cast(inputs, self.compute_dtype)
        if not training or self.stddev == 0:
            return inputs
        if self._tf_generator is None:
            with tf.init_scope():  # A variable, made outside the dataset's function.
                self._tf_generator = (
                    tf.random.Generator.from_non_deterministic_state()
                    if self.seed is None else tf.random.Generator.from_seed(self.seed)
                )
        batch_shape = tf.shape(inputs)[:-3]
        alpha = self._tf_generator.normal(tf.concat([batch_shape, [3]], 0), stddev=self.stddev)
        shift = tf.tensordot(alpha, tf.constant(self._basis, tf.float32), axes=1)
        shift = tf.reshape(shift, tf.concat([batch_shape, [1, 1, 3]], 0))
        return inputs + tf.cast(shift, self.compute_dtype)

    def _check_shape(self, input_shape):
        if len(input_shape) not in (3, 4) or input_shape[-1] != 3:
            raise ValueError(
                "RandomPCALighting expects channels-last RGB images of shape "
                "(height, width, 3) or (batch, height, width, 3). "
                f"Received: input_shape={input_shape}"
            )

    def build(self, input_shape):
        self._check_shape(tuple(input_shape))
        self.input_spec = keras.layers.InputSpec(min_ndim=3, max_ndim=4, axes={-1: 3})

    def call(self, inputs, training=True):
        inputs = ops.cast(inputs, self.compute_dtype)
        if not training or self.stddev == 0:
            return inputs
        batch_shape = tuple(ops.shape(inputs)[:-3])
        alpha = keras.random.normal(
            (*batch_shape, 3), stddev=self.stddev, dtype="float32", seed=self.generator
        )
        shift = ops.matmul(alpha, ops.convert_to_tensor(self._basis, dtype="float32"))
        shift = ops.reshape(shift, (*batch_shape, 1, 1, 3))
        return inputs + ops.cast(shift, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "stddev": self.stddev,
            "eigenvalues": list(self.eigenvalues),
            "eigenvectors": [list(row) for row in self.eigenvectors],
            "value_range": list(self.value_range),
            "seed": self.seed,
        }


def _in_tensorflow_graph(inputs):
    """Whether `inputs` is a tensor of a TensorFlow graph, such as a tf.data map function's."""
    tf = sys.modules.get("tensorflow")  # Only TensorFlow itself can make such a tensor.
    return tf is not None and tf.is_tensor(inputs) and not tf.executing_eagerly()


class _RunningCovariance:
    """Streams the mean and covariance of 3-vectors in float64 (Chan et al.'s merge)."""

    def __init__(self):
        self.count = 0
        self.mean = np.zeros(3)
        self.scatter = np.zeros((3, 3))

    def update(self, pixels):
        count = pixels.shape[0]
        if count == 0:
            return
        mean = pixels.mean(axis=0)
        centered = pixels - mean
        scatter = centered.T @ centered
        total = self.count + count
        delta = mean - self.mean
        self.scatter += scatter + np.outer(delta, delta) * (self.count * count / total)
        self.mean += delta * (count / total)
        self.count = total

    def covariance(self):
        return self.scatter / (self.count - 1)


def _image_batches(images, batch_size):
    """Yields NumPy arrays of RGB images from an array, a tf.data.Dataset or an iterable."""
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            for start in range(0, images.shape[0], batch_size):
                yield images[start : start + batch_size]
        else:
            yield images
        return
    elements = images.as_numpy_iterator() if hasattr(images, "as_numpy_iterator") else images
    for element in elements:
        if isinstance(element, (tuple, list)):
            element = element[0]  # (image, label) pairs.
        elif isinstance(element, dict):
            if "image" not in element:
                raise ValueError(
                    "Dataset elements that are dicts must have an 'image' key (as TFDS "
                    f"datasets do). Received: keys={sorted(element)}"
                )
            element = element["image"]
        yield np.asarray(element)


def fit_pca_lighting(images, value_range=(0, 255), batch_size=64, verbose=1):
    """Computes the RGB principal components of your images for `RandomPCALighting`.

    Streams the 3x3 covariance of all RGB pixels in float64 (one batch of
    images in memory at a time), then diagonalizes it. The pixels are first
    mapped from `value_range` to `[0, 1]`, so the result is in the same units as
    `RandomPCALighting`'s defaults and can be passed to it for images of any
    value range.

    Args:
        images: channels-last RGB images: a NumPy array `(height, width, 3)` or
            `(n, height, width, 3)`; or a finite `tf.data.Dataset` (or any
            iterable) of images, batched or not, or of `(image, label)` pairs, or
            of dicts with an `"image"` key (TFDS). Images may differ in size.
        value_range: `(low, high)`, the range of the pixel values. Defaults to
            `(0, 255)`; use `(0, 1)` for images already scaled.
        batch_size: for NumPy input, how many images are converted to float64
            at a time. Defaults to `64`.
        verbose: `1` shows a progress bar, `0` is silent. Defaults to `1`.

    Returns:
        `(eigenvalues, eigenvectors)`: float64 arrays of shapes `(3,)` and
        `(3, 3)`. The eigenvalues of the covariance of pixels scaled to `[0, 1]`,
        in descending order; the matching unit eigenvectors are the columns,
        rows in R, G, B order, each signed so its largest-magnitude entry is
        positive.

    Example:

    >>> from sklearn.datasets import load_sample_images
    >>> photos = np.stack(load_sample_images().images)  # (2, 427, 640, 3) uint8
    >>> eigenvalues, eigenvectors = fit_pca_lighting(photos, verbose=0)
    >>> layer = RandomPCALighting(eigenvalues=eigenvalues, eigenvectors=eigenvectors)
    """
    low, high = _check_value_range(value_range)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"Argument `batch_size` must be a positive integer. Received: batch_size={batch_size!r}"
        )
    if not isinstance(images, np.ndarray) and not hasattr(images, "__iter__"):
        raise TypeError(
            "Argument `images` must be a NumPy array, a tf.data.Dataset or an iterable of "
            f"images. Received: images={type(images).__name__}"
        )
    target = None
    if isinstance(images, np.ndarray) and images.ndim == 4:
        target = math.ceil(images.shape[0] / batch_size)
    elif hasattr(images, "cardinality"):
        cardinality = int(images.cardinality())
        if cardinality == -1:  # tf.data.INFINITE_CARDINALITY
            raise ValueError(
                "Argument `images` is an infinite dataset; pass a finite one, e.g. with "
                "`dataset.take(n)`. Received: images=<infinite tf.data.Dataset>"
            )
        target = cardinality if cardinality >= 0 else None
    progbar = keras.utils.Progbar(target, unit_name="batch") if verbose else None

    running = _RunningCovariance()
    for step, batch in enumerate(_image_batches(images, batch_size), start=1):
        if batch.ndim not in (3, 4) or batch.shape[-1] != 3:
            raise ValueError(
                "Argument `images` must hold channels-last RGB images of shape "
                "(height, width, 3) or (batch, height, width, 3). "
                f"Received: element_shape={batch.shape}"
            )
        pixels = (batch.reshape(-1, 3).astype("float64") - low) / (high - low)
        running.update(pixels)
        if progbar is not None:
            progbar.update(step)
    if running.count < 2:
        raise ValueError(
            "Argument `images` must hold at least 2 pixels to estimate a covariance. "
            f"Received: num_pixels={running.count}"
        )
    eigenvalues, eigenvectors = np.linalg.eigh(running.covariance())
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)  # Round-off can give -1e-18.
    eigenvectors = eigenvectors[:, order]
    largest = np.argmax(np.abs(eigenvectors), axis=0)
    eigenvectors = eigenvectors * np.sign(eigenvectors[largest, np.arange(3)])
    return eigenvalues, eigenvectors

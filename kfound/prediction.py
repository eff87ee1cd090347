"""State one of fine-tuning: labelling images with a trained classifier, no training.

Also how a classifier is saved and loaded with its class names, and an ImageNet classifier
from `keras.applications` for labelling with ImageNet's own classes.
"""

import csv
import io
import json
import os

import keras
import numpy as np
import tensorflow as tf

from kfound import io_utils
from kfound.backbones import default_image_size
from kfound.data.image_files import image_candidates, named_image_files_dataset
from kfound.layers.backbone_preprocessing import BackbonePreprocessing, application

CLASSES_FILE = "classes.json"


def save_classifier(model, class_names, folder):
    """Saves `model.keras` and its class names (`classes.json`) into `folder`, atomically."""
    io_utils.save_model(model, os.path.join(folder, "model.keras"))
    io_utils.write_json(os.path.join(folder, CLASSES_FILE), list(class_names))


def load_classifier(path):
    """Loads a `model.keras` saved by `save_classifier` and the class names beside it.

    Args:
        path: the `model.keras` file, or the folder holding it.

    Returns:
        `(model, class_names)`.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    classes = os.path.join(os.path.dirname(path), CLASSES_FILE)
    if not (os.path.isfile(path) and os.path.isfile(classes)):
        raise ValueError(
            "Argument `model` must be a model.keras saved by this recipe, with its "
            f"{CLASSES_FILE} beside it. Received: model={path!r}"
        )
    with open(classes, encoding="utf-8") as f:
        class_names = json.load(f)
    return io_utils.load_model(path), class_names


def imagenet_classifier(name, weights="imagenet", image_size=None, alpha=None):
    """A with-top `keras.applications` classifier that takes raw `[0, 255]` images.

    Args:
        name: a `keras.applications` constructor name.
        weights: `"imagenet"` or the path of a with-top weights file.
        image_size: the input side. Defaults to 224.
        alpha: the MobileNet family's width multiplier.

    Returns:
        `(model, decode)`: the model and its module's `decode_predictions`.
    """
    constructor, module = application(name)
    image_size = image_size or default_image_size(name)
    kwargs = {"alpha": alpha} if alpha is not None else {}
    try:
        network = constructor(include_top=True, weights=weights,
                              input_shape=(image_size, image_size, 3), **kwargs)
    except Exception as error:
        raise ValueError(
            f"Argument `weights` must be 'imagenet' or a with-top weights file of {name} to "
            f"label images with ImageNet classes ({str(error).splitlines()[0][:300]}). "
            f"Received: weights={weights!r}"
        ) from error
    images = keras.Input((image_size, image_size, 3), name="images")
    model = keras.Model(images, network(BackbonePreprocessing(name)(images)))
    return model, module.decode_predictions


def predict(model, dataset, class_names=None, decode=None, verbose=0):
    """State 1: labels images, no training.

    Args:
        model: a classifier from raw `[0, 255]` images to class probabilities.
        dataset: a batched `tf.data.Dataset` of images (or of `(images, labels)`).
        class_names: the names of the model's classes (a saved model's `classes.json`).
        decode: instead of `class_names`, an ImageNet `decode_predictions`.
        verbose: `predict`'s verbosity. Defaults to `0`.

    Returns:
        `(labels, probabilities, predicted_indices)`: a list of class names, the
        probability of each, and the indices (NumPy arrays).
    """
    return _labels(model.predict(dataset, verbose=verbose), class_names, decode)


def _labels(probabilities, class_names, decode):
    index = probabilities.argmax(axis=-1)
    best = probabilities.max(axis=-1)
    if decode is not None:
        labels = [top[0][1] for top in decode(probabilities, top=1)]
    else:
        labels = [class_names[i] for i in index]
    return labels, best, index


def predict_files(model, path, class_names=None, decode=None, batch_size=32, verbose=0):
    """Labels the image files under `path` (corrupt files are skipped and counted).

    The files are read and decoded once, in a `tf.data` pipeline that overlaps with the
    model (`named_image_files_dataset`, batched and prefetched): each batch carries its
    file names, so the files that fail to decode drop out without a separate checking
    pass, and each prediction stays with its file.

    Args:
        model: a classifier from raw `[0, 255]` images to class probabilities.
        path: an image file or a folder of them (searched recursively).
        class_names: the names of the model's classes (a saved model's `classes.json`).
        decode: instead of `class_names`, an ImageNet `decode_predictions`.
        batch_size: images per batch. Defaults to `32`.
        verbose: show a progress bar when truthy. Defaults to `0`.

    Returns:
        `(rows, skipped)`: `(file, label, probability)` tuples, in sorted file order, and
        the number of skipped files (wrong extension or not decodable).
    """
    path = os.fspath(path)
    files, skipped = image_candidates(path)
    names, probabilities = [], []
    if files:
        dataset = named_image_files_dataset(files, model.input_shape[1])
        dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
        progress = keras.utils.Progbar(len(files), unit_name="file") if verbose else None
        # NumPy batches: JAX's and torch's predict_on_batch take no TensorFlow tensors.
        for batch_names, images in dataset.as_numpy_iterator():
            probabilities.append(model.predict_on_batch(images))
            names.extend(name.decode() for name in batch_names)
            if progress is not None:
                progress.update(len(names))
        if progress is not None:
            progress.update(len(files), finalize=True)
    skipped += len(files) - len(names)
    if not names:
        raise ValueError(
            "Argument `images` must hold at least one readable image "
            f"({skipped} files skipped). Received: images={path!r}"
        )
    labels, best, _ = _labels(np.concatenate(probabilities), class_names, decode)
    return list(zip(names, labels, best.tolist(), strict=True)), skipped


def write_predictions_csv(path, rows):
    """Writes `(file, label, probability)` rows as a CSV with a header, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "label", "probability"])
    writer.writerows((f, label, f"{p:.6f}") for f, label, p in rows)
    io_utils.write_text(path, buffer.getvalue())

"""Datasets: the dataset grammar, the bundled datasets, and `tf.data` image pipelines.

- `kfound.data.spec`: `parse_dataset` and `DatasetSpec`, the grammar every CLI and search
  space shares (`digits`, `embedded`, `tfds:NAME`, `folder:PATH`).
- `kfound.data.bundled`: scikit-learn's digits and the offline transfer task, as NumPy.
- `kfound.data.image_data`, `kfound.data.image_files`: image-classification pipelines
  over TFDS, image folders or the embedded task, in `tf.data`.
- `kfound.data.training_pipeline`: shuffling, class balancing and augmentation of training
  batches.
- `kfound.data.augmentation`: the training pipelines' augmentation layers.

The grammar and the bundled datasets need no TensorFlow; the pipelines do, and they import
it only when first used, so that `import kfound.data` stays light.
"""

import importlib

from kfound.data.augmentation import augmentation_layers as augmentation_layers
from kfound.data.bundled import digits_to_rgb as digits_to_rgb
from kfound.data.bundled import embedded_digits as embedded_digits
from kfound.data.bundled import load_digits as load_digits
from kfound.data.spec import DatasetSpec as DatasetSpec
from kfound.data.spec import parse_dataset as parse_dataset

_PIPELINES = {
    "ImageData": "image_data",
    "load_image_data": "image_data",
    "rebatch": "image_data",
    "make_training_pipeline": "training_pipeline",
    "balance_classes": "training_pipeline",
    "image_candidates": "image_files",
    "named_image_files_dataset": "image_files",
    "labelled_image_files_dataset": "image_files",
}


def __getattr__(name):
    if name not in _PIPELINES:
        raise AttributeError(f"module 'kfound.data' has no attribute {name!r}")
    try:
        module = importlib.import_module(f"kfound.data.{_PIPELINES[name]}")
    except ModuleNotFoundError as error:
        if error.name != "tensorflow":
            raise
        raise ModuleNotFoundError(
            f"kfound.data.{name} builds tf.data pipelines and needs TensorFlow, which is not "
            "installed: pip install tensorflow",
            name="tensorflow",
        ) from error
    return getattr(module, name)


def __dir__():
    return sorted([*globals(), *_PIPELINES])

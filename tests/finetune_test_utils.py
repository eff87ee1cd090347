"""Helpers for the fine-tuning tests: small data, a small classifier, files on disk."""

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_sample_images

from kfound import backbones, data, finetune


def write_image_folder(root, per_class=6, size=40, corrupt=True):
    """Writes crops of scikit-learn's two sample photos, one class per photo.

    Class `china` gets JPEG crops and class `flower` PNG crops of `size` pixels. With
    `corrupt`, one `.jpg` of garbage bytes and one text file are added (2 skipped files).

    Returns:
        `root`, a `pathlib.Path`.
    """
    photos = load_sample_images()
    rng = np.random.default_rng(0)
    for name, image in zip(("china", "flower"), photos.images, strict=True):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            top = rng.integers(0, image.shape[0] - size)
            left = rng.integers(0, image.shape[1] - size)
            crop = image[top:top + size, left:left + size]
            if name == "china":
                data, ext = tf.io.encode_jpeg(crop), "jpg"
            else:
                data, ext = tf.io.encode_png(crop), "png"
            (folder / f"{i:02d}.{ext}").write_bytes(data.numpy())
    if corrupt:
        (root / "china" / "broken.jpg").write_bytes(b"this is not a jpeg")
        (root / "flower" / "notes.txt").write_text("not an image")
    return root


SHARED_MOBILENET = "mobilenet_2_5_224_tf_no_top.h5"


def embedded_data(image_size=16, **kwargs):
    """The embedded task with 4 labelled images per class, in batches of 16."""
    return data.load_image_data("embedded", image_size, batch_size=16, train_per_class=4,
                                **kwargs)


def small_classifier(data_, frozen_bn=True):
    """A `Classifier` over a randomly initialised `SmallConvNet`."""
    backbone = backbones.build_backbone("SmallConvNet", image_size=data_.image_size)
    return finetune.Classifier(backbone, "SmallConvNet", data_.num_classes, frozen_bn=frozen_bn)


def with_top_weights_file(tmp_path):
    """A with-top MobileNet (alpha 0.25, 32x32) and the path of its saved weights."""
    network = keras.applications.MobileNet(include_top=True, weights=None, alpha=0.25,
                                           input_shape=(32, 32, 3))
    path = str(tmp_path / "mobilenet_top.weights.h5")
    network.save_weights(path)
    return network, path

"""Helpers for the fine-tuning tests: a small folder of real photos on disk."""

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_sample_images


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

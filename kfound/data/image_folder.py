"""Folder datasets: their files and labels, listed without reading a file.

The labels come from the sub-folders (the `image_dataset_from_directory` convention), so
`kfound.data.load_image_data` decodes nothing up front; `ImageData.check_files` learns
which files are corrupt from the one pass that decodes them.
"""

import dataclasses
import hashlib
import os

import numpy as np

from kfound.data.image_files import image_candidates


@dataclasses.dataclass
class FolderListing:
    """The files of a folder dataset, listed without reading them, and their labels.

    Attributes:
        path: the dataset's folder.
        train_files, val_files: the image files of each split, in order.
        train_labels, val_labels: their int32 class indices, from their sub-folders.
        others: the files left out for their extension.
        min_val_per_class: see `load_image_data`.
        cached: `{"train": ds, "val": ds}`, the `(file, image, label)` datasets the
            training and validation pipelines read, cached in memory when they fit.
        filled: the splits whose whole `cached` dataset has been read once (by
            `ImageData.check_files`), so that a cache there is full.
    """

    path: str
    train_files: list
    train_labels: np.ndarray
    val_files: list
    val_labels: np.ndarray
    others: int
    min_val_per_class: "int | None" = None
    cached: dict = dataclasses.field(default_factory=dict)
    filled: set = dataclasses.field(default_factory=set)

    def split(self, split):
        """`(files, labels)` of `"train"` or `"val"`."""
        if split == "train":
            return self.train_files, self.train_labels
        return self.val_files, self.val_labels


def list_folder(path, validation_fraction, seed, min_val_per_class=None):
    """Lists a folder dataset's files and labels, reading none of them.

    Args:
        path: the dataset's folder: one sub-folder per class, or `train` and `val`
            sub-folders each laid out that way.
        validation_fraction: the share held out for validation without a `val` folder.
        seed: the seed of that split.
        min_val_per_class: kept in the listing for `ImageData.check_files`.

    Returns:
        `(listing, class_names, fingerprint)`: a `FolderListing`, the sorted class names,
        and what identifies the files (their names, sizes and modification times).
    """
    if not os.path.isdir(path):
        raise ValueError(
            f"Argument `dataset` must name an existing folder. Received: dataset='folder:{path}'"
        )
    train_dir, val_dir = os.path.join(path, "train"), os.path.join(path, "val")
    if os.path.isdir(train_dir) and os.path.isdir(val_dir):
        class_names = _class_folders(train_dir, path)
        train_files, train_labels, others_train = _labelled_files(train_dir, class_names)
        val_files, val_labels, others_val = _labelled_files(val_dir, class_names)
        others = others_train + others_val
        check_classes(class_names, np.concatenate([train_labels, val_labels]), others, path)
    else:
        class_names = _class_folders(path, path)
        files, labels, others = _labelled_files(path, class_names)
        check_classes(class_names, labels, others, path)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(files))
        n_val = max(1, round(validation_fraction * len(files)))
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        train_files, train_labels = [files[i] for i in train_idx], labels[train_idx]
        val_files, val_labels = [files[i] for i in val_idx], labels[val_idx]
    if not len(train_files) or not len(val_files):
        raise ValueError(
            "Argument `dataset` must hold images for training and validation; found "
            f"{len(train_files)} and {len(val_files)} ({others} files skipped). "
            f"Received: dataset='folder:{path}'"
        )
    listing = hashlib.sha256()
    for files in (train_files, val_files):
        for name in files:
            status = os.stat(name)
            listing.update(f"{name}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
        listing.update(b"--split--\n")
    fingerprint = {"validation_fraction": float(validation_fraction), "seed": int(seed),
                   "files": listing.hexdigest()}
    folder = FolderListing(path, train_files, train_labels, val_files, val_labels, others,
                           min_val_per_class)
    return folder, class_names, fingerprint


def check_classes(class_names, labels, skipped, path):
    """Refuses a folder dataset with a class that has no image, naming the classes."""
    empty = [name for i, name in enumerate(class_names) if not np.any(labels == i)]
    if empty:
        raise ValueError(
            "Argument `dataset` must hold readable images in every class; found none in "
            f"{', '.join(map(repr, empty))} ({skipped} files skipped). "
            f"Received: dataset='folder:{path}'"
        )


def _class_folders(folder, path):
    names = sorted(
        d for d in os.listdir(folder)
        if os.path.isdir(os.path.join(folder, d)) and not d.startswith(".")
    )
    if not names:
        raise ValueError(
            "Argument `dataset` must be a folder with one sub-folder of images per class; "
            f"{folder!r} has no sub-folders. Received: dataset='folder:{path}'"
        )
    return names


def _labelled_files(folder, class_names):
    files, labels, skipped = [], [], 0
    for index, name in enumerate(class_names):
        class_dir = os.path.join(folder, name)
        if not os.path.isdir(class_dir):
            continue
        named, others = image_candidates(class_dir)
        files.extend(named)
        labels.extend([index] * len(named))
        skipped += others
    return files, np.asarray(labels, dtype="int32"), skipped

"""Image-classification input pipelines over TFDS, a folder of images, or embedded digits.

One `tf.data` pipeline serves every source: decode, resize to a square `image_size`, cache
in memory when the decoded images fit, shuffle, optionally resample classes evenly
("label shuffle", Shen et al., 2016) and augment, batch, prefetch with `AUTOTUNE`.

Images leave the pipeline as float32 RGB in `[0, 255]`, shape `(image_size, image_size, 3)`;
each backbone's own `preprocess_input` runs inside the model, so a saved model takes raw
images. Labels are int32 class indices into `ImageData.class_names`.

Dataset specifications (`load_image_data(spec, ...)`):

- `"tfds:NAME"`: any TFDS image-classification dataset (one image feature and one
  `ClassLabel`, i.e. `supervised_keys`). Its `validation` split is used when it has one;
  otherwise the validation set is carved from `train` with TFDS split syntax
  (`train[:80%]` / `train[80%:]`).
- `"folder:PATH"`: one sub-folder per class (the `image_dataset_from_directory`
  convention), or `PATH/train` and `PATH/val` each laid out that way. Files without an
  image extension are skipped when listed; the others are decoded once, where the pipeline
  first needs them, and a corrupt one is dropped there (`ImageData.check_files` records it
  by name in `ImageData.corrupt_files`). Labels come from the file list.
- `"embedded"`: the target task of the offline demo, the parity ("even"/"odd") of half
  of scikit-learn's handwritten digits, with a small labelled training set (see
  `embedded_digits`).
"""

import dataclasses
import warnings

import keras
import numpy as np
import tensorflow as tf

from kfound import checks
from kfound.data.bundled import digits_to_rgb, embedded_digits
from kfound.data.image_files import AUTOTUNE, labelled_image_files_dataset
from kfound.data.image_folder import FolderListing, check_classes, list_folder
from kfound.data.spec import parse_dataset
from kfound.data.training_pipeline import make_training_pipeline

KINDS = ("embedded", "tfds:NAME", "folder:PATH")


@dataclasses.dataclass
class ImageData:
    """A train and a validation pipeline with what a report needs to know about them.

    Attributes:
        train: batched `tf.data.Dataset` of `(images, labels)`; shuffled, and resampled
            and augmented when asked.
        val: batched `tf.data.Dataset` of `(images, labels)`, in a fixed order.
        class_names: the class names, indexed by label.
        train_examples: the number of training images.
        val_examples: the number of validation images.
        skipped_files: files left out of a folder dataset (non-image ones, and corrupt ones
            once `files_checked`), else 0.
        image_size: the side of the square images.
        spec: the dataset specification it was loaded from.
        train_unshuffled: the unbatched training `(image, label)` pairs in a fixed order,
            before shuffling, resampling and augmentation (what feature caching reads).
        batch_size: examples per batch.
        balance: whether the training pipeline resamples classes evenly.
        augmented: whether the training pipeline augments images.
        seed: the seed of shuffling and resampling.
        fingerprint: what identifies the images and labels, for caches of what is computed
            from them (`kfound.features`): the dataset, its split, its seed, and for a
            folder a hash of its file list with sizes and modification times; for TFDS the
            dataset's version.
        corrupt_files: the image files of a folder dataset that could not be decoded, by
            name; complete once `files_checked`.
        files_checked: whether every image file has been decoded once, so that the
            counts and `corrupt_files` are exact. Always `True` but for a folder dataset
            before its first full pass (see `check_files`).
        folder: for a folder dataset, its `FolderListing`; else `None`.
        augment: the augmentation layer of the training pipeline, or `None`.
        shuffle_buffer: the training pipeline's shuffle buffer size.
        val_batch_size: examples per validation batch.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    class_names: list
    train_examples: int
    val_examples: int
    skipped_files: int
    image_size: int
    spec: str
    train_unshuffled: tf.data.Dataset
    batch_size: int
    balance: bool
    augmented: bool
    seed: int
    fingerprint: dict
    corrupt_files: list = dataclasses.field(default_factory=list)
    files_checked: bool = True
    folder: "FolderListing | None" = None
    augment: object = None
    shuffle_buffer: "int | None" = None
    val_batch_size: int = 1

    @property
    def num_classes(self):
        return len(self.class_names)

    def named_split(self, split):
        """A folder dataset's `(file, image, label)` pairs of `split`, decoded as they go.

        Not cached: a single pass (the backbone features, say) decodes each file once and
        keeps nothing, and its file names tell `check_files` which files survived.

        Args:
            split: `"train"` or `"val"`.

        Returns:
            An unbatched `tf.data.Dataset`, in the listing's order; `None` for a dataset
            that is not a folder.
        """
        if self.folder is None:
            return None
        files, labels = self.folder.split(split)
        return labelled_image_files_dataset(files, labels, self.image_size)

    def check_files(self, readable=None, verbose=0):
        """Makes the counts exact: drops the corrupt files of a folder dataset, by name.

        Nothing is decoded up front when the data is loaded. The first full pass over the
        images decodes each file once, and either that pass names the files it decoded
        (`readable`; the backbone features do) or this method makes that pass itself,
        through the in-memory cache, which it fills when the images fit in it. Then:
        `corrupt_files` names the files that could not be decoded, `train_examples`,
        `val_examples` and `skipped_files` count what is left, and `train` is rebuilt to
        the exact count. A class with no readable image is an error, and one with fewer
        validation images than the `min_val_per_class` given to `load_image_data` a
        warning. Does nothing once `files_checked`.

        Args:
            readable: `(train_files, val_files)`, the files a full pass decoded; `None` to
                make the pass here. Defaults to `None`.
            verbose: show a progress bar over the files when truthy. Defaults to `0`.

        Returns:
            `self`, checked.
        """
        if self.files_checked:
            return self
        if readable is None:
            readable = [self._decoded_names(split, verbose) for split in ("train", "val")]
        listing = self.folder
        train_files, val_files = (set(map(str, names)) for names in readable)
        corrupt = [f for f in listing.train_files if f not in train_files]
        corrupt += [f for f in listing.val_files if f not in val_files]
        labels = np.concatenate([
            [y for f, y in zip(listing.train_files, listing.train_labels, strict=True)
             if f in train_files],
            [y for f, y in zip(listing.val_files, listing.val_labels, strict=True)
             if f in val_files],
        ]).astype("int32")
        skipped = listing.others + len(corrupt)
        check_classes(self.class_names, labels, skipped, listing.path)
        n_train = len(labels) - sum(f in val_files for f in listing.val_files)
        val_labels = labels[n_train:]
        if not n_train or not len(val_labels):
            raise ValueError(
                "Argument `dataset` must hold readable images for training and validation; "
                f"found {n_train} and {len(val_labels)} ({skipped} files skipped). "
                f"Received: dataset='folder:{listing.path}'"
            )
        minimum = listing.min_val_per_class
        few = {name: int(np.sum(val_labels == i)) for i, name in enumerate(self.class_names)}
        few = {name: n for name, n in few.items() if minimum is not None and n < minimum}
        if few:
            warnings.warn(
                f"dataset 'folder:{listing.path}': classes with fewer than {minimum} "
                f"validation images (min_val_per_class), whose accuracy says little: {few}",
                stacklevel=2)
        self.corrupt_files = corrupt
        self.skipped_files = skipped
        self.train_examples, self.val_examples = int(n_train), int(len(val_labels))
        self.files_checked = True
        self._state_exact_lengths()
        return self

    def trim_to_multiple(self, multiple):
        """Drops each split's last examples down to a multiple of `multiple`.

        `keras.distribution.DataParallel` splits every batch across its devices, the last,
        partial batch of each pass included; with batch sizes divisible by the device
        count, splits whose lengths are too make every batch split evenly. Above 1, the
        files are checked first (`check_files`), so the counts are exact. A trimmed dataset
        gets its own `fingerprint`, so that no cache mixes it up with the whole one.

        Args:
            multiple: the device count; 1 changes nothing.

        Returns:
            `(train, val)`: how many examples each split dropped (each below `multiple`).
        """
        checks.positive_int("multiple", multiple)
        if multiple == 1:
            return 0, 0
        self.check_files()
        train = self.train_examples - self.train_examples % multiple
        val = self.val_examples - self.val_examples % multiple
        dropped = (self.train_examples - train, self.val_examples - val)
        if not any(dropped):
            return dropped
        if not train or not val:
            raise ValueError(
                f"Argument `multiple` must leave examples to train and validate on; "
                f"{self.train_examples} training and {self.val_examples} validation "
                f"examples hold {train} and {val}. Received: multiple={multiple}"
            )
        self.train_unshuffled = self.train_unshuffled.take(train)
        self.val = self.val.unbatch().take(val).batch(self.val_batch_size).prefetch(AUTOTUNE)
        self.train_examples, self.val_examples = train, val
        self.fingerprint = {**self.fingerprint, "trimmed_to_multiple_of": int(multiple)}
        self._state_exact_lengths()
        return dropped

    def _state_exact_lengths(self):
        """Tells `train_unshuffled` and `val` their exact lengths, and rebuilds `train`.

        A pipeline that drops corrupt files, or is cut short, cannot know its length:
        Keras's JAX and torch trainers otherwise find an epoch's end by running out of
        data, and warn that they did.
        """
        exact = tf.data.experimental.assert_cardinality
        self.train_unshuffled = self.train_unshuffled.apply(exact(self.train_examples))
        self.val = self.val.apply(exact(-(-self.val_examples // self.val_batch_size)))
        self.train = make_training_pipeline(
            self.train_unshuffled, self.num_classes, self.train_examples, self.batch_size,
            balance=self.balance, augment=self.augment, seed=self.seed,
            shuffle_buffer=self.shuffle_buffer,
        )

    def _decoded_names(self, split, verbose):
        """The names of `split`'s decodable files, from one pass through its cache."""
        dataset = self.folder.cached[split]
        total = len(self.folder.split(split)[0])
        progress = keras.utils.Progbar(total, unit_name="image") if verbose else None
        names = []
        for batch in dataset.map(lambda f, x, y: f).batch(256).as_numpy_iterator():
            names.extend(name.decode() for name in batch)
            if progress is not None:
                progress.update(len(names))
        if progress is not None and len(names) != total:
            progress.update(len(names), finalize=True)
        self.folder.filled.add(split)
        return names


def load_image_data(
    spec,
    image_size,
    batch_size=32,
    val_batch_size=None,
    validation_fraction=0.2,
    balance=False,
    augment=None,
    cache_bytes=2**30,
    shuffle_buffer=1024,
    seed=0,
    data_dir=None,
    train_per_class=10,
    min_val_per_class=None,
):
    """Loads an image-classification dataset as batched, prefetched `tf.data` pipelines.

    Args:
        spec: `"embedded"`, `"tfds:NAME"` or `"folder:PATH"` (see the module docstring).
        image_size: the side, in pixels, that images are resized to.
        batch_size: examples per training batch. Defaults to `32`.
        val_batch_size: examples per validation batch. Defaults to `4 * batch_size`.
        validation_fraction: the share of `train` held out when the source has no
            validation split of its own. Defaults to `0.2`.
        balance: if `True`, resample the training set so that each class is equally
            likely (`tf.data.Dataset.sample_from_datasets` over one repeated dataset per
            class); an epoch keeps its length. JAX's and torch's `fit` read a dataset
            twice (a first batch to build the model, then from the start), and a first
            read left prefetching ahead shifts the resampling of the second, so there
            train through `kfound.resume.EpochPipeline.fit_data` (as `kfound.finetune`
            does) where batch order must repeat exactly. Defaults to `False`.
        augment: an optional Keras layer (for example `augmentation_layers()`) applied to
            training batches in the pipeline. Defaults to `None`.
        cache_bytes: decoded images are cached in memory when they take at most this many
            bytes; larger datasets are decoded every epoch. Defaults to 1 GiB.
        shuffle_buffer: the most images the shuffle buffer holds. Defaults to `1024`.
        seed: the seed of shuffling, resampling and the embedded split. Defaults to `0`.
        data_dir: the TFDS data folder. Defaults to TFDS's own default.
        train_per_class: labelled training images per class of the embedded task.
            Defaults to `10`.
        min_val_per_class: for a folder dataset, warn when a class has fewer validation
            images than this (its accuracy would rest on a handful of images); `None`
            checks nothing. A class with no readable image is an error either way.
            Defaults to `None`.

    Returns:
        An `ImageData`.

    Example:

    >>> data = load_image_data("embedded", image_size=16)
    >>> data.class_names, data.train_examples
    (['even', 'odd'], 20)
    """
    checks.positive_int("image_size", image_size)
    checks.positive_int("batch_size", batch_size)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            "Argument `validation_fraction` must be in (0, 1). "
            f"Received: validation_fraction={validation_fraction}"
        )
    spec = parse_dataset(spec, KINDS)
    if spec.kind == "embedded":
        (x, y), (x_val, y_val), class_names = embedded_digits(
            "target", train_per_class=train_per_class, seed=seed
        )
        train = _from_arrays(x, y, image_size)
        val = _from_arrays(x_val, y_val, image_size)
        counts, skipped = (len(x), len(x_val)), 0
        fingerprint = {"seed": int(seed), "train_per_class": int(train_per_class)}
    elif spec.kind == "tfds:NAME":
        train, val, class_names, counts, fingerprint = _from_tfds(
            spec.target, image_size, validation_fraction, data_dir
        )
        skipped = 0
    else:
        folder, class_names, fingerprint = list_folder(
            spec.target, validation_fraction, seed, min_val_per_class)
        counts, skipped = (len(folder.train_files), len(folder.val_files)), folder.others
    fingerprint = {"dataset": str(spec), **fingerprint}
    if len(class_names) < 2:
        raise ValueError(
            "Argument `dataset` must have at least two classes to classify; found "
            f"{len(class_names)} ({class_names}). Received: dataset={str(spec)!r}"
        )
    fits = lambda n: n * image_size * image_size * 3 * 4 <= cache_bytes  # noqa: E731
    if spec.kind == "folder:PATH":
        # The file names travel through the cache, so that a pass over it (check_files)
        # learns which files survived while it fills it.
        for split, count in zip(("train", "val"), counts, strict=True):
            named = labelled_image_files_dataset(*folder.split(split), image_size)
            folder.cached[split] = named.cache() if fits(count) else named
        drop_name = lambda f, x, y: (x, y)  # noqa: E731
        train, val = (folder.cached[split].map(drop_name) for split in ("train", "val"))
    else:
        folder = None
        train = train.cache() if fits(counts[0]) else train
        val = val.cache() if fits(counts[1]) else val
    pipeline = make_training_pipeline(
        train, len(class_names), counts[0], batch_size, balance=balance, augment=augment,
        seed=seed, shuffle_buffer=shuffle_buffer,
    )
    # Evaluation keeps no activations for backprop, so it affords bigger batches.
    val_batch_size = int(val_batch_size or 4 * batch_size)
    val = val.batch(val_batch_size).prefetch(AUTOTUNE)
    return ImageData(
        train=pipeline,
        train_unshuffled=train,
        batch_size=int(batch_size),
        balance=bool(balance),
        augmented=augment is not None,
        seed=int(seed),
        val=val,
        class_names=list(class_names),
        train_examples=int(counts[0]),
        val_examples=int(counts[1]),
        skipped_files=int(skipped),
        image_size=int(image_size),
        spec=str(spec),
        fingerprint=fingerprint,
        files_checked=folder is None,
        folder=folder,
        augment=augment,
        shuffle_buffer=shuffle_buffer,
        val_batch_size=val_batch_size,
    )


def rebatch(data, batch_size, shuffle_buffer=1024):
    """The same data with another training batch size (a tuned one, say).

    The training pipeline is rebuilt from `data.train_unshuffled` the way
    `load_image_data` builds it (shuffle, class balancing if `data.balance`, batch,
    prefetch), so the decoded images and their in-memory cache are shared, not loaded
    again. The validation pipeline is kept: its batch size changes no metric. Nothing
    is decoded: a folder whose files are not checked yet stays so, and the first full
    pass over the result (`check_files`, or the backbone features) makes its counts
    exact and rebuilds its `train`, as on loaded data.

    Args:
        data: an `ImageData`.
        batch_size: examples per training batch.
        shuffle_buffer: the most images the shuffle buffer holds. Defaults to `1024`, as
            in `load_image_data`.

    Returns:
        An `ImageData` with `batch_size` and a new `train` pipeline.

    Example:

    >>> data = rebatch(load_image_data("embedded", image_size=16), batch_size=4)
    >>> next(iter(data.train))[0].shape
    TensorShape([4, 16, 16, 3])
    """
    checks.positive_int("batch_size", batch_size)
    train = make_training_pipeline(
        data.train_unshuffled, data.num_classes, data.train_examples, batch_size,
        balance=data.balance, augment=data.augment, seed=data.seed,
        shuffle_buffer=shuffle_buffer,
    )
    return dataclasses.replace(data, train=train, batch_size=int(batch_size),
                               shuffle_buffer=shuffle_buffer)


def _from_arrays(x, y, image_size):
    images = digits_to_rgb(x, image_size)
    return tf.data.Dataset.from_tensor_slices((images, tf.constant(y, tf.int32)))


def _from_tfds(name, image_size, validation_fraction, data_dir):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:
        raise ValueError(
            f"Argument `dataset` names no TFDS dataset ({str(error).splitlines()[0]}). "
            f"Received: dataset='tfds:{name}'"
        ) from error
    info = builder.info
    keys = info.supervised_keys
    label = info.features[keys[1]] if keys else None
    if not keys or not hasattr(label, "names"):
        raise ValueError(
            "Argument `dataset` must be a TFDS image-classification dataset (an image and a "
            f"ClassLabel as supervised keys). Received: dataset='tfds:{name}'"
        )
    splits = info.splits
    if "validation" in splits:
        train_split, val_split = "train", "validation"
    else:
        cut = round(100 * (1.0 - validation_fraction))
        train_split, val_split = f"train[:{cut}%]", f"train[{cut}%:]"
    loaded = []
    for split in (train_split, val_split):
        try:
            ds = tfds.load(name, split=split, as_supervised=True, data_dir=data_dir)
        except OSError as error:  # requests' ConnectionError, among others
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
            raise ValueError(
                f"Argument `dataset` names the TFDS dataset {name!r}, which is not prepared "
                f"in {builder.data_dir!r} and could not be downloaded ({reason}). Preparing "
                "it needs the internet once; offline, point TFDS_DATA_DIR (or `data_dir`) "
                "at a folder that holds a prepared copy, or use folder:PATH. "
                f"Received: dataset='tfds:{name}'"
            ) from None
        loaded.append(
            ds.map(
                lambda x, y: (
                    tf.image.resize(tf.image.grayscale_to_rgb(x) if x.shape[-1] == 1 else x,
                                    (image_size, image_size)),
                    tf.cast(y, tf.int32),
                ),
                num_parallel_calls=AUTOTUNE,
            )
        )
    counts = tuple(_count(ds) for ds in loaded)
    fingerprint = {"version": str(info.version), "splits": [train_split, val_split]}
    return loaded[0], loaded[1], list(label.names), counts, fingerprint


def _count(dataset):
    n = int(dataset.cardinality())
    if n >= 0:
        return n
    return int(dataset.reduce(0, lambda count, _: count + 1))

"""Image-classification input pipelines over TFDS, a folder of images, or embedded digits.

One `tf.data` pipeline serves every source: decode, resize to a square `image_size`, cache
in memory when the decoded images fit, shuffle, optionally resample classes evenly
("label shuffle", seed §3.13) and augment, batch, prefetch with `AUTOTUNE`.

Images leave the pipeline as float32 RGB in `[0, 255]`, shape `(image_size, image_size, 3)`;
each backbone's own `preprocess_input` runs inside the model, so a saved model takes raw
images. Labels are int32 class indices into `ImageData.class_names`.

Dataset specifications (`load_image_data(spec, ...)`):

- `"tfds:NAME"`: any TFDS image-classification dataset (one image feature and one
  `ClassLabel`, i.e. `supervised_keys`). Its `validation` split is used when it has one;
  otherwise the validation set is carved from `train` with TFDS split syntax
  (`train[:80%]` / `train[80%:]`).
- `"folder:PATH"`: one sub-folder per class (the `image_dataset_from_directory`
  convention), or `PATH/train` and `PATH/val` each laid out that way. Corrupt and
  non-image files are skipped and counted in `ImageData.skipped_files`.
- `"embedded"`: the target task of the offline demo, the parity ("even"/"odd") of half
  of scikit-learn's handwritten digits, with a small labelled training set (see
  `embedded_digits`).
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SCHEMES = ("embedded", "tfds:NAME", "folder:PATH")


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
        skipped_files: corrupt or non-image files left out (folder datasets), else 0.
        image_size: the side of the square images.
        spec: the dataset specification it was loaded from.
        train_unshuffled: the unbatched training `(image, label)` pairs in a fixed order,
            before shuffling, resampling and augmentation (what feature caching reads).
        batch_size: examples per batch.
        balance: whether the training pipeline resamples classes evenly.
        augmented: whether the training pipeline augments images.
        seed: the seed of shuffling and resampling.
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

    @property
    def num_classes(self):
        return len(self.class_names)


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
            class); an epoch keeps its length. Defaults to `False`.
        augment: an optional Keras layer (for example `augmentation_layers()`) applied to
            training batches in the pipeline. Defaults to `None`.
        cache_bytes: decoded images are cached in memory when they take at most this many
            bytes; larger datasets are decoded every epoch. Defaults to 1 GiB.
        shuffle_buffer: the most images the shuffle buffer holds. Defaults to `1024`.
        seed: the seed of shuffling, resampling and the embedded split. Defaults to `0`.
        data_dir: the TFDS data folder. Defaults to TFDS's own default.
        train_per_class: labelled training images per class of the embedded task.
            Defaults to `10`.

    Returns:
        An `ImageData`.

    Example:

    >>> data = load_image_data("embedded", image_size=16)
    >>> data.class_names, data.train_examples
    (['even', 'odd'], 20)
    """
    _check_positive_int("image_size", image_size)
    _check_positive_int("batch_size", batch_size)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            "Argument `validation_fraction` must be in (0, 1). "
            f"Received: validation_fraction={validation_fraction}"
        )
    spec = str(spec)
    if spec == "embedded":
        (x, y), (x_val, y_val), class_names = embedded_digits(
            "target", train_per_class=train_per_class, seed=seed
        )
        train = _from_arrays(x, y, image_size)
        val = _from_arrays(x_val, y_val, image_size)
        counts, skipped = (len(x), len(x_val)), 0
    elif spec.startswith("tfds:"):
        train, val, class_names, counts = _from_tfds(
            spec[len("tfds:"):], image_size, validation_fraction, data_dir
        )
        skipped = 0
    elif spec.startswith("folder:"):
        train, val, class_names, counts, skipped = _from_folder(
            spec[len("folder:"):], image_size, validation_fraction, seed
        )
    else:
        raise ValueError(
            f"Argument `dataset` must be one of {', '.join(SCHEMES)}. Received: dataset={spec!r}"
        )
    if len(class_names) < 2:
        raise ValueError(
            "Argument `dataset` must have at least two classes to classify; found "
            f"{len(class_names)} ({class_names}). Received: dataset={spec!r}"
        )
    fits = lambda n: n * image_size * image_size * 3 * 4 <= cache_bytes  # noqa: E731
    train = train.cache() if fits(counts[0]) else train
    val = val.cache() if fits(counts[1]) else val
    pipeline = make_training_pipeline(
        train, len(class_names), counts[0], batch_size, balance=balance, augment=augment,
        seed=seed, shuffle_buffer=shuffle_buffer,
    )
    # Evaluation keeps no activations for backprop, so it affords bigger batches.
    val = val.batch(val_batch_size or 4 * batch_size).prefetch(AUTOTUNE)
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
        spec=spec,
    )


def rebatch(data, batch_size, shuffle_buffer=1024):
    """The same data with another training batch size (a tuned one, say).

    The training pipeline is rebuilt from `data.train_unshuffled` the way
    `load_image_data` builds it (shuffle, class balancing if `data.balance`, batch,
    prefetch), so the decoded images and their in-memory cache are shared, not loaded
    again. The validation pipeline is kept: its batch size changes no metric.

    Args:
        data: an `ImageData` without augmentation (its layer is not kept in `ImageData`,
            so it could not be rebuilt).
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
    _check_positive_int("batch_size", batch_size)
    if data.augmented:
        raise ValueError(
            "Argument `data` must not be augmented: `ImageData` does not keep its "
            "augmentation layer, so `rebatch` cannot rebuild the pipeline; load the data "
            f"again with the new batch size. Received: data.augmented={data.augmented}"
        )
    train = make_training_pipeline(
        data.train_unshuffled, data.num_classes, data.train_examples, batch_size,
        balance=data.balance, seed=data.seed, shuffle_buffer=shuffle_buffer,
    )
    return dataclasses.replace(data, train=train, batch_size=int(batch_size))


def make_training_pipeline(
    dataset, num_classes, num_examples, batch_size, balance=False, augment=None, seed=0,
    shuffle_buffer=None,
):
    """Shuffles, optionally class-balances and augments, batches and prefetches `(x, y)` pairs.

    Used both for images and for cached backbone features.

    Args:
        dataset: an unbatched `tf.data.Dataset` of `(x, label)`.
        num_classes: the number of classes.
        num_examples: the number of examples in `dataset` (one epoch keeps this length).
        batch_size: examples per batch.
        balance: resample so that each class is equally likely. Defaults to `False`.
        augment: an optional Keras layer applied to each batch with `training=True`.
        seed: the shuffle and resampling seed. Defaults to `0`.
        shuffle_buffer: the shuffle buffer size. Defaults to `num_examples` (a full shuffle).

    Returns:
        The batched, prefetched training `tf.data.Dataset`.
    """
    buffer = max(1, min(num_examples, shuffle_buffer or num_examples))
    dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if balance:
        dataset = balance_classes(dataset, num_classes, num_examples, seed=seed)
    dataset = dataset.batch(batch_size)
    if augment is not None:
        dataset = dataset.map(
            lambda x, y: (augment(x, training=True), y), num_parallel_calls=AUTOTUNE
        )
    return dataset.prefetch(AUTOTUNE)


def balance_classes(dataset, num_classes, num_examples, seed=0):
    """Resamples `(x, label)` pairs so that every class is equally likely ("label shuffle").

    Each class becomes its own endlessly repeated, reshuffled stream and
    `tf.data.Dataset.sample_from_datasets` draws from them uniformly, so rare classes are
    oversampled and common ones undersampled; the result is cut to `num_examples`, the
    length of one epoch. This is the class-balancing "label shuffle" of seed §3.13
    (Shen et al., 2016): every class is seen equally often.

    Args:
        dataset: an unbatched `tf.data.Dataset` of `(x, label)`.
        num_classes: the number of classes.
        num_examples: the length of one resampled epoch.
        seed: the sampling seed. Defaults to `0`.

    Returns:
        The resampled `tf.data.Dataset`.
    """
    per_class = [
        dataset.filter(lambda x, y, c=c: tf.equal(tf.cast(y, tf.int64), c)).repeat()
        for c in range(num_classes)
    ]
    uniform = [1.0 / num_classes] * num_classes
    return tf.data.Dataset.sample_from_datasets(per_class, weights=uniform, seed=seed).take(
        num_examples
    )


def augmentation_layers(
    flip="horizontal", rotation=0.1, zoom=0.1, contrast=0.1, pca_lighting=0.1, seed=None
):
    """The standard Keras preprocessing-layer augmentation plus AlexNet's PCA lighting (§3.13).

    The pipeline feeds RGB images in `[0, 255]`, the value range every layer here expects.

    Args:
        flip: `RandomFlip` mode, or `None` to skip flipping. Defaults to `"horizontal"`.
        rotation: `RandomRotation` factor (fraction of a full turn). Defaults to `0.1`.
        zoom: `RandomZoom` height factor. Defaults to `0.1`.
        contrast: `RandomContrast` factor. Defaults to `0.1`.
        pca_lighting: `kfound.layers.RandomPCALighting` standard deviation (seed §3.13
            "PCA Jittering", with the ImageNet principal components), or `0` to skip it.
            Defaults to `0.1`, AlexNet's value.
        seed: the layers' seed. Defaults to `None`.

    Returns:
        A `keras.Sequential` of the layers, for `load_image_data(augment=...)`.
    """
    import keras

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


def embedded_digits(task, train_per_class=10, seed=0):
    """The offline transfer-learning tasks, on two disjoint halves of scikit-learn's digits.

    The 1,797 digit images are split into two disjoint halves, stratified by digit
    (`seed` picks the split). The tasks differ in both their images and their labels, as
    ImageNet pretraining and a new dataset do:

    - `"source"`: classify the ten digits (class names `"0"`..`"9"`) on half A, for
      pretraining a backbone; three quarters of A train, one quarter is validation.
    - `"target"`: a new label space on half B, the digit's parity (labels 0 and 1, class
      names `"even"` and `"odd"`), with only `train_per_class` labelled training images per
      class; every other image of B is the validation set. A small labelled set is the
      regime where pretraining matters (seed §3.7.2). Parity is a function of the digit,
      so what transfers is a representation that separates digits, reused for a label
      space the backbone never saw, on images it never saw.

    Args:
        task: `"source"` or `"target"`.
        train_per_class: labelled training images per class of the target task.
            Defaults to `10`.
        seed: the seed of the splits. Defaults to `0`.

    Returns:
        `((x_train, y_train), (x_val, y_val), class_names)`, with `x` float32 in `[0, 1]`
        of shape `(n, 8, 8, 1)` and `y` int32.
    """
    from kfound.datasets import load_digits

    if task not in ("source", "target"):
        raise ValueError(f"Argument `task` must be 'source' or 'target'. Received: task={task!r}")
    if task == "target":
        _check_positive_int("train_per_class", train_per_class)
    (x_a, y_a), (x_b, y_b) = load_digits(validation_fraction=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    if task == "source":
        order = rng.permutation(len(x_a))
        cut = (3 * len(x_a)) // 4
        train_idx, val_idx = np.sort(order[:cut]), np.sort(order[cut:])
        return (
            (x_a[train_idx], y_a[train_idx]),
            (x_a[val_idx], y_a[val_idx]),
            [str(d) for d in range(10)],
        )
    parity = (y_b % 2).astype("int32")
    train_idx, val_idx = [], []
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(parity == label))
        if len(idx) <= train_per_class:
            raise ValueError(
                "Argument `train_per_class` must leave validation images in every class "
                f"(the smallest class has {len(idx)} images). "
                f"Received: train_per_class={train_per_class}"
            )
        train_idx.extend(idx[:train_per_class])
        val_idx.extend(idx[train_per_class:])
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    return (
        (x_b[train_idx], parity[train_idx]),
        (x_b[val_idx], parity[val_idx]),
        ["even", "odd"],
    )


def list_images(path):
    """Lists the image files under `path` (a file or a folder, searched recursively).

    Every candidate is decoded once to check it; `image_candidates` lists without reading.

    Args:
        path: an image file or a folder.

    Returns:
        `(files, skipped)`: the sorted readable image files, and the number of other files
        (wrong extension, or not decodable) that were left out.
    """
    named, others = image_candidates(path)
    files, corrupt = _decodable(named)
    return files, others + corrupt


def image_candidates(path):
    """Lists the files under `path` with an image extension, without reading them.

    Args:
        path: an image file or a folder (searched recursively; hidden files are ignored).

    Returns:
        `(files, others)`: the sorted files whose extension is one of `IMAGE_EXTENSIONS`,
        and the number of other files.
    """
    if os.path.isfile(path):
        candidates = [path]
    elif os.path.isdir(path):
        candidates = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(path)
            for name in names
            if not name.startswith(".")
        )
    else:
        raise ValueError(
            f"Argument `images` must be an image file or a folder. Received: images={path!r}"
        )
    named = [f for f in candidates if f.lower().endswith(IMAGE_EXTENSIONS)]
    return named, len(candidates) - len(named)


def image_files_dataset(files, image_size):
    """A `tf.data.Dataset` of decoded, resized float32 images from a list of files."""
    return tf.data.Dataset.from_tensor_slices(list(files)).map(
        lambda f: _decode(tf.io.read_file(f), image_size), num_parallel_calls=AUTOTUNE
    )


def named_image_files_dataset(files, image_size):
    """A `tf.data.Dataset` of `(file, image)` pairs that drops the files it can't decode.

    Each file is read and decoded once: `ignore_errors` drops a corrupt file where its
    decoding fails, and since each image carries its file name, the caller learns which
    files survived without a separate checking pass. Order is kept.

    Args:
        files: image file paths (for example from `image_candidates`).
        image_size: the side, in pixels, that images are resized to.

    Returns:
        An unbatched `tf.data.Dataset` of `(file, image)`: a string and a float32
        `(image_size, image_size, 3)` RGB image in `[0, 255]`.
    """
    return (
        tf.data.Dataset.from_tensor_slices(tf.constant(list(files), tf.string))
        .map(lambda f: (f, _decode(tf.io.read_file(f), image_size)),
             num_parallel_calls=AUTOTUNE)
        .ignore_errors()
    )


def _decode(contents, image_size):
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size))
    return tf.ensure_shape(image, (image_size, image_size, 3))


def _decodable(named):
    """Splits image files into the decodable ones and a count of the rest, checked up front.

    Each file is decoded once with `tf.io.decode_image` in a `tf.data` pipeline whose
    failures are dropped by `ignore_errors`, so a corrupt file is counted, never fatal.
    """
    if not named:
        return [], 0
    check = (
        tf.data.Dataset.from_tensor_slices(named)
        .map(
            lambda f: (f, tf.shape(tf.io.decode_image(tf.io.read_file(f),
                                                      expand_animations=False))),
            num_parallel_calls=AUTOTUNE,
        )
        .ignore_errors()
    )
    good = sorted(f.decode() for f, _ in check.as_numpy_iterator())
    return good, len(named) - len(good)


def _from_arrays(x, y, image_size):
    # Digits: grey [0, 1] -> RGB [0, 255], resized like any other image.
    images = tf.image.resize(tf.image.grayscale_to_rgb(tf.constant(x * 255.0)), (image_size,) * 2)
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
        ds = tfds.load(name, split=split, as_supervised=True, data_dir=data_dir)
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
    return loaded[0], loaded[1], list(label.names), counts


def _count(dataset):
    n = int(dataset.cardinality())
    if n >= 0:
        return n
    return int(dataset.reduce(0, lambda count, _: count + 1))


def _from_folder(path, image_size, validation_fraction, seed):
    if not os.path.isdir(path):
        raise ValueError(
            f"Argument `dataset` must name an existing folder. Received: dataset='folder:{path}'"
        )
    train_dir, val_dir = os.path.join(path, "train"), os.path.join(path, "val")
    if os.path.isdir(train_dir) and os.path.isdir(val_dir):
        class_names = _class_folders(train_dir, path)
        train_files, train_labels, skipped_train = _labelled_files(train_dir, class_names)
        val_files, val_labels, skipped_val = _labelled_files(val_dir, class_names)
        skipped = skipped_train + skipped_val
    else:
        class_names = _class_folders(path, path)
        files, labels, skipped = _labelled_files(path, class_names)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(files))
        n_val = max(1, round(validation_fraction * len(files)))
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        train_files, train_labels = [files[i] for i in train_idx], labels[train_idx]
        val_files, val_labels = [files[i] for i in val_idx], labels[val_idx]
    if not len(train_files) or not len(val_files):
        raise ValueError(
            "Argument `dataset` must hold readable images for training and validation; found "
            f"{len(train_files)} and {len(val_files)} ({skipped} files skipped). "
            f"Received: dataset='folder:{path}'"
        )

    def pipeline(files, labels):
        images = image_files_dataset(files, image_size)
        return tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(labels)))

    return (
        pipeline(train_files, train_labels),
        pipeline(val_files, val_labels),
        class_names,
        (len(train_files), len(val_files)),
        skipped,
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
        good, bad = list_images(class_dir)
        files.extend(good)
        labels.extend([index] * len(good))
        skipped += bad
    return files, np.asarray(labels, dtype="int32"), skipped


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"Argument `{name}` must be a positive integer. Received: {name}={value!r}"
        )

"""Image files: listing them, and decoding them in `tf.data` pipelines."""

import os

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


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


def labelled_image_files_dataset(files, labels, image_size):
    """A `tf.data.Dataset` of `(file, image, label)` that drops the files it can't decode.

    The labels come from the file list (a folder per class), so nothing is read twice:
    each file is decoded once, where the pipeline needs it, and `ignore_errors` drops a
    corrupt one there. The caller learns which files survived from the names it yields,
    without a separate checking pass. Order is kept.

    Args:
        files: image file paths.
        labels: their int32 class indices.
        image_size: the side, in pixels, that images are resized to.

    Returns:
        An unbatched `tf.data.Dataset` of `(file, image, label)`: a string, a float32
        `(image_size, image_size, 3)` RGB image in `[0, 255]` and an int32 label.
    """
    slices = (tf.constant(list(files), tf.string), tf.constant(labels, tf.int32))
    return (
        tf.data.Dataset.from_tensor_slices(slices)
        .map(lambda f, y: (f, _decode(tf.io.read_file(f), image_size), y),
             num_parallel_calls=AUTOTUNE)
        .ignore_errors()
    )


def _decode(contents, image_size):
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size))
    return tf.ensure_shape(image, (image_size, image_size, 3))

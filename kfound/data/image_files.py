"""Image files: listing them, and decoding them in `tf.data` pipelines."""

import os

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


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



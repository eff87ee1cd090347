"""Training pipelines: shuffled, optionally class-balanced and augmented batches.

Shared by the image pipelines (`kfound.data.image_data`), the cached backbone features
(`kfound.finetune`) and resumable training (`kfound.resume`).
"""

import tensorflow as tf


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
            lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def balance_classes(dataset, num_classes, num_examples, seed=0):
    """Resamples `(x, label)` pairs so that every class is equally likely ("label shuffle").

    Each class becomes its own endlessly repeated, reshuffled stream and
    `tf.data.Dataset.sample_from_datasets` draws from them uniformly, so rare classes are
    oversampled and common ones undersampled; the result is cut to `num_examples`, the
    length of one epoch. This is the class-balancing "label shuffle" of
    Shen et al. (2016): every class is seen equally often.

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
    resampled = tf.data.Dataset.sample_from_datasets(per_class, weights=uniform, seed=seed)
    # An endless stream cut to `num_examples`: exactly that long, which tf.data cannot tell
    # through `filter`.
    return resampled.take(num_examples).apply(
        tf.data.experimental.assert_cardinality(num_examples)
    )

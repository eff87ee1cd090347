import collections

import numpy as np
import tensorflow as tf

from kfound import data


def test_balance_makes_classes_equally_likely():
    labels = np.array([0] * 90 + [1] * 10, dtype="int32")
    dataset = tf.data.Dataset.from_tensor_slices((labels.astype("float32"), labels))
    counts = collections.Counter()
    for seed in range(5):
        balanced = data.balance_classes(dataset, 2, 100, seed=seed)
        counts.update(int(y) for _, y in balanced.as_numpy_iterator())
    assert sum(counts.values()) == 500
    assert abs(counts[1] / 500 - 0.5) < 0.08  # was 0.1 before resampling


def test_balanced_pipeline_keeps_the_epoch_length():
    loaded = data.load_image_data("embedded", image_size=8, batch_size=5, balance=True,
                                  train_per_class=5)
    assert sum(int(y.shape[0]) for _, y in loaded.train) == 10
    assert loaded.train.cardinality() == 2  # known, as Keras's JAX and torch trainers need

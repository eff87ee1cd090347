"""Resumable training: everything a result depends on, saved atomically at each epoch's end.

A run killed after epoch `k` and resumed must end where the uninterrupted run ends. Keras's
`BackupAndRestore` restores the weights, the optimizer and the epoch, but not the random
state, and it writes the weights file in place and the epoch into a second file, so a kill
during a write leaves a truncated or mismatched backup. Here:

- `EpochPipeline` makes each epoch's shuffling (and class resampling) a function of the
  seed and the epoch number alone, so a resumed process draws the batches the
  uninterrupted one drew. (A `tf.data` shuffle with a fixed seed instead depends on how
  often that dataset object was iterated before, in this process.)
- `TrainingCheckpoint` saves, at every epoch's end, one folder `epoch-NNNN/` holding the
  weights and optimizer state (`model.save_weights`), the state of every
  `keras.random.SeedGenerator` of the model (dropout's masks) and the history so far with
  each epoch's seconds. The folder is written under a temporary name and renamed, and its
  weights file's SHA-256 is checked on restore, so a partial or damaged write is detected,
  named, and skipped for the previous checkpoint (the last two are kept) or, with none
  left, for the start of training.

  With an augmentation layer, each epoch augments with its own copy of that layer, seeded
  from the seed and the epoch, in a sequential map (a parallel one draws in an order that
  varies from run to run), so the augmented images repeat too.
"""

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from kfound import prebuild
from kfound.data.training_pipeline import make_training_pipeline

KEEP = 2  # checkpoints kept: the latest and the last good one before it
_WEIGHTS = "model.weights.h5"
_STATE = "state.json"
_PARTIAL = ".partial"


@dataclasses.dataclass(frozen=True)
class EpochPipeline:
    """Training batches whose order depends only on the seed and the epoch.

    Each epoch shuffles (and, with `balance`, resamples) `dataset` with its own seed,
    derived from `seed` and the epoch number, through `make_training_pipeline`; `batches`
    chains epochs into one stream, to pass to `fit` with `steps_per_epoch=steps`. With
    `augment`, each epoch's batches pass through a copy of that layer rebuilt from its
    config with every seed in it (a `keras.layers.Pipeline`'s layers' too) set to that
    epoch's seed, one batch after the other, so the draws depend only on the seed and the
    epoch as well.

    Attributes:
        dataset: an unbatched `tf.data.Dataset` of `(x, label)` in a fixed order.
        num_classes: the number of classes.
        num_examples: the number of examples in `dataset` (one epoch's length).
        batch_size: examples per batch.
        balance: resample so that every class is equally likely. Defaults to `False`.
        seed: the run's seed. Defaults to `0`.
        shuffle_buffer: the shuffle buffer size; `None` shuffles fully. Defaults to `None`.
        augment: a random augmentation layer to apply to each batch with `training=True`
            (for example `kfound.data.augmentation_layers()`), or `None`. Defaults to
            `None`.
    """

    dataset: tf.data.Dataset
    num_classes: int
    num_examples: int
    batch_size: int
    balance: bool = False
    seed: int = 0
    shuffle_buffer: int | None = None
    augment: object = None

    @property
    def steps(self):
        """Batches per epoch."""
        return math.ceil(self.num_examples / self.batch_size)

    def batches(self, first_epoch, epochs):
        """The batches of epochs `first_epoch` .. `epochs - 1` (0-based), in order."""
        # One pipeline per epoch, its seed computed in Python (a tensor seed inside
        # `flat_map` breaks TensorFlow's seeding when the global seed is 0), read in turn
        # (`concatenate` would start each epoch's shuffle lazily, so that a second read of
        # the stream drew its seeds at a moment that varies).
        per_epoch = [self._epoch(epoch) for epoch in range(first_epoch, epochs)]
        steps = self.steps
        order = tf.data.Dataset.range(len(per_epoch)).flat_map(
            lambda i: tf.data.Dataset.from_tensors(i).repeat(steps))
        stream = tf.data.Dataset.choose_from_datasets(per_epoch, order)
        # tf.data's default graph rewrites serialize the pipeline, and with it a copy of
        # an in-memory `dataset` (cached features, NumPy images) for every epoch that
        # reads it: 10 epochs over 20,000 features of 256 floats held 210 MB more. The
        # stream is a shuffle, batch and map per epoch, which those rewrites barely change.
        options = tf.data.Options()
        options.experimental_optimization.apply_default_optimizations = False
        return stream.with_options(options)

    def fit_data(self, first_epoch, epochs):
        """`batches(first_epoch, epochs)` as `fit` should get it on this backend.

        JAX's and torch's `fit` read a dataset twice: a first batch to build the model,
        then from the start. Two iterators of one pipeline are not independent: its
        shuffles and resampling draw their seeds from state that the pipeline's iterators
        share, and the class-balanced streams draw again each time a class's stream
        repeats. The first iterator, left prefetching ahead by an amount that varies with
        the machine's load, shifts what the second reads. The augmentation's random state
        lives in its layers, outside the dataset, and a first read advances it too. So on
        those backends the stream is passed as one Python generator of NumPy batches,
        which `fit` reads once (Keras keeps the first batches it reads and replays them).
        """
        stream = self.batches(first_epoch, epochs)
        if keras.backend.backend() != "tensorflow":
            return (batch for batch in stream.as_numpy_iterator())  # `fit` takes generators
        return stream

    def _epoch(self, epoch):
        seed = self.seed * 1_000_003 + epoch
        batches = make_training_pipeline(
            self.dataset, self.num_classes, self.num_examples, self.batch_size,
            balance=self.balance, seed=seed, shuffle_buffer=self.shuffle_buffer,
        )
        if self.augment is None:
            return batches
        config = keras.saving.serialize_keras_object(self.augment)
        augment = keras.saving.deserialize_keras_object(_reseeded(config, seed))
        # No `num_parallel_calls`: the batches meet the layer's random generator in order.
        return batches.map(lambda x, y: (augment(x, training=True), y))


def _reseeded(config, seed):
    """A copy of a serialized layer with every `seed` in its (nested) configs set to `seed`."""
    if isinstance(config, list):
        return [_reseeded(item, seed) for item in config]
    if not isinstance(config, dict):
        return config
    copy = {key: _reseeded(value, seed) for key, value in config.items()}
    inner = copy.get("config")
    if isinstance(inner, dict) and "seed" in inner:
        inner["seed"] = seed
    return copy


def seed_generators(model):
    """Every `keras.random.SeedGenerator` that a layer of `model` (nested ones too) holds."""
    found, seen = [], set()

    def walk(layer):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator) and id(value) not in seen:
                seen.add(id(value))
                found.append(value)
        for inner in getattr(layer, "layers", ()):
            walk(inner)

    walk(model)
    return found


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves and restores the full training state at each epoch's end, atomically.

    Add it to `fit`'s callbacks (first, so a later callback that fails leaves the epoch
    saved) after calling `restore`, and start `fit` at the epoch `restore` returns. With
    `folder=None` it only records the history (with each epoch's seconds).

    Args:
        folder: the checkpoint folder, or `None` to save nothing. Its `epoch-NNNN/`
            sub-folders are this callback's; the latest `KEEP` are kept.
        log: where messages about restored or damaged checkpoints go. Defaults to `print`.

    Attributes:
        history: the finished epochs' rows: `{"epoch": k (1-based), **logs, "seconds": s}`,
            those restored from the folder included.
        restored_epochs: how many epochs `restore` found done.
    """

    def __init__(self, folder, log=print):
        super().__init__()
        self.folder = None if folder is None else os.fspath(folder)
        self.log = log
        self.history = []
        self.restored_epochs = 0
        self._epoch_start = None

    def restore(self, model, initial_epoch=0):
        """Loads the latest good checkpoint into `model` (compiled) and its seed generators.

        A damaged checkpoint is named in a message, deleted, and the one before it tried.

        Args:
            model: the compiled model that will train.
            initial_epoch: the epoch training starts at when nothing is restored.

        Returns:
            The 0-based epoch to resume at: the number of epochs done, or `initial_epoch`.
        """
        self.history, self.restored_epochs = [], 0
        damaged = False
        for path in self._checkpoints():
            try:
                state = self._load(model, path)
            except (OSError, ValueError, KeyError) as error:
                reason = " ".join(str(error).split())[:200]
                self.log(f"resume: the backup {path} is damaged ({reason}); deleting it and "
                         "using the one before")
                shutil.rmtree(path, ignore_errors=True)
                damaged = True
                continue
            self.history = state["history"]
            self.restored_epochs = state["epoch"]
            self.log(f"resume: restored epoch {state['epoch']} from {path}")
            return state["epoch"]
        if damaged:
            self.log(f"resume: no usable backup left in {self.folder}; starting this "
                     "training from its first epoch")
        return initial_epoch

    def save(self, model, epoch, history):
        """Writes checkpoint `epoch` (epochs done) with `history` (a list of rows)."""
        if self.folder is None:
            return
        final = os.path.join(self.folder, f"epoch-{epoch:04d}")
        partial = final + _PARTIAL
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        weights = os.path.join(partial, _WEIGHTS)
        model.save_weights(weights)
        state = {
            "epoch": int(epoch),
            "history": history,
            "seed_generators": [keras.ops.convert_to_numpy(g.state).tolist()
                                for g in seed_generators(model)],
            "weights_sha256": _sha256(weights),
        }
        with open(os.path.join(partial, _STATE), "w", encoding="utf-8") as f:
            json.dump(state, f)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)  # a folder rename is atomic: the checkpoint is whole
        for old in self._checkpoints()[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
               "seconds": round(time.perf_counter() - self._epoch_start, 4)}
        self.history.append(row)
        self.save(self.model, epoch + 1, self.history)

    def _checkpoints(self):
        if self.folder is None or not os.path.isdir(self.folder):
            return []
        names = [n for n in os.listdir(self.folder)
                 if n.startswith("epoch-") and not n.endswith(_PARTIAL)]
        return [os.path.join(self.folder, n) for n in sorted(names, reverse=True)]

    def _load(self, model, path):
        state_path = os.path.join(path, _STATE)
        try:
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
        except ValueError as error:
            raise ValueError(f"{state_path}: {error}") from error
        weights = os.path.join(path, _WEIGHTS)
        if _sha256(weights) != state["weights_sha256"]:
            raise ValueError(f"{weights} does not match the checksum saved with it")
        generators = seed_generators(model)
        if len(generators) != len(state["seed_generators"]):
            raise ValueError(f"it holds {len(state['seed_generators'])} random states, the "
                             f"model {len(generators)}")
        if getattr(model, "optimizer", None) is not None:  # None when never compiled
            prebuild.build_optimizer(model)  # its variables must exist for load_weights
        try:
            model.load_weights(weights)
        except Exception as error:  # h5py and Keras raise several types for a bad file
            raise OSError(f"{weights}: {error}") from error
        for generator, value in zip(generators, state["seed_generators"], strict=True):
            generator.state.assign(np.asarray(value, dtype=generator.state.dtype))
        return state


def history_dict(rows):
    """History rows (see `TrainingCheckpoint.history`) as a dict of per-epoch lists."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: [row.get(k) for row in rows] for k in keys}


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

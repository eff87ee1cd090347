"""Training on every device of this machine, on each backend, and a record of what a run used.

One call, `setup()`, decides how this process trains:

- JAX with more than one device: Keras 3's own `keras.distribution.DataParallel` over all
  of them. Models built and trained inside `scope()` then split each batch across the
  devices. (It is a scope, not `keras.distribution.set_distribution`, because
  `keras.utils.clear_session()`, which KerasTuner calls before each trial, resets the
  latter.) Batch sizes must be divisible by the device count (`check_batch_size`), and
  so must each pass's length, so that its last batch splits too (`trim_to_devices` for
  arrays, `kfound.data.ImageData.trim_to_multiple` for image pipelines; the states of
  `kfound.finetune` call them themselves).
- TensorFlow with more than one GPU: `tf.distribute.MirroredStrategy`, returned as
  `strategy` for the caller to build and train under (KerasTuner's
  `distribution_strategy`).
- torch: one device. kfound does not distribute torch training; with more than one GPU
  visible, `setup` says so once.
- Otherwise one device.

The record, `Distribution.record()`, is `{"kind": "DataParallel" | "MirroredStrategy" |
"none", "devices": N}`; runs write it beside their results (`best.json`, `metrics.json`).
"""

import contextlib
import dataclasses

import keras

KINDS = ("DataParallel", "MirroredStrategy", "none")


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How this process trains.

    Args:
        kind: one of `KINDS`.
        devices: the number of devices a batch is split across.
        strategy: the `tf.distribute.Strategy` to train under (TensorFlow), else `None`.
    """

    kind: str
    devices: int
    strategy: object = None

    def record(self):
        """`{"kind": ..., "devices": N}`, for a run's JSON files."""
        return {"kind": self.kind, "devices": self.devices}

    def scope(self):
        """The context to build and train in: the TensorFlow strategy's, or `scope()`."""
        return self.strategy.scope() if self.strategy is not None else scope()


_warned_torch = []
_data_parallel = []  # The DataParallel that `setup` chose, if any.


def setup(log=print):
    """Sets up training on every device of this machine for the current backend.

    Args:
        log: where the one-time torch note goes. Defaults to `print`.

    Returns:
        A `Distribution`.

    Example:

    >>> distribution = setup()  # doctest: +SKIP
    >>> distribution.record()  # doctest: +SKIP
    {'kind': 'DataParallel', 'devices': 2}
    """
    backend = keras.backend.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        if len(devices) > 1:
            _data_parallel[:] = [keras.distribution.DataParallel(devices=devices)]
            return Distribution("DataParallel", len(devices))
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            return Distribution("MirroredStrategy", len(gpus), tf.distribute.MirroredStrategy())
    elif backend == "torch":
        import torch

        if torch.cuda.device_count() > 1 and not _warned_torch:
            _warned_torch.append(True)
            log(f"torch: training on one of the {torch.cuda.device_count()} visible GPUs; "
                "kfound spreads training over several devices under JAX (DataParallel) and "
                "TensorFlow (MirroredStrategy) only.")
    return Distribution("none", 1)


def scope():
    """The context to build and train models in: `setup`'s DataParallel scope, if any.

    (TensorFlow's MirroredStrategy is `setup()`'s `strategy`, which the caller enters.)
    """
    return _data_parallel[0].scope() if _data_parallel else contextlib.nullcontext()


def data_parallel_devices():
    """The number of devices `setup`'s DataParallel splits a batch across (else 1)."""
    return int(_data_parallel[0].device_mesh.devices.size) if _data_parallel else 1


def check_batch_size(batch_size, argument="batch_size"):
    """Raises a clear `ValueError` unless `batch_size` splits evenly across the devices."""
    devices = data_parallel_devices()
    if batch_size % devices:
        raise ValueError(
            f"Argument `{argument}` must be divisible by the {devices} devices that "
            f"keras.distribution.DataParallel splits each batch across. "
            f"Received: {argument}={batch_size}"
        )


def trim_to_devices(*arrays):
    """The arrays cut to a length divisible by the device count, so each batch splits.

    Under DataParallel the last, partial batch of an epoch must split evenly too; with a
    batch size divisible by the devices, a length divisible by them ensures it.
    """
    devices = data_parallel_devices()
    return tuple(a[: len(a) - len(a) % devices] for a in arrays)

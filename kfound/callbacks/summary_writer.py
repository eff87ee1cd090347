"""TensorBoard output of `GradientMonitor`: TensorFlow's summary writer, checked early."""

import importlib.util
import os
import tempfile

import keras


def check_available(log_dir):
    """Raises an ImportError naming the missing package, before any import or work."""
    for package, why in (
        ("tensorflow", "TensorFlow's summary writer"),
        ("tensorboard", "TensorBoard's summary ops"),
    ):
        if importlib.util.find_spec(package) is None:
            raise ImportError(
                f"Argument `log_dir` writes TensorBoard event files with {why}, which needs "
                f"the `{package}` package (`pip install {package}`); the monitors work "
                f"without it when `log_dir=None`. Received: log_dir={os.fspath(log_dir)!r}"
            )


def check_writable(log_dir):
    """Creates `log_dir` and checks that a file can be written in it (as root too), so an
    unwritable folder fails at `on_train_begin` naming it, not deep inside `fit`."""
    path = os.fspath(log_dir)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ValueError(
            "Argument `log_dir` must be a folder GradientMonitor can create and write "
            f"TensorBoard files in, but {path!r} is not ({error.strerror or error}). "
            f"Received: log_dir={path!r}"
        ) from error


class SummaryWriter:
    """Scalars and histograms for one `fit`, written with `tf.summary`."""

    def __init__(self, log_dir):
        check_writable(log_dir)
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(os.fspath(log_dir))

    def write(self, step, scalars, histograms):
        tf = self._tf
        with self._writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
            for name, values in histograms.items():
                tf.summary.histogram(name, keras.ops.convert_to_numpy(values))
        self._writer.flush()

    def close(self):
        self._writer.close()

"""Atomic file writes, so an interrupted run never leaves a truncated file; output checks."""

import contextlib
import json
import os
import re
import secrets


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`, renamed onto `path` on success.

    The temporary file lives in the same folder, so the final `os.replace`
    is atomic on POSIX and Windows. It is created as `open()` creates a file, with
    the user's umask (not `tempfile.mkstemp`'s mode 0600), so that others can
    read a shared run folder when the umask lets them. On error the temporary file
    is removed and `path` is left as it was.

    Args:
        path: the final file path. Its folder is created if missing.

    Example:

    >>> with atomic_path("/tmp/kfound-example.txt") as tmp:
    ...     with open(tmp, "w") as f:
    ...         _ = f.write("hello")
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    # Keep the extension: some writers (Keras, matplotlib) choose the format by it.
    while True:
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(4)}.tmp{ext}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text(path, text):
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_model(model, path):
    """Saves a Keras model to a `.keras` file atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def load_model(path, argument="model", **kwargs):
    """`keras.saving.load_model`, with a clear error for a kfound class that Keras lacks.

    A model that uses a kfound class (registered as `kfound>NAME`) loads only once
    `import kfound` has registered it. Keras's own error then prints the whole model config;
    this one names the class and says what to do, in one line.

    Args:
        path: the `.keras` file.
        argument: the flag or argument that gave `path`, for the message. Defaults to
            `"model"`.
        **kwargs: passed on to `keras.saving.load_model` (for example `compile=False`).

    Returns:
        The model.

    Raises:
        ValueError: the model uses a `kfound>NAME` class that is not registered.
    """
    import keras  # here, not at the top: this module needs only the standard library

    try:
        return keras.saving.load_model(path, **kwargs)
    except TypeError as error:
        name = _unknown_kfound_class(error)
        if name is None:
            raise
        raise ValueError(
            f"Argument `{argument}` is a model that uses the class `{name}`, which is not "
            "registered: in a script of your own, `import kfound` before loading it; if kfound "
            "is imported, the model comes from another kfound version, which has that class. "
            f"Received: {argument}={os.fspath(path)!r}"
        ) from None


def _unknown_kfound_class(error):
    """The `kfound>NAME` class whose absence caused Keras's loading `error`, or `None`."""
    while error is not None:
        text = str(error)
        found = re.search(r"Could not locate class '([\w.]+)'", text)
        if found and f"'registered_name': 'kfound>{found.group(1)}'" in text:
            return f"kfound>{found.group(1)}"
        error = error.__cause__ or error.__context__
    return None


def save_figure(figure, path, **kwargs):
    """Saves a matplotlib figure atomically (format from the extension)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, **kwargs)


def _json_default(value):
    # NumPy scalars and arrays, which metrics and hyperparameters often are.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

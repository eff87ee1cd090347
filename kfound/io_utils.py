"""Atomic file writes, so an interrupted run never leaves a truncated file."""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`, renamed onto `path` on success.

    The temporary file lives in the same folder, so the final `os.replace`
    is atomic on POSIX and Windows. On error the temporary file is removed
    and `path` is left as it was.

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
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
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


def save_figure(figure, path, **kwargs):
    """Saves a matplotlib figure atomically (format from the extension)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, **kwargs)


def _json_default(value):
    # NumPy scalars and arrays, which metrics and hyperparameters often are.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

"""The dataset grammar every kfound CLI and search space shares: one parser, one spec object.

A dataset is named by a short string:

- `"digits"`: scikit-learn's bundled handwritten digits, as NumPy arrays (the `mlp` and
  `cnn` search models).
- `"embedded"`: the offline fine-tuning task on two halves of those digits
  (`kfound.data.embedded_digits`).
- `"tfds:NAME"`: a TFDS image-classification dataset.
- `"folder:PATH"`: a folder of images, one sub-folder per class.

Parsing imports nothing heavy, so a search space or a command line is checked before
TensorFlow loads.
"""

import dataclasses
import os

KINDS = ("digits", "embedded", "tfds:NAME", "folder:PATH")
_PREFIXES = {"tfds:NAME": "tfds:", "folder:PATH": "folder:"}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset name.

    Attributes:
        kind: one of `KINDS`: `"digits"`, `"embedded"`, `"tfds:NAME"` or `"folder:PATH"`.
        target: the TFDS name or the folder path; `None` for the bundled kinds.
    """

    kind: str
    target: str | None = None

    def __str__(self):
        return self.kind if self.target is None else _PREFIXES[self.kind] + self.target

    @property
    def slug(self):
        """A short file-name-safe form: `"tfds:tf_flowers"` -> `"tf_flowers"`."""
        return safe_name(self.kind if self.target is None else self.target)


def safe_name(text):
    """The last path component of `text`, with characters other than `[A-Za-z0-9._-]` as `_`."""
    text = os.path.basename(text.rstrip("/")) or text
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def parse_dataset(text, kinds=KINDS, argument="dataset"):
    """Parses a dataset name into a `DatasetSpec`.

    Args:
        text: the name: `"digits"`, `"embedded"`, `"tfds:NAME"` or `"folder:PATH"`.
        kinds: the kinds the caller accepts. Defaults to all of `KINDS`.
        argument: the argument name that error messages give. Defaults to `"dataset"`.

    Returns:
        A `DatasetSpec`. A folder's existence is not checked here.

    Raises:
        ValueError: `text` is not a string in the grammar, names an empty TFDS name or
            folder, or is of a kind not in `kinds`.

    Example:

    >>> parse_dataset("tfds:tf_flowers")
    DatasetSpec(kind='tfds:NAME', target='tf_flowers')
    """
    if isinstance(text, DatasetSpec):
        spec = text
    elif not isinstance(text, str):
        raise TypeError(
            f"Argument `{argument}` must be a string, one of {', '.join(kinds)}. "
            f"Received: {argument}={text!r}"
        )
    elif text in ("digits", "embedded"):
        spec = DatasetSpec(text)
    else:
        spec = None
        for kind, prefix in _PREFIXES.items():
            if text.startswith(prefix) and text[len(prefix):].strip():
                spec = DatasetSpec(kind, text[len(prefix):])
    if spec is None or spec.kind not in kinds:
        raise ValueError(
            f"Argument `{argument}` must be one of {', '.join(kinds)}. "
            f"Received: {argument}={text!r}"
        )
    return spec

"""Backbone features, computed once: one pass over the images, and an on-disk cache.

State two (and phase 1 of state three) trains only the head, so the frozen backbone's
pooled features are all it needs: `backbone_features` runs the backbone once over the
training and validation images, at a batch size of its own (inference keeps no
activations for backprop, so it affords far bigger batches than training), collecting the
labels in the same pass. With a cache folder, the features are stored under a key made of
everything they depend on, so a rerun with another learning rate, a resumed run, and every
head trial of a search read them back instead.

The key hashes:

- the backbone: its name (which picks its preprocessing), its architecture (each layer's
  config but its name, which holds the image size and `alpha`) and its weights (the
  arrays themselves, so a weights file, ImageNet or a pretrained `SmallConvNet` are told
  apart by content);
- the data: `ImageData.fingerprint` (the file list with sizes and modification times;
  the TFDS name, splits and version; the embedded task and its seed), and the image size;
- Keras's version and backend, which may change the numbers in the last digits.

For a folder dataset the pass reads the files themselves, decoding each once, and keeps
their names, so that the corrupt ones are known (`ImageData.check_files`) without a
checking pass of their own; an entry keeps the names too.

An entry is an `.npz` file written atomically. One that can't be read, or whose stored
key differs from its name's, is reported and computed again.
"""

import hashlib
import json
import os
import time
import zipfile

import keras
import numpy as np

from kfound import io_utils

FORMAT = 1


def backbone_features(classifier, dataset, batch_size, examples=None, verbose=0):
    """Runs the frozen backbone once over `(image, label)` pairs, collecting both.

    Every batch is `batch_size` images (the last one padded, its padding dropped), so the
    compiled predict function is traced once.

    Args:
        classifier: a `kfound.finetune.Classifier`.
        dataset: an unbatched `tf.data.Dataset` of `(image, label)`, or of
            `(file, image, label)` (`ImageData.named_split`).
        batch_size: images per batch.
        examples: the number of examples, for the progress bar. Defaults to unknown.
        verbose: show a progress bar when truthy. Defaults to `0`.

    Returns:
        `(features, labels, files)` as NumPy arrays, in the dataset's order; `files` (the
        names, as `str`) is `None` for a dataset without them.
    """
    progress = keras.utils.Progbar(examples, unit_name="image") if verbose else None
    features, labels, names, seen = [], [], [], 0
    for batch in dataset.batch(batch_size).prefetch(2).as_numpy_iterator():
        if len(batch) == 3:
            names.extend(name.decode() for name in batch[0])
        images, batch_labels = batch[-2:]
        count = len(images)
        if count < batch_size:
            padding = np.zeros((batch_size - count, *images.shape[1:]), images.dtype)
            images = np.concatenate([images, padding])
        batch = keras.ops.convert_to_numpy(classifier.features.predict_on_batch(images))
        features.append(batch[:count])
        labels.append(batch_labels)
        seen += count
        if progress is not None:
            progress.update(seen)
    if progress is not None and seen != examples:  # a bar that reached its target is closed
        progress.update(seen, finalize=True)
    files = np.asarray(names, dtype=str) if len(dataset.element_spec) == 3 else None
    if not features:
        width = classifier.features.output_shape[-1]
        return np.zeros((0, width), "float32"), np.zeros((0,), "int32"), files
    return np.concatenate(features), np.concatenate(labels), files


def weights_digest(model):
    """A SHA-256 hex digest of `model`'s weights: each one's path, shape, dtype and values."""
    digest = hashlib.sha256()
    for variable in model.weights:
        array = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(str((variable.path, array.shape, array.dtype.str)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def cache_key(classifier, data, backbone_digest=None):
    """The key of the features of `classifier`'s backbone on `data`, and what it hashes.

    Args:
        classifier: a `kfound.finetune.Classifier`.
        data: a `kfound.data.ImageData`.
        backbone_digest: `weights_digest(classifier.backbone)`, when the caller has it
            already (a search's shared, frozen backbone), so that the weights are not
            hashed again; it must be the digest of these weights. Defaults to `None`
            (hashed here).

    Returns:
        `(key, parts)`: a hex digest, and the JSON-able dict it digests.
    """
    # Layer names are left out: Keras numbers unnamed layers anew in each build.
    layers = [{k: v for k, v in layer.get_config().items() if k != "name"}
              for layer in classifier.backbone.layers]
    config = json.dumps([type(classifier.backbone).__name__, layers], sort_keys=True,
                        default=str)
    parts = {
        "format": FORMAT,
        "backbone": classifier.backbone_name,
        "architecture": hashlib.sha256(config.encode()).hexdigest(),
        "weights": backbone_digest or weights_digest(classifier.backbone),
        "data": data.fingerprint,
        "image_size": data.image_size,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32], parts


def cached_features(classifier, data, cache_dir=None, batch_size=64, verbose=0,
                    log=print, backbone_digest=None):
    """The backbone's features of `data`'s training and validation images, computed once.

    Args:
        classifier: a `kfound.finetune.Classifier` (its backbone frozen).
        data: a `kfound.data.ImageData` without augmentation.
        cache_dir: the cache folder, or `None` for no on-disk cache. Defaults to `None`.
        batch_size: images per batch of the extraction pass; it changes no result beyond
            float rounding. Defaults to `64`.
        verbose: progress bars while extracting when truthy. Defaults to `0`.
        log: where messages go. Defaults to `print`.
        backbone_digest: the backbone's `weights_digest`, if known (see `cache_key`).
            Defaults to `None`.

    Returns:
        `(arrays, report)`: the arrays `(x, y, x_val, y_val)`, and
        `{"source": "computed" | "cache", "seconds": s}` (with `"path"` when cached).
    """
    start = time.perf_counter()
    path = key = parts = None
    if cache_dir is not None:
        key, parts = cache_key(classifier, data, backbone_digest)
        path = os.path.join(os.fspath(cache_dir), f"{classifier.backbone_name}-{key}.npz")
        arrays = _load(path, parts, data.folder is not None, log)
        if arrays is not None:
            arrays, files = arrays[:4], arrays[4:]
            if data.folder is not None:
                data.check_files(readable=files)
            seconds = round(time.perf_counter() - start, 3)
            log(f"head: read the cached backbone features from {path}")
            return arrays, {"source": "cache", "seconds": seconds, "path": path}
    log(f"head: computing backbone features of {data.train_examples} training and "
        f"{data.val_examples} validation images (the backbone runs once, batches of "
        f"{batch_size})")
    train, val = _feature_sources(data)
    x, y, files = backbone_features(classifier, train, batch_size, data.train_examples,
                                    verbose)
    x_val, y_val, val_files = backbone_features(classifier, val, batch_size,
                                                data.val_examples, verbose)
    arrays = (x, y, x_val, y_val)
    if data.folder is not None:
        data.check_files(readable=(files, val_files))
    report = {"source": "computed", "seconds": None}
    if path is not None:
        _save(path, arrays, (files, val_files), parts)
        report["path"] = path
        log(f"head: cached the backbone features at {path}")
    report["seconds"] = round(time.perf_counter() - start, 3)
    return arrays, report


def _feature_sources(data):
    """The unbatched datasets the feature pass reads: with file names for a folder.

    A folder's images are decoded on the fly, not through the in-memory cache, unless
    `check_files` has filled it already: nothing reads the images after this one pass in
    the head state, so caching them would only hold memory.
    """
    if data.folder is None:
        return data.train_unshuffled, data.val.unbatch()
    return tuple(data.folder.cached[split] if split in data.folder.filled
                 else data.named_split(split) for split in ("train", "val"))


def _load(path, parts, named, log):
    """The entry's `(x, y, x_val, y_val)`, then its file names if `named`; or `None`."""
    if not os.path.exists(path):
        return None
    names = ("x", "y", "x_val", "y_val") + (("files", "val_files") if named else ())
    try:
        with np.load(path, allow_pickle=False) as entry:
            stored = json.loads(str(entry["key"]))
            arrays = tuple(entry[name] for name in names)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        log(f"head: the feature cache entry {path} is unreadable ({type(error).__name__}: "
            f"{str(error)[:200]}); computing the features again")
        return None
    expected = json.loads(json.dumps(parts, default=str))
    lengths = {len(arrays[0]), len(arrays[1])}, {len(arrays[2]), len(arrays[3])}
    if named:
        lengths[0].add(len(arrays[4]))
        lengths[1].add(len(arrays[5]))
    if stored != expected or len(lengths[0]) > 1 or len(lengths[1]) > 1:
        log(f"head: the feature cache entry {path} is stale (it was made from other "
            "inputs); computing the features again")
        return None
    return arrays


def _save(path, arrays, files, parts):
    x, y, x_val, y_val = arrays
    key = json.dumps(parts, sort_keys=True, default=str)
    named = {} if files[0] is None else {"files": files[0], "val_files": files[1]}
    with io_utils.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, x=x, y=y, x_val=x_val, y_val=y_val, key=np.asarray(key), **named)

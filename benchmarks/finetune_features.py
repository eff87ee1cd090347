"""Benchmark: backbone features computed once, at scale (head state on folders of photos).

The data is the same kind that users bring: image files. 96x96 JPEG crops of
scikit-learn's two bundled photos (one class per photo) are written into a folder, and
the head state trains MobileNet (alpha 0.25, with the team's shared ImageNet weights when
`../shared/data/weights` or `$KFOUND_SHARED_DIR` has them, else random initialisation) for
5 epochs at batch 4. Measured side by side in one process:

1. `head_first_run_vs_previous`: the head state's wall time (loading, features, training)
   with today's code and no feature cache on disk, divided by the same state computed the
   previous way (a pass that decodes every file to check it, features at the training
   batch size, then a second pass over the data for the labels, and the head trained one
   step per call), reimplemented here as it was. Goal <= 0.7.
2. `head_rerun_speedup`: a second run with only another learning rate, which reads the
   on-disk cache, against the first. Goal >= 3. Beside it, `head_rerun_speedup_bound`:
   the first run divided by the rerun's training epochs alone (Keras's `fit` of the head
   on the cached features: tracing, steps and validation), the speedup a rerun would
   reach if building the backbone and reading the cache cost nothing.
3. `search_trials_2_to_5_speedup`: a 5-trial head-only `finetune` search through
   `tuning/search.py`'s code (random search over the learning rate): trial 1's time
   divided by each of trials 2 to 5's (the smallest of the four is reported). Goal >= 5.
   Beside it, `search_trials_speedup_bound`: trial 1 divided by a freshly compiled head's
   training epochs alone on the same images and settings (tracing included), what later
   trials would reach if they traced again and nothing else cost a thing; and
   `search_trials_speedup_bound_without_tracing`: trial 1 divided by those epochs' steps
   alone (epochs 2 to 5, scaled to 5 epochs), the bound for later trials, which train on
   the first one's traced functions (`kfound.compiled_head`).
4. `head_peak_rss_mib_25000` (full runs only): the peak resident memory of
   `recipes/finetune.py --state head` on 25,000 images, in a fresh process (the recipe
   has TensorFlow allocate CPU tensors with its BFC allocator). Goal <= 1024.
   Beside it, `head_peak_rss_mib_25000_without_jax`: the same run as if JAX were not
   installed, as in kfound's own install (JAX comes with the `dev` extra only), since
   TensorFlow imports JAX whenever it finds it.
5. The fixed and per-image cost of the head and full states, fitted over two sizes, so
   that growth stays visible.

Every timing but the memory run is measured in `--rounds` rounds (default 3), each with
its own feature cache and search, and each figure is the median over the rounds (the
per-round speedups are listed too): on a shared machine one slow second can move a
single round's ratio by half. Prints one JSON line. `--quick` uses 400 and 800 images,
one round, and skips the 25,000-image run.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_sample_images

from kfound import backbones, data, finetune
from kfound.tuning import search

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = (
    pathlib.Path(os.environ.get("KFOUND_SHARED_DIR", ROOT.parent / "shared"))
    / "data" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
)
IMAGE_SIZE = 96
EPOCHS = 5
BATCH_SIZE = 4


def write_photos(folder, count, seed=0):
    """Writes `count` 96x96 JPEG crops, half of each bundled photo, one class per photo."""
    rng = np.random.default_rng(seed)
    for name, photo in zip(("china", "flower"), load_sample_images().images, strict=True):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count // 2):
            top = rng.integers(0, photo.shape[0] - IMAGE_SIZE)
            left = rng.integers(0, photo.shape[1] - IMAGE_SIZE)
            crop = photo[top:top + IMAGE_SIZE, left:left + IMAGE_SIZE]
            (folder / name / f"{i:05d}.jpg").write_bytes(tf.io.encode_jpeg(crop).numpy())
    return folder


def _classifier(num_classes, weights):
    keras.utils.set_random_seed(0)
    backbone = backbones.build_backbone("MobileNet", weights, IMAGE_SIZE, alpha=0.25)
    return finetune.Classifier(backbone, "MobileNet", num_classes)


def _load(folder):
    return data.load_image_data(f"folder:{folder}", IMAGE_SIZE, batch_size=BATCH_SIZE)


def head_state(folder, weights, learning_rate=1e-3, feature_cache=None, state="head"):
    """Today's head (or full) state, from loading the files to the trained head.

    Returns:
        `(seconds, epoch_seconds)`: the whole state's, and each of its epochs' (both
        phases' for `full`).
    """
    start = time.perf_counter()
    loaded = _load(folder)
    classifier = _classifier(loaded.num_classes, weights)
    options = finetune.TrainingOptions(learning_rate=learning_rate, verbose=0,
                                       log=lambda message: None)
    if state == "head":
        finetune.fit_head(classifier, loaded, epochs=EPOCHS, options=options,
                          feature_cache=feature_cache)
    else:
        finetune.fit_full(classifier, loaded, epochs=EPOCHS, fine_tune_epochs=1,
                          options=options, fine_tune_learning_rate=1e-5,
                          feature_cache=feature_cache)
    return time.perf_counter() - start, classifier.epoch_seconds


def previous_head_state(folder, weights, learning_rate=1e-3):
    """The head state as it was: a decode pass to check every file, features at the
    training batch, then a label pass."""
    start = time.perf_counter()
    files = sorted(str(path) for path in pathlib.Path(folder).rglob("*.jpg"))
    check = tf.data.Dataset.from_tensor_slices(files).map(
        lambda f: tf.shape(tf.io.decode_image(tf.io.read_file(f), expand_animations=False)),
        num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    for _ in check:
        pass
    loaded = _load(folder)
    loaded.check_files(readable=(loaded.folder.train_files, loaded.folder.val_files))
    classifier = _classifier(loaded.num_classes, weights)
    classifier.freeze_backbone()

    def extract(dataset):
        features = classifier.features.predict(dataset, verbose=0)
        labels = np.concatenate([y for y in dataset.map(lambda x, y: y).as_numpy_iterator()])
        return features, labels

    x, y = extract(loaded.train_unshuffled.batch(BATCH_SIZE))
    x_val, y_val = extract(loaded.val)
    train = data.make_training_pipeline(tf.data.Dataset.from_tensor_slices((x, y)),
                                        loaded.num_classes, len(x), BATCH_SIZE)
    val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(1024)
    finetune.compile_classifier(classifier.head, learning_rate=learning_rate)
    classifier.head.fit(train, validation_data=val, epochs=EPOCHS, verbose=0, shuffle=False)
    return time.perf_counter() - start


def search_trials(folder, weights, output):
    """The seconds of each trial of a 5-trial head-only search on `folder`."""
    space = pathlib.Path(output) / "space.yaml"
    weights_entry = "none" if weights is None else weights
    space.write_text(
        "model: finetune\n"
        f"dataset: folder:{folder}\n"
        "hyperparameters:\n"
        "  learning_rate: {type: float, min: 1.0e-4, max: 1.0e-2, sampling: log}\n"
        f"  epochs: {{type: choice, values: [{EPOCHS}]}}\n"
        f"  batch_size: {{type: choice, values: [{BATCH_SIZE}]}}\n"
        "  backbone: {type: choice, values: [MobileNet]}\n"
        "  alpha: {type: choice, values: [0.25]}\n"
        f"  image_size: {{type: choice, values: [{IMAGE_SIZE}]}}\n"
        f"  weights: {{type: choice, values: ['{weights_entry}']}}\n"
    )
    run = pathlib.Path(output) / "search"
    search.main(["--space", str(space), "--tuner", "random", "--max-trials", "5",
                 "--output", str(run), "--quiet"])
    trials = json.loads((run / "trials.json").read_text())
    return [t["seconds"] for t in sorted(trials, key=lambda t: int(t["trial_id"]))]


# Runs the command given after it and prints its peak RSS in KiB. A child's peak starts at
# the size of the process that forked it (Linux carries the forking process's high-water
# mark across `exec`), so the recipe is started from this small process, not from the
# benchmark, which by then holds more than the recipe ever does.
_MEASURE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


# Runs the script given after it as if JAX were not installed: kfound's own install has no
# JAX (only its `dev` extra, for the tests), and TensorFlow imports JAX when it finds it
# (`tensorflow.lite.python.util`), which adds about 100 MiB to every process.
_WITHOUT_JAX = """
import importlib.abc, os, runpy, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("jax", "jaxlib"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NotInstalled())
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))  # as `python SCRIPT` sets it
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def peak_rss_mib(folder, weights, output, without_jax=False):
    """The peak RSS of the recipe's head state on `folder`, in a fresh process."""
    python = [sys.executable, "-c", _WITHOUT_JAX] if without_jax else [sys.executable]
    command = [*python, str(ROOT / "recipes" / "finetune.py"), "--state", "head",
               "--dataset", f"folder:{folder}", "--backbone", "MobileNet", "--alpha", "0.25",
               "--image-size", str(IMAGE_SIZE), "--weights", weights or "none",
               "--epochs", str(EPOCHS), "--output", str(output), "--no-feature-cache"]
    run = subprocess.run([sys.executable, "-c", _MEASURE, *command], check=True,
                         capture_output=True, text=True)
    return int(run.stdout.split()[-1]) / 1024


def linear_cost(sizes, seconds):
    """The fixed cost and the cost per image of a straight line through two points."""
    per_image = (seconds[1] - seconds[0]) / (sizes[1] - sizes[0])
    return seconds[0] - per_image * sizes[0], per_image


def measure_round(folders, weights, work):
    """One round of every timing; each round has its own feature cache and search."""
    work.mkdir()
    small, big = folders
    cache = work / "features"
    seconds = {"previous": previous_head_state(big, weights)}
    seconds["first"], _ = head_state(big, weights, feature_cache=cache)
    seconds["rerun"], epochs = head_state(big, weights, learning_rate=3e-3,
                                          feature_cache=cache)
    seconds["rerun_training"] = sum(epochs)
    seconds["trials"] = search_trials(small, weights, work)
    seconds["trial_1"] = seconds["trials"][0]
    seconds["slowest_later_trial"] = max(seconds["trials"][1:])
    _, epochs = head_state(small, weights, feature_cache=cache)
    seconds["trial_training"] = sum(epochs)
    # Epochs 2 to N run the same steps as epoch 1 without its tracing.
    seconds["trial_steps"] = sum(epochs[1:]) * len(epochs) / (len(epochs) - 1)
    for state in ("head", "full"):
        seconds[state] = [head_state(folder, weights, state=state)[0] for folder in folders]
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="400 and 800 images, one round, no 25,000-image memory run")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of every timing; each figure is their median "
                             "(default: 3, or 1 with --quick)")
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if rounds < 1:
        parser.error(f"argument --rounds: must be at least 1. Received: rounds={rounds}")
    sizes = (400, 800) if args.quick else (2000, 4000)
    weights = str(SHARED_WEIGHTS) if SHARED_WEIGHTS.is_file() else None
    result = {}
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        folders = [write_photos(work / f"photos{n}", n) for n in sizes]
        head_state(folders[0], weights)  # warm-up: imports, tracing, the page cache
        measured = [measure_round(folders, weights, work / f"round{r}")
                    for r in range(rounds)]
        if not args.quick:
            huge = write_photos(work / "photos25000", 25000)
            result["head_peak_rss_mib_25000"] = round(peak_rss_mib(huge, weights,
                                                                   work / "rss"), 1)
            result["head_peak_rss_mib_25000_without_jax"] = round(peak_rss_mib(
                huge, weights, work / "rss_without_jax", without_jax=True), 1)

    def ratios(top, bottom):
        return [m[top] / m[bottom] for m in measured]

    def median(values, digits=2):
        return round(statistics.median(values), digits)

    rerun_speedups = ratios("first", "rerun")
    trial_speedups = ratios("trial_1", "slowest_later_trial")
    result.update({
        "head_first_run_vs_previous": median(ratios("first", "previous"), 3),
        "head_rerun_speedup": median(rerun_speedups),
        "head_rerun_speedup_bound": median(ratios("first", "rerun_training")),
        "head_rerun_speedup_rounds": [round(r, 2) for r in rerun_speedups],
        "search_trials_2_to_5_speedup": median(trial_speedups),
        "search_trials_speedup_bound": median(ratios("trial_1", "trial_training")),
        "search_trials_speedup_bound_without_tracing": median(ratios("trial_1",
                                                                     "trial_steps")),
        "search_trials_2_to_5_speedup_rounds": [round(r, 2) for r in trial_speedups],
    })
    for name in ("previous", "first", "rerun", "rerun_training", "trial_training",
                 "trial_steps"):
        result[f"{name}_seconds"] = median([m[name] for m in measured])
    result["search_trial_seconds"] = [median(column) for column in
                                      zip(*(m["trials"] for m in measured), strict=True)]
    for state in ("head", "full"):
        seconds = [statistics.median(column)
                   for column in zip(*(m[state] for m in measured), strict=True)]
        fixed, per_image = linear_cost(sizes, seconds)
        result[f"{state}_fixed_seconds"] = round(fixed, 2)
        result[f"{state}_ms_per_image"] = round(1000 * per_image, 3)
    result.update(images=list(sizes), rounds=rounds,
                  weights="shared ImageNet" if weights else "random init")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

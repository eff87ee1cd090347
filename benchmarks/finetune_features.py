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
   Beside it, `search_trials_speedup_bound`: trial 1 divided by a head run's training
   epochs alone on the same images and settings.
4. `head_peak_rss_mib_25000` (full runs only): the peak resident memory of
   `recipes/finetune.py --state head` on 25,000 images, in a fresh process. Goal <= 1024.
5. The fixed and per-image cost of the head and full states, fitted over two sizes, so
   that growth stays visible.

Prints one JSON line. `--quick` uses 400 and 800 images and skips the 25,000-image run.
"""

import argparse
import json
import os
import pathlib
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
        `(seconds, training_seconds)`: the whole state's, and its (last phase's) epochs'.
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
    return time.perf_counter() - start, sum(classifier.epoch_seconds)


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


def peak_rss_mib(folder, weights, output):
    """The peak RSS of the recipe's head state on `folder`, in a fresh process."""
    command = [sys.executable, str(ROOT / "recipes" / "finetune.py"), "--state", "head",
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="400 and 800 images, no 25,000-image memory run")
    args = parser.parse_args(argv)
    sizes = (400, 800) if args.quick else (2000, 4000)
    weights = str(SHARED_WEIGHTS) if SHARED_WEIGHTS.is_file() else None
    result = {}
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        folders = [write_photos(work / f"photos{n}", n) for n in sizes]
        big = folders[-1]
        head_state(folders[0], weights)  # warm-up: imports, tracing, the page cache
        previous = previous_head_state(big, weights)
        first, _ = head_state(big, weights, feature_cache=work / "features")
        rerun, training = head_state(big, weights, learning_rate=3e-3,
                                     feature_cache=work / "features")
        result["head_first_run_vs_previous"] = round(first / previous, 3)
        result["head_rerun_speedup"] = round(first / rerun, 2)
        result["head_rerun_speedup_bound"] = round(first / training, 2)
        result["head_previous_seconds"] = round(previous, 2)
        result["head_first_run_seconds"] = round(first, 2)
        result["head_rerun_seconds"] = round(rerun, 2)
        result["head_rerun_training_seconds"] = round(training, 2)
        trials = search_trials(folders[0], weights, work)
        _, trial_training = head_state(folders[0], weights, feature_cache=work / "features")
        result["search_trials_2_to_5_speedup"] = round(trials[0] / max(trials[1:]), 2)
        result["search_trials_speedup_bound"] = round(trials[0] / trial_training, 2)
        result["search_trial_seconds"] = [round(t, 2) for t in trials]
        result["search_trial_training_seconds"] = round(trial_training, 2)
        for state in ("head", "full"):
            seconds = [head_state(folder, weights, state=state)[0] for folder in folders]
            fixed, per_image = linear_cost(sizes, seconds)
            result[f"{state}_fixed_seconds"] = round(fixed, 2)
            result[f"{state}_ms_per_image"] = round(1000 * per_image, 3)
        if not args.quick:
            huge = write_photos(work / "photos25000", 25000)
            result["head_peak_rss_mib_25000"] = round(peak_rss_mib(huge, weights,
                                                                   work / "rss"), 1)
    result["images"] = list(sizes)
    result["weights"] = "shared ImageNet" if weights else "random init"
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Benchmarks of `kfound.finetune`: cached-feature head training and the predict pipeline.

1. Head-only training on cached backbone features vs the keras.io approach (the frozen
   backbone re-run every epoch), same data, epochs and seed, alternating in one process.
   Reports the ratio of their epoch 2..N times (goal >= 10) and both validation
   accuracies (equal within noise: the computation is the same).
2. The predict-only pipeline (JPEG files -> decode, resize, batch, prefetch -> model) in
   images per second, divided by `model.predict` on the same images already decoded in
   memory (goal >= 0.9: the input pipeline is not the bottleneck).

The backbone is a real `keras.applications.MobileNet` (alpha 0.25, 96x96), with the
team's shared ImageNet weights when `../shared/data/weights` has them, else random
initialisation (the cost, which is what is measured, is the same). Data: scikit-learn's
digits 5-9 (100 labelled images per class), upsampled to 96x96 RGB.

Prints one JSON line. `--quick` runs fewer epochs and rounds (about a minute on 2 cores).
"""

import argparse
import json
import os
import pathlib
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from kfound import data, finetune

SHARED_WEIGHTS = (
    pathlib.Path(os.environ.get("KFOUND_SHARED_DIR", pathlib.Path(__file__).resolve().parents[2]
                                / "shared"))
    / "data" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
)
IMAGE_SIZE = 96


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _classifier(num_classes, weights):
    keras.utils.set_random_seed(0)
    backbone = finetune.build_backbone("MobileNet", weights, IMAGE_SIZE, alpha=0.25)
    return finetune.Classifier(backbone, "MobileNet", num_classes)


def head_training(loaded, weights, epochs, rounds):
    ratios, accuracies = [], {}
    for _ in range(rounds):
        later = {}
        for cached in (True, False):
            timer = EpochTimer()
            with tempfile.TemporaryDirectory() as backup:
                history = finetune.fit_head(
                    _classifier(loaded.num_classes, weights), loaded, epochs,
                    cache_features=cached, backup_dir=backup, callbacks=[timer], verbose=0,
                    log=lambda message: None,
                )
            later[cached] = sum(timer.seconds[1:])
            accuracies[cached] = float(history["val_accuracy"][-1])
        ratios.append(later[False] / later[True])
    return statistics.median(ratios), accuracies[True], accuracies[False]


def predict_pipeline(loaded, weights, rounds, batch_size):
    model = _classifier(loaded.num_classes, weights).model
    images = np.concatenate([x for x, _ in loaded.val.as_numpy_iterator()])
    with tempfile.TemporaryDirectory() as folder:
        for i, image in enumerate(images.astype("uint8")):
            pathlib.Path(folder, f"{i:05d}.jpg").write_bytes(tf.io.encode_jpeg(image).numpy())
        finetune.predict_files(model, folder, loaded.class_names, batch_size=batch_size)  # warm
        model.predict(images, batch_size=batch_size, verbose=0)
        ratios = []
        for _ in range(rounds):
            start = time.perf_counter()
            rows, _ = finetune.predict_files(model, folder, loaded.class_names,
                                             batch_size=batch_size)
            pipeline = len(rows) / (time.perf_counter() - start)
            start = time.perf_counter()
            model.predict(images, batch_size=batch_size, verbose=0)
            in_memory = len(images) / (time.perf_counter() - start)
            ratios.append(pipeline / in_memory)
    return statistics.median(ratios)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and rounds")
    args = parser.parse_args(argv)
    epochs, rounds = (4, 1) if args.quick else (6, 2)
    weights = str(SHARED_WEIGHTS) if SHARED_WEIGHTS.is_file() else None
    loaded = data.load_image_data("embedded", IMAGE_SIZE, batch_size=32, train_per_class=100)
    ratio, cached_accuracy, rerun_accuracy = head_training(loaded, weights, epochs, rounds)
    predict_ratio = predict_pipeline(loaded, weights, rounds + 1, batch_size=64)
    print(json.dumps({
        "head_cached_vs_rerun_backbone_epochs_2_to_n_speedup": round(ratio, 2),
        "head_cached_val_accuracy": round(cached_accuracy, 4),
        "head_rerun_backbone_val_accuracy": round(rerun_accuracy, 4),
        "predict_pipeline_vs_in_memory_predict": round(predict_ratio, 3),
        "backbone": "MobileNet(alpha=0.25, 96px, "
                    f"{'shared ImageNet weights' if weights else 'random init'})",
        "epochs": epochs,
        "train_examples": loaded.train_examples,
    }))


if __name__ == "__main__":
    main()

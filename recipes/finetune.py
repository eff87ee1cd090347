"""
Title: Fine-tuning a pretrained backbone in three states
Description: Predict only, train the head only, or train everything (seed §3.7.4), against
a from-scratch baseline that measures what pretraining is worth.
Time: `make demo` (the offline default) takes 1-3 minutes on a 2-core CPU; `--smoke` seconds.

Usage:

```bash
python recipes/finetune.py                      # offline demo: embedded digits, all states
python recipes/finetune.py --weights imagenet --dataset tfds:tf_flowers --backbone MobileNetV2
python recipes/finetune.py --state predict --model saved_models/RUN/full/model.keras \\
    --images my_photos/
```
"""

import argparse
import csv
import json
import os
import time

import keras

from kfound import data as kdata
from kfound import finetune, io_utils, runs

"""
## The three states, and the baseline

Seed §3.7.4 lists three ways to use a model trained on a large dataset:

1. **predict**: only label new images with it (no training);
2. **head**: train only a new final classification layer on the frozen backbone;
3. **full**: train the head, then the convolutional layers too.

`--state all` (the default) runs `head`, `full`, a from-scratch `scratch` baseline (the
same backbone and head, randomly initialised, every layer trained for as many epochs as
`full`), and finally `predict`, which labels the validation images with the model `full`
saved. The table compares validation accuracy, trainable parameters and seconds.

## The offline default: transfer between two digit tasks

ImageNet weights need the internet. Offline (`--dataset embedded`, the default), the
backbone is `SmallConvNet` (four 3x3 convolutions with BatchNorm, 16x16 inputs),
pretrained once on a *source* task, scikit-learn's digits 0-4 (about 900 images, 15
epochs, a few seconds; cached under `saved_models/pretrained/` and reused), then
fine-tuned on a different *target* task: digits 5-9 with only 3 labelled images per
class (15 in all; the ~880 other 5-9 images are the validation set). A tiny labelled set is
the regime of seed §3.7.2 where pretraining matters: with 10 per class, digits are so easy
that training from scratch already reaches ~96% and pretraining on 0-4 did not beat it.
Every state uses Adam's default learning rate, 1e-3, untuned for any of them, batch 16:
the head trains 30 epochs (one step each, on cached features, so they are cheap); the full
state adds 20 epochs with the whole backbone unfrozen, also at 1e-3 (the keras.io value
1e-5 is meant for big ImageNet backbones and barely moves this one in 20 steps); the scratch
baseline gets the same 50 epochs. With 30 steps the head alone underfits, and the table
shows it. Nothing is forced: if pretraining did not help, the table would say so.

`--backbone` names either `SmallConvNet` or any `keras.applications` constructor.
`--weights pretrained` (the default) means each backbone's own pretraining: the digits-0-4
source task for `SmallConvNet`, ImageNet for the others. `none` is random initialisation,
and a path loads a weights file (with or without its classification top).
"""

STATES = ("predict", "head", "full", "all")
TRAIN_PER_CLASS = 3  # labelled images per class of the embedded target task
TRAINED = ("head", "full", "scratch")

"""
## Flags
"""


def parse_unfreeze_from(text):
    """`--unfreeze-from`: an integer index, a float fraction of depth, or a layer name."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].strip() + " See the module docstring.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--state", choices=STATES, default="all",
                        help="predict only; train the head only; train everything; or all "
                             "of them plus a from-scratch baseline")
    parser.add_argument("--backbone", default=finetune.SMALL_BACKBONE,
                        help="SmallConvNet (the embedded demo's) or a keras.applications "
                             "constructor name, e.g. MobileNetV2, ResNet50, EfficientNetB0")
    parser.add_argument("--alpha", type=float, default=None,
                        help="width multiplier of the MobileNet family")
    parser.add_argument("--image-size", type=int, default=None,
                        help="square input side (default: 16 for SmallConvNet, else 224)")
    parser.add_argument("--weights", default="pretrained",
                        help="pretrained (digits 0-4 for SmallConvNet, ImageNet otherwise), "
                             "imagenet, none, or a weights-file PATH (with or without top)")
    parser.add_argument("--dataset", default="embedded",
                        help="embedded (digits 5-9, offline), tfds:NAME, or folder:PATH")
    parser.add_argument("--epochs", type=int, default=30,
                        help="head epochs (state head, and phase 1 of state full)")
    parser.add_argument("--fine-tune-epochs", type=int, default=20,
                        help="epochs with the backbone unfrozen (phase 2 of state full)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="head (and from-scratch) learning rate")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=None,
                        help="learning rate once the backbone is unfrozen (default: 1e-5, the "
                             "keras.io value for ImageNet backbones; 1e-3 for SmallConvNet)")
    parser.add_argument("--unfreeze-from", type=parse_unfreeze_from, default=None,
                        help="first backbone layer to unfreeze: a name, an index, or a "
                             "fraction of depth such as 0.5 (default: the whole backbone)")
    parser.add_argument("--augment", action="store_true",
                        help="random flip, rotation, zoom and contrast (turns feature "
                             "caching off)")
    parser.add_argument("--balance", action="store_true",
                        help="resample so every class is equally likely (label shuffle)")
    parser.add_argument("--no-cache-features", action="store_true",
                        help="run the frozen backbone every head epoch instead of once")
    parser.add_argument("--model", default=None,
                        help="predict: a model.keras saved by this recipe")
    parser.add_argument("--images", default=None,
                        help="predict: an image file or folder (default: the validation set)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="train with the mixed_float16 policy (GPUs)")
    parser.add_argument("--jit-compile", action="store_true", help="compile with XLA")
    runs.add_run_arguments(parser, run_name="finetune-{dataset}-{backbone}-{state}")
    return parser


"""
## Running one state

Each state writes `model.keras` (with `classes.json` beside it), `metrics.json`,
`history.csv` and `curves.png` into its folder: the run folder for a single state, or
`<run>/<state>/` for `--state all`. `BackupAndRestore` keeps the epoch in progress under
`<folder>/backup/`; rerunning the same command after a kill resumes from the last
finished epoch, and a state that already finished with the same arguments is reused.
"""


def train_state(state, args, data, weights, folder, settings, strategy):
    metrics_path = os.path.join(folder, "metrics.json")
    previous = _read_json(metrics_path)
    if previous and previous.get("run_settings") == settings:
        print(f"{state}: finished earlier with the same arguments; reusing {metrics_path}")
        return previous, _read_history(os.path.join(folder, "history.csv"))
    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        backbone = finetune.build_backbone(
            args.backbone, None if state == "scratch" else weights, data.image_size, args.alpha
        )
        classifier = finetune.Classifier(
            backbone, args.backbone, data.num_classes, frozen_bn=state != "scratch"
        )
    backup = os.path.join(folder, "backup")
    common = {"jit_compile": args.jit_compile or "auto", "verbose": 0 if args.smoke else 2}
    start = time.perf_counter()
    if state == "head":
        history = finetune.fit_head(classifier, data, args.epochs, args.learning_rate,
                                    not args.no_cache_features, backup, **common)
    elif state == "full":
        history = finetune.fit_full(
            classifier, data, args.epochs, args.fine_tune_epochs, args.learning_rate,
            args.fine_tune_learning_rate, args.unfreeze_from, not args.no_cache_features,
            backup, **common)
    else:
        history = finetune.fit_scratch(classifier, data, args.epochs + args.fine_tune_epochs,
                                       args.learning_rate, backup, **common)
    seconds = time.perf_counter() - start
    epochs_run = len(history["epoch"])
    metrics = {
        "state": state,
        "backbone": args.backbone,
        "weights": None if state == "scratch" else weights,
        "dataset": args.dataset,
        "num_classes": data.num_classes,
        "class_names": data.class_names,
        "train_examples": data.train_examples,
        "val_examples": data.val_examples,
        "val_accuracy": float(history["val_accuracy"][-1]),
        "val_loss": float(history["val_loss"][-1]),
        "epochs": int(history["epoch"][-1]),
        "epochs_this_run": epochs_run,
        "train_seconds": round(seconds, 3),
        "examples_per_second": round(data.train_examples * epochs_run / seconds, 1),
        "trainable_params": finetune.trainable_params(classifier.model),
        "skipped_files": data.skipped_files,
        "image_size": data.image_size,
        "run_settings": settings,
    }
    finetune.save_classifier(classifier.model, data.class_names, folder)
    finetune.write_history_csv(os.path.join(folder, "history.csv"), history)
    finetune.plot_curves(os.path.join(folder, "curves.png"), {state: history},
                         f"{state}: {args.backbone} on {args.dataset}")
    io_utils.write_json(metrics_path, metrics)
    print(f"{state}: val accuracy {metrics['val_accuracy']:.4f} in {seconds:.1f}s -> {folder}")
    return metrics, history


"""
## State 1: predict only

With `--model`, a model this recipe saved labels the images with its own class names.
Without it, a with-top `keras.applications` network (`--weights imagenet` or a with-top
file) labels them with ImageNet classes through `decode_predictions`. With `--images` the
CSV lists files; without, the validation set is labelled and its accuracy reported.
"""


def predict_state(args, folder, model_path, data_loader):
    start = time.perf_counter()
    if model_path is not None:
        model, class_names = finetune.load_classifier(model_path)
        decode, source = None, model_path
    else:
        if args.images is None:
            raise ValueError(
                "Argument `images` is required to label images with ImageNet classes "
                "(or give --model). Received: images=None"
            )
        weights = "imagenet" if args.weights == "pretrained" else args.weights
        model, decode = finetune.imagenet_classifier(args.backbone, weights, args.image_size,
                                                     args.alpha)
        class_names, source = None, f"{args.backbone}:{weights}"
    accuracy, examples = None, 0
    if args.images is not None:
        rows, skipped = finetune.predict_files(model, args.images, class_names, decode,
                                               args.batch_size)
        examples = len(rows)
    else:
        data = data_loader(model.input_shape[1])
        labels, best, index = finetune.predict(model, data.val, class_names)
        truth = [int(y) for y in data.val.unbatch().map(lambda x, y: y).as_numpy_iterator()]
        accuracy = float(sum(int(i == t) for i, t in zip(index, truth, strict=True)) / len(truth))
        rows = [(f"{args.dataset}:val/{i:05d}", label, p)
                for i, (label, p) in enumerate(zip(labels, best.tolist(), strict=True))]
        skipped, examples = data.skipped_files, len(rows)
    seconds = time.perf_counter() - start
    finetune.write_predictions_csv(os.path.join(folder, "predictions.csv"), rows)
    metrics = {
        "state": "predict", "backbone": args.backbone, "weights": source,
        "dataset": args.images or args.dataset, "num_classes": model.output_shape[-1],
        "train_examples": 0, "val_examples": examples, "val_accuracy": accuracy,
        "val_loss": None, "epochs": 0, "train_seconds": 0.0,
        "predict_seconds": round(seconds, 3),
        "examples_per_second": round(examples / seconds, 1), "trainable_params": 0,
        "skipped_files": skipped,
    }
    io_utils.write_json(os.path.join(folder, "metrics.json"), metrics)
    print(f"predict: labelled {examples} images in {seconds:.1f}s -> "
          f"{os.path.join(folder, 'predictions.csv')}")
    return metrics


"""
## Putting it together
"""


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.fine_tune_learning_rate is None:
        small = args.backbone == finetune.SMALL_BACKBONE
        args.fine_tune_learning_rate = 1e-3 if small else 1e-5
    if args.smoke:
        args.epochs, args.fine_tune_epochs = min(args.epochs, 2), min(args.fine_tune_epochs, 1)
    output = runs.start_run(args)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = finetune.distribution_strategy()
    image_size = args.image_size or finetune.default_image_size(args.backbone)
    if args.backbone not in finetune.backbone_names():
        finetune.build_backbone(args.backbone)  # raises the error listing valid names

    def load(size):
        augment = kdata.augmentation_layers(seed=args.seed) if args.augment else None
        return kdata.load_image_data(
            args.dataset, size, args.batch_size, balance=args.balance, augment=augment,
            seed=args.seed, train_per_class=2 if args.smoke else TRAIN_PER_CLASS,
        )

    if args.state == "predict":
        return predict_state(args, str(output), args.model, load)

    data = load(image_size)
    weights = resolve_weights(args, image_size, output)
    print(f"data: {args.dataset}: {data.train_examples} training and {data.val_examples} "
          f"validation images, {data.num_classes} classes, {data.skipped_files} files skipped")
    settings = {k: v for k, v in vars(args).items()
                if k not in ("output", "state", "model", "images") and not k.startswith("_")}
    if args.state != "all":
        return train_state(args.state, args, data, weights, str(output), settings, strategy)[0]

    results, histories = [], {}
    for state in TRAINED:
        metrics, histories[state] = train_state(
            state, args, data, weights, str(output / state), settings, strategy
        )
        results.append(metrics)
    results.append(predict_state(args, str(output / "predict"),
                                 str(output / "full" / "model.keras"), lambda size: data))
    rows = [
        {"state": m["state"], "val_accuracy": m["val_accuracy"],
         "trainable_params": m["trainable_params"],
         "seconds": m["train_seconds"] or m["predict_seconds"]}
        for m in results
    ]
    io_utils.write_json(output / "comparison.json", {"rows": rows, "args": settings})
    finetune.plot_curves(output / "curves.png", histories,
                         f"{args.backbone} on {args.dataset}: head, full, from scratch")
    print(runs.format_table(rows, ["state", "val_accuracy", "trainable_params", "seconds"],
                            floatfmt="{:.3f}"))
    return rows


def resolve_weights(args, image_size, output):
    """`--weights` -> what `build_backbone` takes; pretrains SmallConvNet if needed."""
    if args.weights == "none":
        return None
    if args.weights != "pretrained":
        return args.weights
    if args.backbone != finetune.SMALL_BACKBONE:
        return "imagenet"
    cache = output / "pretrained" if args.smoke else os.path.join(runs.SAVED_MODELS, "pretrained")
    return finetune.pretrain_small_backbone(
        cache, image_size, epochs=1 if args.smoke else 15, seed=args.seed
    )


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_history(path):
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


if __name__ == "__main__":
    main()

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

# No kfound, Keras or TensorFlow import here: `import kfound` registers its layers, which
# imports Keras and, under the TensorFlow backend, TensorFlow (seconds). The flags are parsed
# and checked first, so a bad one is reported at once; each function imports what it uses.
from _light import run_arguments

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

## The offline default: a new label space on new images

ImageNet weights need the internet. Offline (`--dataset embedded`, the default), the
backbone is `SmallConvNet` (four 3x3 convolutions with BatchNorm, 16x16 inputs) and the
data is scikit-learn's 1,797 handwritten digits, split by `--seed` into two disjoint
halves, stratified by digit. The *source* task classifies the ten digits on half A
(673 training images, 15 epochs, under a minute; cached under `saved_models/pretrained/`
and reused). The *target* task is a different labelling of half B's images, "even" or
"odd", with only 5 labelled images per class (10 in all; the other ~890 images of B are
the validation set). Like ImageNet and a new dataset, the target's images and its label
space are both new to the backbone. Plainly: parity is a function of the digit's identity,
so this measures whether a representation that separates digits transfers to a label
space it was never trained on, on images it never saw; it is not transfer between
unrelated domains. (An earlier design, pretraining on digits 0-4 and fine-tuning on 5-9,
gained less than the seed-to-seed spread: features of five digits barely help to tell
five others apart.)

Adam at 3e-3 and batch 4 (3 updates an epoch over the 10 images): the head trains 30
epochs on cached features; the full state then adds 20 epochs with the whole backbone
unfrozen at a tenth of that rate, 3e-4 (the keras.io practice: a much lower rate once the
pretrained layers train; its 1e-5 is for ImageNet backbones under a 1e-3 head); the scratch
baseline (same architecture, random initialisation, every layer trained) gets the same 50
epochs at 3e-3, as many updates as `full`, at the rate its own training starts from.

**What it measured.** Validation accuracy on 3 seeds (split, initialisation and
pretraining), TensorFlow backend, the defaults above:

| seed | head  | full  | scratch |
|------|-------|-------|---------|
| 0    | 0.946 | 0.892 | 0.777   |
| 1    | 0.904 | 0.872 | 0.648   |
| 2    | 0.899 | 0.844 | 0.543   |
| 1337 | 0.888 | 0.874 | 0.816   |

The pretrained head, a linear probe on the source features, beats training from scratch
on every seed, by 0.07 to 0.36, and its own spread over seeds is 0.06 (scratch's is
0.27). Full fine-tuning, with every BatchNorm of the backbone frozen, also beats scratch on
every seed, and is below the head on every seed, by 0.01 to 0.06: with 10 labelled
images, unfreezing 66k parameters overfits what the frozen features already separate.
That contradicts, at this scale, the seed's claim (§3.7.4) that state three's "prediction
accuracy is also improved compared with state two"; it is the usual advice to train only
the head when the labelled set is tiny (`finetune_learning_curve.py` measures it at more
labels). The phase-2 rate matters: at the head's 3e-3 instead of 3e-4, full fell to 0.684,
0.632 and 0.751 (measured before resumable training's epoch-seeded batch order, which
changed every run's batches). Nothing is forced: the table
printed is whatever the run measured; use `--seed` to see the spread.

`--backbone` names either `SmallConvNet` or any `keras.applications` constructor.
`--weights pretrained` (the default) means each backbone's own pretraining: the ten-digit
source task on half A for `SmallConvNet`, ImageNet for the others. `none` is random initialisation,
and a path loads a weights file (with or without its classification top).
"""

STATES = ("predict", "head", "full", "all")
TRAIN_PER_CLASS = 5  # labelled images per class of the embedded target task
TRAINED = ("head", "full", "scratch")
SMALL_BACKBONE = "SmallConvNet"  # kfound.backbones.SMALL_BACKBONE, without importing it
SMALL_BACKBONE_MIN_SIZE = 8  # kfound.backbones.SMALL_BACKBONE_MIN_SIZE
MIN_VAL_PER_CLASS = 5
# Arguments that change no result (besides --output and --overwrite): a rerun that differs
# only in them resumes.
NOT_RESULTS = ("state", "model", "images", "feature_cache", "no_feature_cache",
               "min_val_per_class")
# What a run writes into --output (for --state all, or one state's run folder).
RUN_FILES = ("args.json", "comparison.json", "curves.png", "model.keras", "classes.json",
             "metrics.json", "history.csv", "predictions.csv")
RUN_FOLDERS = (*TRAINED, "predict", "backup")

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
    parser.add_argument("--backbone", default=SMALL_BACKBONE,
                        help="SmallConvNet (the embedded demo's) or a keras.applications "
                             "constructor name, e.g. MobileNetV2, ResNet50, EfficientNetB0")
    parser.add_argument("--alpha", type=float, default=None,
                        help="width multiplier of the MobileNet family")
    parser.add_argument("--image-size", type=int, default=None,
                        help="square input side (default: 16 for SmallConvNet, else 224)")
    parser.add_argument("--weights", default="pretrained",
                        help="pretrained (half A digits for SmallConvNet, ImageNet otherwise), "
                             "imagenet, none, or a weights-file PATH (with or without top)")
    parser.add_argument("--dataset", default="embedded",
                        help="embedded (even/odd digits, offline), tfds:NAME, or folder:PATH")
    parser.add_argument("--epochs", type=int, default=30,
                        help="head epochs (state head, and phase 1 of state full)")
    parser.add_argument("--fine-tune-epochs", type=int, default=20,
                        help="epochs with the backbone unfrozen (phase 2 of state full)")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="training batch; 4 gives the 10-image demo 3 updates an epoch")
    parser.add_argument("--learning-rate", type=float, default=3e-3,
                        help="head (and from-scratch) learning rate")
    parser.add_argument("--fine-tune-learning-rate", type=float, default=None,
                        help="learning rate once the backbone is unfrozen (default: 1e-5, the "
                             "keras.io value for ImageNet backbones; --learning-rate / 10 for "
                             "SmallConvNet)")
    parser.add_argument("--unfreeze-from", type=parse_unfreeze_from, default=None,
                        help="first backbone layer to unfreeze: a name, an index, or a "
                             "fraction of depth such as 0.5 (default: the whole backbone)")
    parser.add_argument("--augment", action="store_true",
                        help="random flip, rotation, zoom, contrast and PCA lighting (turns "
                             "feature caching off)")
    parser.add_argument("--balance", action="store_true",
                        help="resample so every class is equally likely (label shuffle)")
    parser.add_argument("--no-cache-features", action="store_true",
                        help="run the frozen backbone every head epoch instead of once")
    parser.add_argument("--feature-cache", default=None,
                        help="folder of the on-disk cache of backbone features, keyed by the "
                             "backbone, its weights and the data; reused by reruns and "
                             "resumed runs (default: saved_models/features/, or "
                             "<output>/features/ with --smoke)")
    parser.add_argument("--no-feature-cache", action="store_true",
                        help="keep backbone features in memory only, never on disk")
    parser.add_argument("--model", default=None,
                        help="predict: a model.keras saved by this recipe")
    parser.add_argument("--images", default=None,
                        help="predict: an image file or folder (default: the validation set)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="train with the mixed_float16 policy (GPUs)")
    parser.add_argument("--jit-compile", action="store_true", help="compile with XLA")
    parser.add_argument("--min-val-per-class", type=int, default=MIN_VAL_PER_CLASS,
                        help="warn when a class of a folder dataset has fewer validation "
                             "images than this: its accuracy would say little")
    run_arguments.add_run_arguments(parser, run_name="finetune-{dataset}-{backbone}-{state}",
                                    not_results=NOT_RESULTS)
    return parser


def parse_args(argv=None):
    """Parses and checks the flags, importing neither kfound nor TensorFlow.

    Returns:
        The `argparse.Namespace`, with `fine_tune_learning_rate` resolved and `--smoke`'s
        epochs applied.

    Raises:
        ValueError: naming the first bad flag.
    """
    args = build_parser().parse_args(argv)
    integers, numbers = run_arguments.integers, run_arguments.numbers
    positive = numbers(0, low_inclusive=False)
    run_arguments.check_flags(
        args, epochs=integers(), fine_tune_epochs=integers(), batch_size=integers(),
        min_val_per_class=integers(), image_size=integers(), learning_rate=positive,
        fine_tune_learning_rate=positive, alpha=positive,
    )
    small = args.backbone == SMALL_BACKBONE
    if small and args.image_size is not None and args.image_size < SMALL_BACKBONE_MIN_SIZE:
        raise ValueError(f"Argument `--image-size` must be at least {SMALL_BACKBONE_MIN_SIZE} "
                         f"for backbone {SMALL_BACKBONE}. Received: image_size={args.image_size}")
    if isinstance(args.unfreeze_from, float) and not 0.0 <= args.unfreeze_from < 1.0:
        raise run_arguments.flag_error("unfreeze_from", "a fraction of depth in [0, 1), or a "
                                       "layer name", args.unfreeze_from)
    if args.fine_tune_learning_rate is None:
        args.fine_tune_learning_rate = args.learning_rate / 10 if small else 1e-5
    if args.smoke:
        args.epochs, args.fine_tune_epochs = min(args.epochs, 2), min(args.fine_tune_epochs, 1)
    return args


"""
## Running one state

Each state writes `model.keras` (with `classes.json` beside it), `metrics.json`,
`history.csv` and `curves.png` into its folder: the run folder for a single state, or
`<run>/<state>/` for `--state all`. `kfound.resume` saves every finished epoch under
`<folder>/backup/` (weights, optimizer, the random state and the history); rerunning the
same command after a kill resumes from the last finished epoch, to the result the
uninterrupted run would have had (`--augment` included: each epoch's random draws depend
only on `--seed` and the epoch), and `history.csv`, `curves.png`, `train_seconds` and
`epochs_trained` cover the whole run. A damaged backup is named and skipped for the one
before it. A state that already finished with the same arguments is reused.
"""


def train_state(state, args, data, weights, folder, settings, placement):
    import keras

    from kfound import backbones, finetune, io_utils, prediction, reports

    metrics_path = os.path.join(folder, "metrics.json")
    previous = _read_json(metrics_path)
    if previous and previous.get("run_settings") == settings:
        print(f"{state}: finished earlier with the same arguments; reusing {metrics_path}")
        return previous, _read_history(os.path.join(folder, "history.csv"))
    keras.utils.set_random_seed(args.seed)
    with placement.scope():
        backbone = backbones.build_backbone(
            args.backbone, None if state == "scratch" else weights, data.image_size, args.alpha
        )
        classifier = finetune.Classifier(
            backbone, args.backbone, data.num_classes, frozen_bn=state != "scratch"
        )
    backup = os.path.join(folder, "backup")
    options = finetune.TrainingOptions(
        learning_rate=args.learning_rate, jit_compile=args.jit_compile or "auto",
        verbose=0 if args.smoke else 2,
    )
    features = {"cache_features": not args.no_cache_features,
                "feature_cache": None if args.no_feature_cache else args.feature_cache}
    with placement.scope():
        if state == "head":
            history = finetune.fit_head(classifier, data, epochs=args.epochs, options=options,
                                        backup_dir=backup, **features)
        elif state == "full":
            history = finetune.fit_full(
                classifier, data, epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs,
                options=options, fine_tune_learning_rate=args.fine_tune_learning_rate,
                unfreeze_from=args.unfreeze_from, backup_dir=backup, **features)
        else:
            history = finetune.fit_scratch(classifier, data,
                                           epochs=args.epochs + args.fine_tune_epochs,
                                           options=options, backup_dir=backup)
    # The history covers the whole run, the epochs before a kill included, and so do the
    # seconds: every epoch's, plus computing the backbone features when they were.
    features_seconds = (classifier.features_report or {}).get("seconds", 0.0)
    seconds = sum(classifier.epoch_seconds) + features_seconds
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
        "epochs_trained": epochs_run,
        "train_seconds": round(seconds, 3),
        "examples_per_second": round(data.train_examples * epochs_run / seconds, 1),
        "trainable_params": finetune.trainable_params(classifier.model),
        "skipped_files": data.skipped_files,
        "corrupt_files": data.corrupt_files,
        "image_size": data.image_size,
        "features": classifier.features_report,
        "distribution": placement.record(),
        "run_settings": settings,
    }
    prediction.save_classifier(classifier.model, data.class_names, folder)
    reports.write_history_csv(os.path.join(folder, "history.csv"), history)
    reports.plot_curves(os.path.join(folder, "curves.png"), {state: history},
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


def predict_state(args, folder, model_path, data_loader, on_ready=lambda: None):
    """Labels images; calls `on_ready()` once the model is loaded, before writing anything."""
    from kfound import io_utils, prediction
    from kfound.data import image_candidates

    start = time.perf_counter()
    if model_path is not None:
        model, class_names = prediction.load_classifier(model_path)
        decode, source = None, model_path
    else:
        if args.images is None:
            raise ValueError(
                "Argument `images` is required to label images with ImageNet classes "
                "(or give --model). Received: images=None"
            )
        weights = "imagenet" if args.weights == "pretrained" else args.weights
        model, decode = prediction.imagenet_classifier(args.backbone, weights, args.image_size,
                                                     args.alpha)
        class_names, source = None, f"{args.backbone}:{weights}"
    on_ready()
    accuracy, examples = None, 0
    if args.images is not None:
        rows, skipped = prediction.predict_files(model, args.images, class_names, decode,
                                               args.batch_size)
        examples, labelled = len(rows), {file for file, _, _ in rows}
        corrupt = [f for f in image_candidates(args.images)[0] if f not in labelled]
    else:
        data = data_loader(model.input_shape[1])
        labels, best, index = prediction.predict(model, data.val, class_names)
        truth = [int(y) for y in data.val.unbatch().map(lambda x, y: y).as_numpy_iterator()]
        accuracy = float(sum(int(i == t) for i, t in zip(index, truth, strict=True)) / len(truth))
        rows = [(f"{args.dataset}:val/{i:05d}", label, p)
                for i, (label, p) in enumerate(zip(labels, best.tolist(), strict=True))]
        skipped, examples, corrupt = data.skipped_files, len(rows), data.corrupt_files
    seconds = time.perf_counter() - start
    prediction.write_predictions_csv(os.path.join(folder, "predictions.csv"), rows)
    metrics = {
        "state": "predict", "backbone": args.backbone, "weights": source,
        "dataset": args.images or args.dataset, "num_classes": model.output_shape[-1],
        "train_examples": 0, "val_examples": examples, "val_accuracy": accuracy,
        "val_loss": None, "epochs": 0, "train_seconds": 0.0,
        "predict_seconds": round(seconds, 3),
        "examples_per_second": round(examples / seconds, 1), "trainable_params": 0,
        "skipped_files": skipped, "corrupt_files": corrupt,
    }
    io_utils.write_json(os.path.join(folder, "metrics.json"), metrics)
    print(f"predict: labelled {examples} images in {seconds:.1f}s -> "
          f"{os.path.join(folder, 'predictions.csv')}")
    return metrics


"""
## Putting it together
"""


def main(argv=None):
    # TensorFlow's own best-fit allocator for CPU tensors, read when TensorFlow starts (a
    # user's setting wins; it changes no result). Through malloc, the decoded images and
    # activations of a long feature pass fragment the arenas of TensorFlow's threads: on
    # 25,000 images the head state peaked at 1.2-2.0 GB resident, not 0.96 GB, at the same
    # speed (benchmarks/finetune_features.py).
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    args = parse_args(argv)  # before any import of kfound (see the imports at the top)

    from kfound import data as kdata
    from kfound import distribution, runs

    output = runs.run_folder(args)
    run_arguments.check_writable_folder(output, flag=True)  # the default folder too
    settings = run_arguments.result_arguments(args)
    check_rerun(output, args)
    if args.feature_cache is None:
        args.feature_cache = str(output / "features" if args.smoke
                                 else os.path.join(runs.SAVED_MODELS, "features"))
    image_size = args.image_size or default_image_size(args.backbone)

    def load(size):
        augment = kdata.augmentation_layers(seed=args.seed) if args.augment else None
        return kdata.load_image_data(
            args.dataset, size, args.batch_size, balance=args.balance, augment=augment,
            val_batch_size=256 if args.dataset == "embedded" else None,
            seed=args.seed, train_per_class=2 if args.smoke else TRAIN_PER_CLASS,
            min_val_per_class=args.min_val_per_class,
        )

    if args.state == "predict":
        return predict_state(args, str(output), args.model, load,
                             on_ready=lambda: runs.start_run(args))

    check_backbone(args, image_size)  # name, --alpha, --image-size, --weights, --unfreeze-from
    # Every device of this machine: under JAX, keras.distribution.DataParallel, which
    # splits each batch across them, so the batch sizes must divide evenly.
    placement = distribution.setup()
    devices = distribution.data_parallel_devices()
    distribution.check_batch_size(args.batch_size)
    data = load(image_size)
    if args.state != "head" or args.augment or args.no_cache_features or devices > 1:
        # These runs train on the images: the pass that checks every file decodes each
        # once into the in-memory cache (when they fit), which the first epoch then reads.
        # The head state's one pass over the images is the backbone features' own.
        data.check_files(verbose=not args.smoke)
    # ...the last, partial batch of each pass included: the splits are cut to a multiple
    # of the device count.
    dropped = data.trim_to_multiple(devices)
    if any(dropped):
        print(f"data: {dropped[0]} training and {dropped[1]} validation images left out "
              f"so that every batch splits across the {devices} devices")
    fresh = not (output / "args.json").exists()
    output = runs.start_run(args)  # args.json, once every argument and the data are valid
    try:
        return run_states(args, data, image_size, output, settings, placement)
    except ValueError as error:
        # The head state's check of a folder's files is its feature pass, which runs after
        # start_run: a refused folder (a class with no readable image) or --weights must
        # not leave behind the args.json of a run that wrote nothing else, which would
        # block a rerun with other flags.
        caches = {"features", "pretrained"}  # --smoke keeps its caches in the run folder
        written = {p.name for p in output.iterdir()} - {"args.json", *caches}
        if fresh and not written and "Received: " in str(error):
            (output / "args.json").unlink(missing_ok=True)
        raise


def run_states(args, data, image_size, output, settings, placement):
    """Trains `args.state` (or every state, then predicts and compares) into `output`."""
    import keras

    from kfound import io_utils, reports, runs

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    weights = resolve_weights(args, image_size, output)
    checked = "" if data.files_checked else " (corrupt files are dropped as they are decoded)"
    print(f"data: {args.dataset}: {data.train_examples} training and {data.val_examples} "
          f"validation images, {data.num_classes} classes, {data.skipped_files} files "
          f"skipped{checked}")
    if args.state != "all":
        return train_state(args.state, args, data, weights, str(output), settings, placement)[0]

    results, histories = [], {}
    for state in TRAINED:
        metrics, histories[state] = train_state(
            state, args, data, weights, str(output / state), settings, placement
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
    reports.plot_curves(output / "curves.png", histories,
                         f"{args.backbone} on {args.dataset}: head, full, from scratch")
    print(runs.format_table(rows, ["state", "val_accuracy", "trainable_params", "seconds"],
                            floatfmt="{:.3f}"))
    return rows


def default_image_size(backbone):
    """`kfound.backbones.default_image_size`, without importing Keras."""
    return 16 if backbone == SMALL_BACKBONE else 224


"""
## Reruns

A rerun into the same `--output` resumes (or reuses the finished states) only when every
argument that changes a result matches the saved `args.json`; otherwise it stops before
any work, names the arguments that differ, and points to `--overwrite`.
"""


def check_rerun(output, args):
    """Applies the rerun rule of `kfound.run_arguments.check_rerun` to `output`.

    `--overwrite` deletes the previous run's results and backups, and keeps the caches of
    backbone features and of the pretrained backbone.
    """
    run_arguments.check_rerun(output, args, remove=(*RUN_FILES, *RUN_FOLDERS))


def check_backbone(args, image_size):
    """Builds the backbone once, so that a bad name, size or weights stop before any work."""
    import keras

    from kfound import backbones

    weights = {"none": None, "pretrained": None if args.backbone == SMALL_BACKBONE
               else "imagenet"}.get(args.weights, args.weights)
    try:
        backbone = backbones.build_backbone(args.backbone, weights, image_size, args.alpha)
    except Exception as error:
        if "URL fetch failure" not in str(error):
            raise
        reason = " ".join(str(error).split())[:200]
        raise ValueError(
            f"Argument `--weights` needs the internet to download the ImageNet weights of "
            f"{args.backbone}, and the download failed ({reason}). Offline, pass a local "
            "weights file (with or without its top): --weights PATH. "
            f"Received: weights={args.weights!r}"
        ) from None
    if args.state in ("full", "all"):
        backbones.unfreeze_index(backbone, args.unfreeze_from)
    del backbone
    keras.utils.clear_session(free_memory=False)


def resolve_weights(args, image_size, output):
    """`--weights` -> what `build_backbone` takes; pretrains SmallConvNet if needed."""
    from kfound import backbones, runs

    if args.weights == "none":
        return None
    if args.weights != "pretrained":
        return args.weights
    if args.backbone != backbones.SMALL_BACKBONE:
        return "imagenet"
    cache = output / "pretrained" if args.smoke else os.path.join(runs.SAVED_MODELS, "pretrained")
    return backbones.pretrain_small_backbone(
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
    run_arguments.run_main(main)

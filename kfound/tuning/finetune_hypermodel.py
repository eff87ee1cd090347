"""The `finetune` hypermodel: a KerasTuner search over `kfound.finetune`'s head and full states.

It loads its datasets through `kfound.data` (tf.data, TFDS), so it needs TensorFlow;
`kfound.tuning.hypermodels.hypermodel_class("finetune")` imports it on demand.
"""

import json
import os

import keras
import keras_tuner as kt

from kfound import _compat, backbones, distribution, features, finetune, io_utils
from kfound import data as kdata
from kfound.compiled_head import CompiledHead
from kfound.tuning import rules
from kfound.tuning.hypermodels import SpaceHyperModel

# Beside a head trial's checkpoint: the backbone its head was trained on (`load_trial`).
BACKBONE_RECORD = "backbone.json"
MAX_RECORD_BYTES = 64 * 1024  # a backbone, its weights path, size, alpha and digest


class FinetuneHyperModel(SpaceHyperModel):
    """Fine-tunes a backbone with `kfound.finetune`: head-only or full, on `kfound.data`.

    Each trial builds a `kfound.finetune.Classifier` (backbone, pooling, dropout, dense
    head) and trains it in one of the two transfer-learning states: `head` (`finetune.fit_head`,
    the backbone frozen) or `full` (`finetune.fit_full`: the head first, then the backbone
    unfrozen from `unfreeze_from` at `fine_tune_learning_rate`). The trial's score is its
    best epoch over both phases, and `tuner.get_best_models()` returns the classifier at
    that epoch, a model from raw `[0, 255]` images (`load_trial`). Its checkpoint is the
    whole classifier, or, for a head trial on a pretrained backbone, the head alone.

    Hyperparameters (canonical names first): `learning_rate` (the head's, and phase 1's),
    `epochs` (head epochs; phase 1 of `full`), `batch_size`, `dropout` (the head's),
    `optimizer` (both phases), `state` (`head` | `full`), `fine_tune_learning_rate`,
    `fine_tune_epochs` and `unfreeze_from` (the fraction of the backbone's depth that stays
    frozen in phase 2; these three only matter to `full` trials), `backbone`, `alpha`,
    `image_size` and `weights` (`none`, `imagenet`, or a weights-file path). A setting that
    is fixed rather than tuned is a one-value choice, e.g.
    `weights: {type: choice, values: [imagenet]}`; it is recorded with every trial.

    Feature caching: with no augmentation (search never augments), `fit_head` runs the
    frozen backbone once per trial over the training and validation images and trains the
    head on those cached features, so head epochs 2..N never run the backbone; phase 1 of
    a `full` trial does the same. With `feature_cache`, the features are kept on disk, keyed
    by the backbone's weights and the data (`kfound.features`), so every trial on the same
    pretrained backbone and image size reads the first one's; a randomly initialised
    backbone differs in every trial, and computes its own. The decoded images are shared
    too: the data is loaded once per image size, and a tuned batch size rebatches it
    (`kfound.data.rebatch`).

    Head trials share their pretrained backbone too: a head trial never changes it (it is
    frozen, its BatchNorm layers included), so it is built and loaded once per backbone,
    weights, image size and `alpha`, and every later head trial wraps a new head around
    it (a weights file counts as changed when its size or modification time does). Such a
    trial checkpoints its head alone, not another copy of the backbone. Such trials also
    train their heads on one compiled copy (`kfound.compiled_head.CompiledHead`), so that
    Keras traces its train and test functions once, not once per trial, with the results
    of freshly compiled heads. A `full` trial,
    which trains its backbone, and a randomly initialised one get their own, and
    checkpoint the whole classifier.

    An image size below a backbone's minimum, or `alpha` for a backbone outside the
    MobileNet family, fails that trial with `backbones.build_backbone`'s error.

    Args:
        dataset: `"embedded"`, `"tfds:NAME"` or `"folder:PATH"` (see `kfound.data`).
            It is loaded now, so a bad dataset fails before any trial.
        space: a `kfound.tuning.SearchSpace`, or `None` to tune nothing.
        epochs: the head epochs of a trial when the space does not tune `epochs`.
            Defaults to `10`.
        max_epochs: if set, caps `epochs` and `fine_tune_epochs` (the `--smoke` runs use 1).
        jit_compile: passed to `compile`. Defaults to `"auto"`.
        seed: the seed of the data's split, shuffling and resampling. Defaults to `0`.
        feature_cache: the folder of the on-disk feature cache shared by the trials, or
            `None` to keep each trial's features in memory. Defaults to `None`.
        name: the hypermodel's name.

    Example:

    >>> hypermodel = FinetuneHyperModel("embedded")
    >>> model = hypermodel.build(kt.HyperParameters())
    >>> model.input_shape, model.output_shape
    ((None, 16, 16, 3), (None, 2))
    """

    RULES = rules.MODELS["finetune"]
    HYPERPARAMETERS = RULES.hyperparameters
    OBJECTIVES = RULES.objectives
    DATASETS = RULES.datasets
    DEFAULTS = {
        "learning_rate": 1e-3,
        "batch_size": 32,
        "dropout": 0.2,
        "optimizer": "adam",
        "state": "head",
        "fine_tune_learning_rate": 1e-5,  # kfound.finetune's (keras.io's), for ImageNet
        "fine_tune_epochs": 10,
        "unfreeze_from": 0.0,  # the whole backbone
        "backbone": backbones.SMALL_BACKBONE,
        "alpha": None,  # the backbone's own
        "image_size": None,  # the backbone's default (backbones.default_image_size)
        "weights": "none",
    }

    def __init__(self, dataset, space=None, epochs=10, max_epochs=None, jit_compile="auto",
                 seed=0, feature_cache=None, name=None):
        super().__init__(space=space, epochs=epochs, max_epochs=max_epochs,
                         jit_compile=jit_compile, name=name)
        self.dataset = dataset
        self.feature_cache = feature_cache
        self.seed = seed
        self._loaded = {}  # image size -> kfound.data.ImageData
        self._rebatched = {}  # (image size, batch size) -> kfound.data.ImageData
        self._classifier = None  # the Classifier of the last model `build` made
        # (key, backbone, record, weights digest): `_backbone`
        self._shared_backbone = (None, None, None, None)
        self._compiled_head = CompiledHead()  # what the shared backbone's head trials train
        defaults = self.declare_hyperparameters(kt.HyperParameters())
        loaded = self.data(defaults)
        self.num_classes = loaded.num_classes
        self.class_names = list(loaded.class_names)

    def data(self, hp):
        """The trial's `kfound.data.ImageData`: loaded once per image size, and rebatched
        once per other batch size."""
        size = self._image_size(hp)
        if size not in self._loaded:
            data = kdata.load_image_data(
                self.dataset, size, batch_size=self.DEFAULTS["batch_size"], seed=self.seed)
            # DataParallel: every batch, each pass's last one too, splits evenly.
            data.trim_to_multiple(distribution.data_parallel_devices())
            self._loaded[size] = data
        data = self._loaded[size]
        batch_size = self.value(hp, "batch_size")
        if batch_size == data.batch_size:
            return data
        if (size, batch_size) not in self._rebatched:
            self._rebatched[size, batch_size] = kdata.rebatch(data, batch_size)
        return self._rebatched[size, batch_size]

    def _image_size(self, hp):
        """The trial's image size: its own, or its backbone's default."""
        return self.value(hp, "image_size") or backbones.default_image_size(
            self.value(hp, "backbone"))

    def build(self, hp):
        backbone_name = self.value(hp, "backbone")
        with distribution.scope():  # DataParallel under JAX with several devices.
            self._classifier = finetune.Classifier(self._backbone(hp), backbone_name,
                                                   self.num_classes,
                                                   dropout=self.value(hp, "dropout"))
        return self._classifier.model

    def _backbone_arguments(self, hp):
        """The trial's backbone as `build_backbone` takes it: name, weights, size, alpha."""
        weights, alpha = self.value(hp, "weights"), self.value(hp, "alpha")
        return (self.value(hp, "backbone"), None if weights == "none" else weights,
                self._image_size(hp), None if alpha is None else float(alpha))

    def _shared_key(self, hp):
        """What a head trial's shared pretrained backbone is built from, or `None`.

        `None` for a trial that builds its own backbone: a `full` one, or a randomly
        initialised one.
        """
        name, weights, size, alpha = self._backbone_arguments(hp)
        if weights is None or self.value(hp, "state") != "head":
            return None
        stat = os.stat(weights) if os.path.isfile(weights) else None
        version = None if stat is None else (stat.st_size, stat.st_mtime_ns)
        return (name, weights, version, size, alpha)

    def _backbone(self, hp):
        """The trial's backbone: built, or a head trial's shared pretrained one."""
        key = self._shared_key(hp)
        if key is not None and key == self._shared_backbone[0]:
            return self._shared_backbone[1]
        name, weights, size, alpha = self._backbone_arguments(hp)
        backbone = backbones.build_backbone(name, weights=weights, image_size=size, alpha=alpha)
        if key is not None:  # one kept: a search rarely tunes it
            # What a trial on it records beside its checkpoint (`load_trial`): its weights
            # by content, not by the file's time, which a copy to another machine changes.
            digest = features.weights_digest(backbone)
            record = json.dumps({"backbone": name, "weights": weights, "image_size": size,
                                 "alpha": alpha, "weights_sha256": digest})
            self._shared_backbone = (key, backbone, record, digest)
        return backbone

    def load_trial(self, hp, checkpoint):
        """A trial's trained classifier: `build(hp)`, then the trial's best-epoch weights.

        Our tuners' `load_model` (behind `tuner.get_best_models()`) calls this. A head
        trial on a pretrained backbone checkpoints its head alone (`fit`): the rebuilt
        classifier's backbone is loaded from the same weights file, whose weights must be
        those the trial recorded beside its checkpoint (by content). Any other checkpoint
        holds the whole classifier.

        Args:
            hp: the trial's `keras_tuner.HyperParameters`.
            checkpoint: the trial's checkpoint (a `.weights.h5` file).

        Returns:
            The classifier, raw `[0, 255]` images -> class probabilities.

        Raises:
            ValueError: if the backbone's weights file holds other weights than it did in
                the trial.
        """
        model = self.build(hp)
        key = self._shared_key(hp)
        record = os.path.join(os.path.dirname(os.fspath(checkpoint)), BACKBONE_RECORD)
        if key is None or not os.path.exists(record):  # no record: a whole classifier's
            model.load_weights(checkpoint)
            return model
        with open(record, encoding="utf-8") as f:
            recorded = f.read(MAX_RECORD_BYTES)
        if recorded != self._shared_backbone[2]:
            raise ValueError(
                f"Argument `weights`: the checkpoint {checkpoint} holds a head trained on "
                f"other backbone weights ({recorded[:300]}) than the file holds now "
                f"({self._shared_backbone[2]}), so the trial's classifier can't be rebuilt. "
                "Restore the file, or search again with `--overwrite`. "
                f"Received: weights={self.value(hp, 'weights')!r}"
            )
        self._classifier.head.load_weights(checkpoint)
        return model

    def fit(self, hp, model, *args, callbacks=None, verbose="auto", **kwargs):
        """Trains `model` (the last `build`'s) in the trial's state on the space's dataset.

        Returns:
            A `keras.callbacks.History` of every epoch (both phases of `full`).
        """
        if args or kwargs:
            given = ", ".join([*(type(a).__name__ for a in args), *kwargs])
            raise ValueError(
                "FinetuneHyperModel loads its dataset itself and sets its own epochs: "
                "`tuner.search` takes no data, epochs or other fit arguments (Hyperband's "
                f"epoch schedule is not supported). Received: {given}"
            )
        if self._classifier is None or model is not self._classifier.model:
            raise ValueError("Argument `model` must be the model this hypermodel's `build` "
                             f"returned last. Received: model={model.name!r}")
        classifier = self._classifier
        # KerasTuner's checkpoint saves the model being fit, which on cached features is
        # the head. A head trial on a pretrained backbone keeps it so (its backbone is the
        # loaded one; `load_trial` rebuilds it), and fits the shared compiled copy of its
        # head; any other trial checkpoints the whole classifier, which shares the head.
        shared = self._shared_key(hp) is not None
        target = None if shared else model
        record, digest = self._shared_backbone[2:] if shared else (None, None)
        callbacks = [_BestEpochOnce(c, target, record=record)
                     if _compat.is_best_epoch_checkpoint(c) else c for c in callbacks or []]
        options = finetune.TrainingOptions(
            learning_rate=self.value(hp, "learning_rate"), optimizer=self.value(hp, "optimizer"),
            callbacks=callbacks, jit_compile=self.jit_compile, verbose=verbose,
            log=print if verbose else lambda message: None,
        )
        distribution.check_batch_size(self.value(hp, "batch_size"))
        data = self.data(hp)
        epochs = self.capped(self.value(hp, "epochs"))
        with distribution.scope():
            if self.value(hp, "state") == "head":
                # The shared backbone is frozen: its digest, taken once, keys its features.
                history = finetune.fit_head(
                    classifier, data, epochs=epochs, options=options,
                    feature_cache=self.feature_cache, backbone_digest=digest,
                    compiled_head=self._compiled_head if shared else None)
            else:
                history = finetune.fit_full(
                    classifier, data, epochs=epochs, options=options,
                    feature_cache=self.feature_cache,
                    fine_tune_epochs=self.capped(self.value(hp, "fine_tune_epochs")),
                    fine_tune_learning_rate=self.value(hp, "fine_tune_learning_rate"),
                    unfreeze_from=float(self.value(hp, "unfreeze_from")),
                )
        result = keras.callbacks.History()
        result.epoch = [e - 1 for e in history["epoch"]]
        result.history = {k: v for k, v in history.items() if k not in ("epoch", "phase")}
        return result


class _BestEpochOnce(keras.callbacks.Callback):
    """KerasTuner's best-epoch checkpoint of a model, written once, when the fit ends.

    `SaveBestEpoch` writes the weights of the model being fit at every epoch that improves
    the objective; a whole classifier's weights file costs far more than an epoch of a
    head on cached features. This keeps the best epoch's weights of `model` (the
    classifier, which shares the head), or of the model being fit when `model` is `None`
    (a head trial's head, or its compiled copy), in memory, by the checkpoint's own
    objective and `best_value`, and writes them to its `filepath` when a fit ends (both
    phases of `full` included), with `record` (the text that
    `FinetuneHyperModel.load_trial` checks), if given, in `BACKBONE_RECORD` beside it.
    The model is left with its last epoch's weights, as with `SaveBestEpoch`.
    """

    def __init__(self, checkpoint, model=None, record=None):
        super().__init__()
        self.checkpoint = checkpoint
        self.saved_model = model
        self.record = record
        self.best_weights = None

    @property
    def target(self):
        return self.model if self.saved_model is None else self.saved_model

    def on_epoch_end(self, epoch, logs=None):
        objective = self.checkpoint.objective
        if objective.has_value(logs):
            value = objective.get_value(logs)
            if not objective.better_than(value, self.checkpoint.best_value):
                return
            self.checkpoint.best_value = value
        self.best_weights = self.target.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is None:
            return
        if self.record is not None:  # first, so that no head's checkpoint lacks its record
            folder = os.path.dirname(os.fspath(self.checkpoint.filepath))
            io_utils.write_text(os.path.join(folder, BACKBONE_RECORD), self.record)
        last = self.target.get_weights()
        self.target.set_weights(self.best_weights)
        try:
            self.target.save_weights(self.checkpoint.filepath)
        finally:
            self.target.set_weights(last)

"""Built-in hypermodels: a multilayer perceptron, a small CNN, and fine-tuning a backbone.

All are `keras_tuner.HyperModel`s for classification. `build(hp)` makes the model;
`fit(hp, model, ...)` trains it, so the batch size and the number of epochs are tunable
too. A hyperparameter that the search space does not list keeps the model's default
(`DEFAULTS`), so a space file names only what it tunes.

Datasets: `mlp` and `cnn` take `digits` (arrays in memory, passed to `tuner.search`);
`finetune` takes the image datasets of `kfound.data` (`embedded`, `tfds:NAME`,
`folder:PATH`), which it loads itself. Each class lists its kinds in `DATASETS`.
"""

import dataclasses
import os

import keras
import keras_tuner as kt
from keras_tuner.src.engine.tuner_utils import SaveBestEpoch

from kfound import data as kdata
from kfound import finetune
from kfound.initializers import SparseInitializer
from kfound.layers import normalization_block

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam", "adagrad")
NORMALIZATIONS = ("none", "batch", "group", "lrn", "weight")
INITIALIZERS = ("sparse",)  # kfound's, besides every Keras initializer name
SPARSE_CONNECTIONS = 15  # Martens (2010), capped by the fan-in
GROUPS = 32  # GroupNorm's groups (Wu & He, 2018), reduced to a divisor of the channels


@dataclasses.dataclass(frozen=True)
class _Rule:
    """What values a canonical hyperparameter takes."""

    kind: type  # float, int, str or bool
    expected: str  # says what a value must be, for messages
    check: object = None  # a predicate on one value, or None

    def problem(self, entry):
        """Returns what is wrong with a `space.Hyperparameter` for this rule, or `None`."""
        numeric = self.kind in (float, int)
        if entry.type == "choice":
            kinds_ok = all(
                (isinstance(v, (int, float)) and not isinstance(v, bool)) if numeric
                else isinstance(v, self.kind) for v in entry.values
            )
            if self.kind is int:
                kinds_ok = kinds_ok and all(isinstance(v, int) for v in entry.values)
        else:
            kinds_ok = entry.type == {float: "float", int: "int", str: None, bool: "bool"}[
                self.kind]
        if not kinds_ok:
            types = {float: "float (or a choice of numbers)", int: "int (or a choice of "
                     "integers)", str: "choice of strings", bool: "bool"}[self.kind]
            return f"takes a {types}, not a {entry.type} entry like this one"
        for value in entry.candidate_values():
            if self.check is not None and not self.check(value):
                return f"value {value!r} is invalid: expected {self.expected}"
        return None


def _is_keras(getter):
    def check(name):
        try:
            getter(name)
        except (ValueError, TypeError):
            return False
        return True

    return check


_RULES = {
    "learning_rate": _Rule(float, "a number > 0", lambda v: v > 0),
    "epochs": _Rule(int, "an integer >= 1", lambda v: v >= 1),
    "layers": _Rule(int, "an integer >= 1", lambda v: v >= 1),
    "units": _Rule(int, "an integer >= 1", lambda v: v >= 1),
    "activation": _Rule(str, "a Keras activation name (relu, tanh, gelu, ...)",
                        _is_keras(keras.activations.get)),
    "batch_size": _Rule(int, "an integer >= 1", lambda v: v >= 1),
    "optimizer": _Rule(str, f"one of {list(OPTIMIZERS)}", lambda v: v in OPTIMIZERS),
    "dropout": _Rule(float, "a rate in [0, 1)", lambda v: 0 <= v < 1),
    "normalization": _Rule(str, f"one of {list(NORMALIZATIONS)}", lambda v: v in NORMALIZATIONS),
    "initializer": _Rule(str, "`sparse` or a Keras initializer name (glorot_uniform, "
                         "he_normal, ...)",
                         lambda v: v in INITIALIZERS or _is_keras(keras.initializers.get)(v)),
    "use_bias": _Rule(bool, "true or false"),
}


class ClassifierHyperModel(kt.HyperModel):
    """Base class of the built-in classification hypermodels.

    Subclasses implement `hidden(x, values)`, the layers between the input and the
    softmax head. The hyperparameters listed in `space` are tuned; the others keep
    `DEFAULTS`.

    Args:
        input_shape: the shape of one example, e.g. `(8, 8, 1)`.
        num_classes: the number of classes.
        space: a `kfound.tuning.SearchSpace`, or `None` to tune nothing.
        epochs: the epochs of a trial when the space does not tune `epochs`.
            Defaults to `10`.
        max_epochs: if set, caps the epochs of every trial (the `--smoke` runs use 1).
        jit_compile: passed to `model.compile`. Defaults to `"auto"` (XLA on GPUs).
        name: the hypermodel's name.
    """

    HYPERPARAMETERS = tuple(_RULES)
    OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}
    DATASETS = ("digits",)
    DEFAULTS = {
        "learning_rate": 1e-3,
        "layers": 2,
        "units": 64,
        "activation": "relu",
        "batch_size": 32,
        "optimizer": "adam",
        "dropout": 0.0,
        "normalization": "none",
        "initializer": "glorot_uniform",
        "use_bias": True,
    }

    def __init__(self, input_shape, num_classes, space=None, epochs=10, max_epochs=None,
                 jit_compile="auto", name=None):
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                "Argument `num_classes` must be an integer >= 2. "
                f"Received: num_classes={num_classes}"
            )
        super().__init__(name=name)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.space = space
        self.epochs = epochs
        self.max_epochs = max_epochs
        self.jit_compile = jit_compile

    @classmethod
    def check_hyperparameter(cls, entry):
        """Returns what is wrong with a `space.Hyperparameter` for this model, or `None`."""
        return _RULES[entry.name].problem(entry)

    def declare_hyperparameters(self, hp):
        if self.space is not None:
            self.space.declare(hp)

    def value(self, hp, name):
        """The trial's value of a canonical hyperparameter, or the model's default."""
        if self.space is not None and name in self.space.hyperparameters:
            return self.space.hyperparameters[name].declare(hp)
        return self.epochs if name == "epochs" else self.DEFAULTS[name]

    def build(self, hp):
        values = {name: self.value(hp, name) for name in self.DEFAULTS if name != "batch_size"}
        inputs = keras.Input(shape=self.input_shape)
        x = self.hidden(inputs, values)
        # The head computes in float32, so that softmax is stable under mixed precision.
        outputs = keras.layers.Dense(self.num_classes, activation="softmax", dtype="float32")(x)
        model = keras.Model(inputs, outputs, name=self.name)
        optimizer = keras.optimizers.get({
            "class_name": values["optimizer"],
            "config": {"learning_rate": values["learning_rate"]},
        })
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=self.jit_compile)
        return model

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model`; Hyperband's `epochs`/`initial_epoch` in `kwargs` take precedence."""
        epochs = kwargs.pop("epochs", None) or self.value(hp, "epochs")
        if self.max_epochs is not None:
            epochs = min(epochs, self.max_epochs)
            kwargs["initial_epoch"] = min(kwargs.get("initial_epoch", 0), epochs - 1)
        return model.fit(*args, batch_size=self.value(hp, "batch_size"), epochs=epochs, **kwargs)

    @staticmethod
    def initializer(name, fan_in):
        """A Keras initializer name as is; `sparse` as kfound's `SparseInitializer` with
        `min(15, fan_in)` nonzero incoming weights per unit."""
        if name == "sparse":
            return SparseInitializer(connections=min(SPARSE_CONNECTIONS, fan_in))
        return name

    def block(self, layer, x, values):
        """`layer` (a Dense or Conv2D), then normalization, activation and dropout.

        The layers, their order and the bias are `kfound.layers.normalization_block`'s
        (the papers' placements: LRN after the activation, no bias before BatchNorm or
        GroupNorm, `group_count(channels, 32)` groups).
        """
        for block_layer in normalization_block(
            values["normalization"], layer, values["activation"], groups=GROUPS
        ):
            x = block_layer(x)
        if values["dropout"] > 0:
            x = keras.layers.Dropout(values["dropout"])(x)
        return x


class MLPHyperModel(ClassifierHyperModel):
    """A multilayer perceptron: `layers` x (Dense(`units`), normalization, activation, dropout).

    Hyperparameters (canonical names): `learning_rate`, `epochs`, `layers`, `units` (per
    hidden layer), `activation`, `batch_size`, `optimizer`, `dropout`, `normalization`,
    `initializer` (of the Dense kernels) and `use_bias`.

    Args: as `ClassifierHyperModel`.

    Example:

    >>> hypermodel = MLPHyperModel(input_shape=(64,), num_classes=10)
    >>> model = hypermodel.build(kt.HyperParameters())
    >>> model.output_shape
    (None, 10)
    """

    def hidden(self, inputs, values):
        x = keras.layers.Flatten()(inputs)
        for _ in range(values["layers"]):
            initializer = self.initializer(values["initializer"], x.shape[-1])
            dense = keras.layers.Dense(values["units"], use_bias=values["use_bias"],
                                       kernel_initializer=initializer)
            x = self.block(dense, x, values)
        return x


class CNNHyperModel(ClassifierHyperModel):
    """A small CNN: `layers` x (Conv2D 3x3 with `units` filters, normalization, activation,
    dropout, 2x2 max-pooling while the feature map is at least 2x2), then global average
    pooling.

    Hyperparameters: as `MLPHyperModel`, with `units` the filters of each convolution.

    Args: as `ClassifierHyperModel`; `input_shape` is `(height, width, channels)`.

    Example:

    >>> hypermodel = CNNHyperModel(input_shape=(8, 8, 1), num_classes=10)
    >>> model = hypermodel.build(kt.HyperParameters())
    >>> model.output_shape
    (None, 10)
    """

    def hidden(self, inputs, values):
        x = inputs
        for _ in range(values["layers"]):
            initializer = self.initializer(values["initializer"], 9 * x.shape[-1])
            conv = keras.layers.Conv2D(values["units"], 3, padding="same",
                                       use_bias=values["use_bias"],
                                       kernel_initializer=initializer)
            x = self.block(conv, x, values)
            if x.shape[1] >= 2 and x.shape[2] >= 2:
                x = keras.layers.MaxPooling2D(2)(x)
        return keras.layers.GlobalAveragePooling2D()(x)


FINETUNE_STATES = ("head", "full")
WEIGHTS = ("none", "imagenet")  # or the path of a weights file

_FINETUNE_RULES = {
    "state": _Rule(str, f"one of {list(FINETUNE_STATES)}", lambda v: v in FINETUNE_STATES),
    "fine_tune_learning_rate": _Rule(float, "a number > 0", lambda v: v > 0),
    "fine_tune_epochs": _Rule(int, "an integer >= 1", lambda v: v >= 1),
    "unfreeze_from": _Rule(float, "a fraction of the backbone's depth in [0, 1)",
                           lambda v: 0 <= v < 1),
    "backbone": _Rule(str, "SmallConvNet or a keras.applications name (MobileNetV2, ...)",
                      lambda v: v in finetune.backbone_names()),
    "alpha": _Rule(float, "a width multiplier > 0 (MobileNet family)", lambda v: v > 0),
    "image_size": _Rule(int, f"an integer >= {finetune.SMALL_BACKBONE_MIN_SIZE}",
                        lambda v: v >= finetune.SMALL_BACKBONE_MIN_SIZE),
    "weights": _Rule(str, "none, imagenet, or the path of an existing weights file",
                     lambda v: v in WEIGHTS or os.path.isfile(v)),
}


class FinetuneHyperModel(kt.HyperModel):
    """Fine-tunes a backbone with `kfound.finetune`: head-only or full, on `kfound.data`.

    Each trial builds a `kfound.finetune.Classifier` (backbone, pooling, dropout, dense
    head) and trains it in one of two states of seed §3.7.4: `head` (`finetune.fit_head`,
    the backbone frozen) or `full` (`finetune.fit_full`: the head first, then the backbone
    unfrozen from `unfreeze_from` at `fine_tune_learning_rate`). The trial's score is its
    best epoch over both phases, and its checkpoint is the whole classifier at that epoch,
    so `tuner.get_best_models()` returns a model from raw `[0, 255]` images.

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
    a `full` trial does the same. The cache lives for one trial: each trial builds its own
    backbone (random initialisation differs, and `backbone`, `alpha`, `image_size` or
    `weights` may be tuned), so features are not shared between trials. The decoded images
    are: the data is loaded once per image size, and a tuned batch size rebatches it
    (`kfound.data.rebatch`).

    An image size below a backbone's minimum, or `alpha` for a backbone outside the
    MobileNet family, fails that trial with `finetune.build_backbone`'s error.

    Args:
        dataset: `"embedded"`, `"tfds:NAME"` or `"folder:PATH"` (see `kfound.data`).
            It is loaded now, so a bad dataset fails before any trial.
        space: a `kfound.tuning.SearchSpace`, or `None` to tune nothing.
        epochs: the head epochs of a trial when the space does not tune `epochs`.
            Defaults to `10`.
        max_epochs: if set, caps `epochs` and `fine_tune_epochs` (the `--smoke` runs use 1).
        jit_compile: passed to `compile`. Defaults to `"auto"`.
        seed: the seed of the data's split, shuffling and resampling. Defaults to `0`.
        name: the hypermodel's name.

    Example:

    >>> hypermodel = FinetuneHyperModel("embedded")
    >>> model = hypermodel.build(kt.HyperParameters())
    >>> model.input_shape, model.output_shape
    ((None, 16, 16, 3), (None, 2))
    """

    HYPERPARAMETERS = ("learning_rate", "epochs", "batch_size", "dropout", "optimizer",
                       *_FINETUNE_RULES)
    OBJECTIVES = ClassifierHyperModel.OBJECTIVES
    DATASETS = ("embedded", "tfds:NAME", "folder:PATH")
    DEFAULTS = {
        "learning_rate": 1e-3,
        "batch_size": 32,
        "dropout": 0.2,
        "optimizer": "adam",
        "state": "head",
        "fine_tune_learning_rate": 1e-5,  # kfound.finetune's (keras.io's), for ImageNet
        "fine_tune_epochs": 10,
        "unfreeze_from": 0.0,  # the whole backbone
        "backbone": finetune.SMALL_BACKBONE,
        "alpha": None,  # the backbone's own
        "image_size": None,  # the backbone's default (finetune.default_image_size)
        "weights": "none",
    }

    def __init__(self, dataset, space=None, epochs=10, max_epochs=None, jit_compile="auto",
                 seed=0, name=None):
        super().__init__(name=name)
        self.dataset = dataset
        self.space = space
        self.epochs = epochs
        self.max_epochs = max_epochs
        self.jit_compile = jit_compile
        self.seed = seed
        self._loaded = {}  # image size -> kfound.data.ImageData
        self._classifier = None  # the Classifier of the last model `build` made
        defaults = self.declare_hyperparameters(kt.HyperParameters())
        loaded = self.data(defaults)
        self.num_classes = loaded.num_classes
        self.class_names = list(loaded.class_names)

    @classmethod
    def check_hyperparameter(cls, entry):
        """Returns what is wrong with a `space.Hyperparameter` for this model, or `None`."""
        return {**_RULES, **_FINETUNE_RULES}[entry.name].problem(entry)

    def declare_hyperparameters(self, hp):
        if self.space is not None:
            self.space.declare(hp)
        return hp

    def value(self, hp, name):
        """The trial's value of a hyperparameter, or the model's default."""
        if self.space is not None and name in self.space.hyperparameters:
            return self.space.hyperparameters[name].declare(hp)
        return self.epochs if name == "epochs" else self.DEFAULTS[name]

    def data(self, hp):
        """The trial's `kfound.data.ImageData`: loaded once per image size, rebatched."""
        size = self.value(hp, "image_size") or finetune.default_image_size(
            self.value(hp, "backbone"))
        if size not in self._loaded:
            self._loaded[size] = kdata.load_image_data(
                self.dataset, size, batch_size=self.DEFAULTS["batch_size"], seed=self.seed)
        data = self._loaded[size]
        batch_size = self.value(hp, "batch_size")
        return data if batch_size == data.batch_size else kdata.rebatch(data, batch_size)

    def build(self, hp):
        backbone_name = self.value(hp, "backbone")
        weights = self.value(hp, "weights")
        alpha = self.value(hp, "alpha")
        backbone = finetune.build_backbone(
            backbone_name, weights=None if weights == "none" else weights,
            image_size=self.data(hp).image_size,
            alpha=None if alpha is None else float(alpha),
        )
        self._classifier = finetune.Classifier(backbone, backbone_name, self.num_classes,
                                               dropout=self.value(hp, "dropout"))
        return self._classifier.model

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
        # KerasTuner's checkpoint saves the model being fit; on cached features that is the
        # head alone, so it is pointed at the whole classifier, which shares the head.
        callbacks = [_WithModel(c, model) if isinstance(c, SaveBestEpoch) else c
                     for c in callbacks or []]
        common = {
            "callbacks": callbacks, "jit_compile": self.jit_compile, "verbose": verbose,
            "log": print if verbose else lambda message: None,
            "optimizer": self.value(hp, "optimizer"),
        }
        data = self.data(hp)
        epochs = self._capped(self.value(hp, "epochs"))
        learning_rate = self.value(hp, "learning_rate")
        if self.value(hp, "state") == "head":
            history = finetune.fit_head(classifier, data, epochs, learning_rate, **common)
        else:
            history = finetune.fit_full(
                classifier, data, epochs, self._capped(self.value(hp, "fine_tune_epochs")),
                learning_rate, self.value(hp, "fine_tune_learning_rate"),
                unfreeze_from=float(self.value(hp, "unfreeze_from")), **common,
            )
        result = keras.callbacks.History()
        result.epoch = [e - 1 for e in history["epoch"]]
        result.history = {k: v for k, v in history.items() if k not in ("epoch", "phase")}
        return result

    def _capped(self, epochs):
        return epochs if self.max_epochs is None else min(epochs, self.max_epochs)


class _WithModel(keras.callbacks.Callback):
    """Runs `callback`'s epoch ends with `model` as its model, whatever model is fit."""

    def __init__(self, callback, model):
        super().__init__()
        self.callback = callback
        self.target = model

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(self.target)

    def on_epoch_end(self, epoch, logs=None):
        self.callback.on_epoch_end(epoch, logs)


HYPERMODELS = {"mlp": MLPHyperModel, "cnn": CNNHyperModel, "finetune": FinetuneHyperModel}

"""Built-in hypermodels: a multilayer perceptron and a small CNN; the shared base of all three.

All are `keras_tuner.HyperModel`s for classification. `build(hp)` makes the model;
`fit(hp, model, ...)` trains it, so the batch size and the number of epochs are tunable
too. A hyperparameter that the search space does not list keeps the model's default
(`DEFAULTS`), so a space file names only what it tunes.

Datasets: `mlp` and `cnn` take `digits` (arrays in memory, passed to `tuner.search`);
`finetune` (`kfound.tuning.finetune_hypermodel`, which needs TensorFlow) takes the image
datasets of `kfound.data` (`embedded`, `tfds:NAME`, `folder:PATH`), which it loads
itself. Each model's rules are in `kfound.tuning.rules`. This module does not import
TensorFlow, so an `mlp` or `cnn` search runs under JAX or torch without it.
"""

import importlib

import keras
import keras_tuner as kt

from kfound import distribution, prebuild
from kfound.initializers import SparseInitializer
from kfound.layers import normalization_block
from kfound.tuning import rules

SPARSE_CONNECTIONS = 15  # Martens (2010), capped by the fan-in
GROUPS = 32  # GroupNorm's groups (Wu & He, 2018), reduced to a divisor of the channels


class SpaceHyperModel(kt.HyperModel):
    """Base class of the built-in hypermodels: a search space's values, or the defaults.

    Subclasses set `RULES` (a `kfound.tuning.rules.ModelRules`) and `DEFAULTS` (the value
    of every hyperparameter the space does not tune; `epochs` is the `epochs` argument).

    Args:
        space: a `kfound.tuning.SearchSpace`, or `None` to tune nothing.
        epochs: the epochs of a trial when the space does not tune `epochs`.
            Defaults to `10`.
        max_epochs: if set, caps the epochs of every trial (the `--smoke` runs use 1).
        jit_compile: passed to `model.compile`. Defaults to `"auto"` (XLA on GPUs).
        name: the hypermodel's name.
    """

    RULES = None
    DEFAULTS = {}

    def __init__(self, space=None, epochs=10, max_epochs=None, jit_compile="auto", name=None):
        super().__init__(name=name)
        self.space = space
        self.epochs = epochs
        self.max_epochs = max_epochs
        self.jit_compile = jit_compile

    @classmethod
    def check_hyperparameter(cls, entry):
        """Returns what is wrong with a `space.Hyperparameter` for this model, or `None`."""
        return cls.RULES.problem(entry)

    def declare_hyperparameters(self, hp):
        """Registers the space's hyperparameters in `hp`; returns `hp`."""
        if self.space is not None:
            self.space.declare(hp)
        return hp

    def value(self, hp, name):
        """The trial's value of a hyperparameter, or the model's default."""
        if self.space is not None and name in self.space.hyperparameters:
            return self.space.hyperparameters[name].declare(hp)
        return self.epochs if name == "epochs" else self.DEFAULTS[name]

    def capped(self, epochs):
        """`epochs`, capped at `max_epochs` when that is set."""
        return epochs if self.max_epochs is None else min(epochs, self.max_epochs)


class ClassifierHyperModel(SpaceHyperModel):
    """Base class of the `mlp` and `cnn` hypermodels.

    Subclasses implement `hidden(x, values)`, the layers between the input and the
    softmax head. The hyperparameters listed in `space` are tuned; the others keep
    `DEFAULTS`.

    Args:
        input_shape: the shape of one example, e.g. `(8, 8, 1)`.
        num_classes: the number of classes.
        space, epochs, max_epochs, jit_compile, name: as `SpaceHyperModel`.
    """

    RULES = rules.MODELS["mlp"]
    HYPERPARAMETERS = RULES.hyperparameters
    OBJECTIVES = RULES.objectives
    DATASETS = RULES.datasets
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
        super().__init__(space=space, epochs=epochs, max_epochs=max_epochs,
                         jit_compile=jit_compile, name=name)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def build(self, hp):
        with distribution.scope():  # DataParallel under JAX with several devices.
            return self._make_model(hp)

    def _make_model(self, hp):
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
        # A metric object, not "accuracy", so that `fit` traces once (`kfound.prebuild`).
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      jit_compile=self.jit_compile)
        return model

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model`; Hyperband's `epochs`/`initial_epoch` in `kwargs` take precedence."""
        epochs = self.capped(kwargs.pop("epochs", None) or self.value(hp, "epochs"))
        if "initial_epoch" in kwargs:
            kwargs["initial_epoch"] = min(kwargs["initial_epoch"], epochs - 1)
        batch_size = self.value(hp, "batch_size")
        distribution.check_batch_size(batch_size)
        with distribution.scope():
            prebuild.build_optimizer(model)
            return model.fit(*args, batch_size=batch_size, epochs=epochs, **kwargs)

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

    RULES = rules.MODELS["cnn"]

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


HYPERMODELS = {
    "mlp": "kfound.tuning.hypermodels.MLPHyperModel",
    "cnn": "kfound.tuning.hypermodels.CNNHyperModel",
    "finetune": "kfound.tuning.finetune_hypermodel.FinetuneHyperModel",
}


def hypermodel_class(model):
    """The hypermodel class of a space's `model` (`mlp`, `cnn` or `finetune`).

    The `finetune` class is imported on demand, since it imports TensorFlow.
    """
    module, _, name = HYPERMODELS[model].rpartition(".")
    return getattr(importlib.import_module(module), name)



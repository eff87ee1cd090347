"""What each built-in hypermodel tunes: its hyperparameters, datasets, objectives and rules.

`kfound.tuning.space` checks a space file against these rules, and the hypermodels of
`kfound.tuning.hypermodels` take their names from them. This module imports neither the
hypermodels nor TensorFlow, so reading a space file for `mlp` or `cnn` does not either;
the `finetune` rules import `kfound.backbones` (for the `keras.applications` names) when a
`finetune` space is checked.
"""

import dataclasses
import functools
import os

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam", "adagrad")
NORMALIZATIONS = ("none", "batch", "group", "lrn", "weight")
INITIALIZERS = ("sparse",)  # kfound's, besides every Keras initializer name
FINETUNE_STATES = ("head", "full")
WEIGHTS = ("none", "imagenet")  # or the path of a weights file
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}


@dataclasses.dataclass(frozen=True)
class Rule:
    """What values a canonical hyperparameter takes.

    Args:
        kind: `float`, `int`, `str` or `bool`.
        expected: what a value must be, for messages.
        check: a predicate on one value, or `None`.
    """

    kind: type
    expected: str
    check: object = None

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


def _keras_name(kind):
    """A predicate: is a string a name that `keras.<kind>.get` knows?"""

    def check(name):
        import keras  # Imported when a space names an activation or initializer.

        try:
            getattr(keras, kind).get(name)
        except (ValueError, TypeError):
            return False
        return True

    return check


_is_initializer = _keras_name("initializers")

CLASSIFIER_RULES = {
    "learning_rate": Rule(float, "a number > 0", lambda v: v > 0),
    "epochs": Rule(int, "an integer >= 1", lambda v: v >= 1),
    "layers": Rule(int, "an integer >= 1", lambda v: v >= 1),
    "units": Rule(int, "an integer >= 1", lambda v: v >= 1),
    "activation": Rule(str, "a Keras activation name (relu, tanh, gelu, ...)",
                       _keras_name("activations")),
    "batch_size": Rule(int, "an integer >= 1", lambda v: v >= 1),
    "optimizer": Rule(str, f"one of {list(OPTIMIZERS)}", lambda v: v in OPTIMIZERS),
    "dropout": Rule(float, "a rate in [0, 1)", lambda v: 0 <= v < 1),
    "normalization": Rule(str, f"one of {list(NORMALIZATIONS)}", lambda v: v in NORMALIZATIONS),
    "initializer": Rule(str, "`sparse` or a Keras initializer name (glorot_uniform, "
                        "he_normal, ...)", lambda v: v in INITIALIZERS or _is_initializer(v)),
    "use_bias": Rule(bool, "true or false"),
}

FINETUNE_HYPERPARAMETERS = (
    "learning_rate", "epochs", "batch_size", "dropout", "optimizer", "state",
    "fine_tune_learning_rate", "fine_tune_epochs", "unfreeze_from", "backbone", "alpha",
    "image_size", "weights",
)


def _finetune_rules():
    from kfound import backbones  # keras.applications: only a finetune space needs it.

    shared = {name: CLASSIFIER_RULES[name] for name in FINETUNE_HYPERPARAMETERS
              if name in CLASSIFIER_RULES}
    return {
        **shared,
        "state": Rule(str, f"one of {list(FINETUNE_STATES)}", lambda v: v in FINETUNE_STATES),
        "fine_tune_learning_rate": Rule(float, "a number > 0", lambda v: v > 0),
        "fine_tune_epochs": Rule(int, "an integer >= 1", lambda v: v >= 1),
        "unfreeze_from": Rule(float, "a fraction of the backbone's depth in [0, 1)",
                              lambda v: 0 <= v < 1),
        "backbone": Rule(str, "SmallConvNet or a keras.applications name (MobileNetV2, ...)",
                         lambda v: v in backbones.backbone_names()),
        "alpha": Rule(float, "a width multiplier > 0 (MobileNet family)", lambda v: v > 0),
        "image_size": Rule(int, f"an integer >= {backbones.SMALL_BACKBONE_MIN_SIZE}",
                           lambda v: v >= backbones.SMALL_BACKBONE_MIN_SIZE),
        "weights": Rule(str, "none, imagenet, or the path of an existing weights file",
                        lambda v: v in WEIGHTS or os.path.isfile(v)),
    }


@dataclasses.dataclass(frozen=True)
class ModelRules:
    """What one built-in hypermodel accepts.

    Args:
        name: the model's name in a space file (`mlp`, `cnn`, `finetune`).
        hyperparameters: the names it tunes, in canonical order.
        datasets: the kinds of dataset it takes (`digits`, `tfds:NAME`, ...).
        objectives: the metrics it reports, each with its direction.
        rules: a function returning a dict of `Rule` by hyperparameter name.
    """

    name: str
    hyperparameters: tuple
    datasets: tuple
    objectives: dict
    rules: object

    def problem(self, entry):
        """Returns what is wrong with a `space.Hyperparameter` for this model, or `None`."""
        return self.rules()[entry.name].problem(entry)


MODELS = {
    "mlp": ModelRules("mlp", tuple(CLASSIFIER_RULES), ("digits",), OBJECTIVES,
                      lambda: CLASSIFIER_RULES),
    "cnn": ModelRules("cnn", tuple(CLASSIFIER_RULES), ("digits",), OBJECTIVES,
                      lambda: CLASSIFIER_RULES),
    "finetune": ModelRules("finetune", FINETUNE_HYPERPARAMETERS,
                           ("embedded", "tfds:NAME", "folder:PATH"), OBJECTIVES,
                           functools.cache(_finetune_rules)),
}

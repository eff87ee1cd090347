"""Search-space files: a model, a dataset, an objective and the hyperparameters to tune.

A space file is YAML or JSON:

```yaml
model: mlp              # a built-in hypermodel: mlp, cnn or finetune
dataset: digits         # see below
objective: val_accuracy # direction inferred; or {name: val_loss, direction: min}
hyperparameters:
  learning_rate: {type: float, min: 1e-4, max: 1e-1, sampling: log, default: 1e-3}
  units: {type: int, min: 16, max: 128, step: 16}
  activation: {type: choice, values: [relu, tanh, gelu]}
  use_bias: {type: bool}
```

Datasets, and the models that take them (each hypermodel lists its kinds in `DATASETS`):

- `digits`, scikit-learn's bundled digits as 8x8 arrays: `mlp` and `cnn`;
- `embedded` (the offline fine-tuning task of `kfound.data`), `tfds:NAME` (a TFDS image
  classification dataset) and `folder:PATH` (a folder of images, one sub-folder per
  class): `finetune`, which loads them through `kfound.data`.

Any other pair is rejected when the file is read.

Each entry maps onto KerasTuner's `hp.Float`, `hp.Int`, `hp.Choice` or `hp.Boolean`.
Everything is checked when the file is read, before any trial runs: a bad file raises a
`ValueError` naming the file, the entry and the problem.

Space files may come from others, so reading one is bounded (size, depth, aliases,
duplicate keys): see `kfound.tuning.space_file`.
"""

import dataclasses
import math
import os

import keras_tuner as kt

from kfound.tuning import rules, space_file
from kfound.tuning.space_file import cut, show

TYPES = ("float", "int", "choice", "bool")
SAMPLINGS = ("linear", "log")
OBJECTIVE_DIRECTIONS = ("min", "max")
_TOP_LEVEL_KEYS = ("model", "dataset", "objective", "hyperparameters")
_ENTRY_KEYS = {
    "float": ("type", "min", "max", "step", "sampling", "default"),
    "int": ("type", "min", "max", "step", "sampling", "default"),
    "choice": ("type", "values", "default"),
    "bool": ("type", "default"),
}
DATASETS = ("digits", "embedded", "tfds:NAME", "folder:PATH")


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One entry of a search space, as read from a space file.

    Args:
        name: the hyperparameter's name (`learning_rate`, `units`, ...).
        type: `"float"`, `"int"`, `"choice"` or `"bool"`.
        min: the smallest value (`float` and `int`).
        max: the largest value (`float` and `int`).
        step: the spacing of values (`float` and `int`); `None` for a continuous range.
        sampling: `"linear"` or `"log"` (`float` and `int`).
        values: the options (`choice`).
        default: the value of the first grid point and of the model's
            initial build; KerasTuner's default when `None`.
    """

    name: str
    type: str
    min: float | int | None = None
    max: float | int | None = None
    step: float | int | None = None
    sampling: str = "linear"
    values: tuple | None = None
    default: object = None

    def declare(self, hp):
        """Registers this entry in a `keras_tuner.HyperParameters` and returns its value."""
        if self.type == "float":
            return hp.Float(self.name, self.min, self.max, step=self.step,
                            sampling=self.sampling, default=self.default)
        if self.type == "int":
            return hp.Int(self.name, self.min, self.max, step=self.step,
                          sampling=self.sampling, default=self.default)
        if self.type == "choice":
            return hp.Choice(self.name, list(self.values), default=self.default)
        return hp.Boolean(self.name, default=bool(self.default))

    def candidate_values(self):
        """The values to check against a model's rules: the bounds, or every option."""
        if self.type in ("float", "int"):
            return [self.min, self.max]
        if self.type == "choice":
            return list(self.values)
        return [False, True]


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A parsed, checked search-space file.

    Args:
        model: the built-in hypermodel's name.
        dataset: the dataset: `"digits"`, `"embedded"`, `"tfds:NAME"` or `"folder:PATH"`.
        objective: a `keras_tuner.Objective`.
        hyperparameters: a dict of `Hyperparameter`, by name, in file order.
        source: where the space came from, for messages.
    """

    model: str
    dataset: str
    objective: kt.Objective
    hyperparameters: dict
    source: str = "<space>"

    def declare(self, hp):
        """Registers every entry in a `keras_tuner.HyperParameters`."""
        for entry in self.hyperparameters.values():
            entry.declare(hp)
        return hp

    def grid_size(self):
        """The number of points a grid search visits (`kfound.tuning.tuners.grid_points`)."""
        from kfound.tuning.tuners import grid_points

        return sum(1 for _ in grid_points(self.declare(kt.HyperParameters())))

    def to_config(self):
        """A JSON-serializable dict that `parse_space` reads back."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "objective": {"name": self.objective.name, "direction": self.objective.direction},
            "hyperparameters": {
                name: {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in dataclasses.asdict(entry).items()
                       if k != "name" and v is not None}
                for name, entry in self.hyperparameters.items()
            },
        }


def load_space(path):
    """Reads and checks a search-space file (`.yaml`, `.yml` or `.json`).

    Args:
        path: the file's path.

    Returns:
        A `SearchSpace`.

    Raises:
        ValueError: the file is missing, unreadable, malformed or beyond the bounds of
            `kfound.tuning.space_file` (size, depth, aliases, a duplicate key). The message
            names the file, the entry and the problem.

    Example:

    >>> space = load_space("tuning/spaces/mlp.yaml")  # doctest: +SKIP
    >>> space.model, list(space.hyperparameters)[:2]  # doctest: +SKIP
    ('mlp', ['learning_rate', 'layers'])
    """
    path = os.fspath(path)
    return parse_space(space_file.read_space_file(path), source=path)


def parse_space(config, source="<space>"):
    """Checks a search-space dict (as read from a file) and returns a `SearchSpace`.

    Args:
        config: the dict, with keys `model`, `dataset`, `objective` (optional,
            defaults to `"val_accuracy"`) and `hyperparameters`.
        source: the name used in error messages, usually the file's path.

    Returns:
        A `SearchSpace`.
    """
    if not isinstance(config, dict):
        raise ValueError(
            f"{source}: a space file must hold a mapping with keys {list(_TOP_LEVEL_KEYS)}. "
            f"Received: space={show(config)}"
        )
    unknown = [k for k in config if k not in _TOP_LEVEL_KEYS]
    if unknown:
        raise ValueError(
            f"{source}: unknown key {show(unknown[0])}; expected keys {list(_TOP_LEVEL_KEYS)}. "
            f"Received: {cut(unknown[0])}={show(config[unknown[0]])}"
        )
    for key in ("model", "dataset", "hyperparameters"):
        if key not in config:
            raise ValueError(f"{source}: the key {key!r} is required. Received: {key}=None")

    model = config["model"]
    if not isinstance(model, str) or model not in rules.MODELS:
        raise ValueError(
            f"{source}: `model` must be one of {sorted(rules.MODELS)}. "
            f"Received: model={show(model)}"
        )
    model_rules = rules.MODELS[model]
    dataset = _parse_dataset(config["dataset"], model_rules, source)
    objective = _parse_objective(config.get("objective", "val_accuracy"), model_rules, source)

    raw = config["hyperparameters"]
    if not isinstance(raw, dict) or not raw:
        raise ValueError(
            f"{source}: `hyperparameters` must be a non-empty mapping of name to entry. "
            f"Received: hyperparameters={show(raw)}"
        )
    entries = {}
    for name, entry in raw.items():
        if name not in model_rules.hyperparameters:
            raise ValueError(
                f"{source}: hyperparameter {show(name)} is not used by model {model!r}; it "
                f"uses {sorted(model_rules.hyperparameters)}. "
                f"Received: {cut(name)}={show(entry)}"
            )
        parsed = _parse_entry(name, entry, source)
        problem = model_rules.problem(parsed)
        if problem:
            raise ValueError(f"{source}: hyperparameter {name!r}: {cut(problem)}. Received: "
                             f"{name}={show(entry)}")
        entries[name] = parsed
    return SearchSpace(model, dataset, objective, entries, source=str(source))


def dataset_kind(dataset):
    """The kind of a dataset specification (`"tfds:mnist"` -> `"tfds:NAME"`), or `None`."""
    if dataset in ("digits", "embedded"):
        return dataset
    for kind in ("tfds:NAME", "folder:PATH"):
        prefix = kind.split(":")[0] + ":"
        if isinstance(dataset, str) and dataset.startswith(prefix) and len(dataset) > len(prefix):
            return kind
    return None


def _parse_dataset(dataset, model_rules, source):
    kind = dataset_kind(dataset)
    if kind is None:
        raise ValueError(
            f"{source}: `dataset` must be one of {list(DATASETS)} (NAME and PATH non-empty). "
            f"Received: dataset={show(dataset)}"
        )
    if kind not in model_rules.datasets:
        takers = sorted(m for m, r in rules.MODELS.items() if kind in r.datasets)
        raise ValueError(
            f"{source}: model {model_rules.name!r} cannot search on dataset {show(dataset)}: it "
            f"takes {list(model_rules.datasets)}, and {kind} is for model {', '.join(takers)}. "
            f"Received: dataset={show(dataset)}"
        )
    if kind == "folder:PATH" and not os.path.isdir(dataset[len("folder:"):]):
        raise ValueError(
            f"{source}: `dataset` must name an existing folder of images. "
            f"Received: dataset={show(dataset)}"
        )
    return dataset


def _parse_objective(objective, model_rules, source):
    if isinstance(objective, str):
        name, direction = objective, None
    elif isinstance(objective, dict) and set(objective) <= {"name", "direction"}:
        name, direction = objective.get("name"), objective.get("direction")
    else:
        raise ValueError(
            f"{source}: `objective` must be a metric name or a mapping "
            f"{{name: ..., direction: min|max}}. Received: objective={show(objective)}"
        )
    if not isinstance(name, str) or name not in model_rules.objectives:
        raise ValueError(
            f"{source}: `objective` must be a metric the model reports, one of "
            f"{list(model_rules.objectives)}. Received: objective={show(objective)}"
        )
    if direction is None:
        return kt.Objective(name, model_rules.objectives[name])
    if direction not in OBJECTIVE_DIRECTIONS:
        raise ValueError(
            f"{source}: the objective's `direction` must be `min` or `max`. "
            f"Received: direction={show(direction)}"
        )
    return kt.Objective(name, direction)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_entry(name, entry, source):
    def fail(problem):
        raise ValueError(
            f"{source}: hyperparameter {name!r}: {problem}. Received: {name}={show(entry)}"
        )

    if not isinstance(entry, dict):
        fail("an entry must be a mapping with a `type`")
    kind = entry.get("type")
    if kind not in TYPES:
        fail(f"unknown type {show(kind)}; `type` must be one of {list(TYPES)}")
    extra = [k for k in entry if k not in _ENTRY_KEYS[kind]]
    if extra:
        fail(f"key {show(extra[0])} does not apply to type {kind!r}; its keys are "
             f"{list(_ENTRY_KEYS[kind])}")
    default = entry.get("default")

    if kind == "bool":
        if default is not None and not isinstance(default, bool):
            fail("`default` of a bool must be true or false")
        return Hyperparameter(name, kind, default=default)

    if kind == "choice":
        values = entry.get("values")
        if not isinstance(values, list) or not values:
            fail("`values` of a choice must be a non-empty list")
        if not all(isinstance(v, (str, bool)) or _is_number(v) for v in values):
            fail("`values` must be strings, numbers or booleans")
        if all(_is_number(v) for v in values):
            if any(isinstance(v, float) for v in values):
                values = [float(v) for v in values]
        elif len({type(v) for v in values}) > 1:
            fail("`values` must all have one type")
        if len(set(values)) != len(values):
            fail("`values` has duplicates")
        if default is not None and default not in values:
            fail(f"`default` {show(default)} is not one of `values`")
        return Hyperparameter(name, kind, values=tuple(values), default=default)

    low, high, step = entry.get("min"), entry.get("max"), entry.get("step")
    sampling = entry.get("sampling", "linear")
    check = int if kind == "int" else float
    for key, value in (("min", low), ("max", high)):
        if value is None:
            fail(f"`{key}` is required for type {kind!r}")
    for key, value in (("min", low), ("max", high), ("step", step), ("default", default)):
        if value is None:
            continue
        if not _is_number(value) or (check is int and not isinstance(value, int)):
            fail(f"`{key}` must be {'an integer' if check is int else 'a number'}")
    if low > high:
        fail(f"`min` ({low}) must be <= `max` ({high})")
    if sampling not in SAMPLINGS:
        fail(f"`sampling` must be one of {list(SAMPLINGS)}")
    if sampling == "log" and low <= 0:
        fail(f"log sampling needs `min` > 0 (got {low})")
    if step is not None and step <= 0:
        fail(f"`step` must be > 0 (got {step})")
    if sampling == "log" and step is not None and step <= 1:
        fail(f"with log sampling `step` is a factor and must be > 1 (got {step})")
    if default is not None and not low <= default <= high:
        fail(f"`default` {default} is outside [{low}, {high}]")
    if kind == "float":
        low, high = float(low), float(high)
        step = None if step is None else float(step)
        default = None if default is None else float(default)
    return Hyperparameter(name, kind, low, high, step, sampling, default=default)

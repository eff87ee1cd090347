"""Hyperparameter search on KerasTuner: space files, hypermodels, the LIPO oracle, pruning.

The names below are imported on first use (PEP 562), not with the package: they pull in
KerasTuner and Keras (and, for `FinetuneHyperModel`, TensorFlow), which take seconds,
and `kfound.tuning.launch` (the launcher of distributed searches) needs none of them, so
it starts its chief and workers at once.
"""

import importlib

_EXPORTS = {
    "HYPERMODELS": "hypermodels", "CNNHyperModel": "hypermodels",
    "FinetuneHyperModel": "finetune_hypermodel", "MLPHyperModel": "hypermodels",
    "hypermodel_class": "hypermodels",
    "LIPOOracle": "lipo_oracle", "LIPOSearch": "lipo_oracle",
    "MedianPruner": "pruning", "PruningOracle": "pruning",
    "Hyperparameter": "space", "SearchSpace": "space", "load_space": "space",
    "parse_space": "space",
    "TUNERS": "tuners", "make_oracle": "tuners", "make_tuner": "tuners",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])

"""Hyperparameter search on KerasTuner: space files, built-in hypermodels, the LIPO oracle."""

from kfound.tuning.hypermodels import (
    HYPERMODELS,
    CNNHyperModel,
    FinetuneHyperModel,
    MLPHyperModel,
)
from kfound.tuning.lipo_oracle import LIPOOracle, LIPOSearch
from kfound.tuning.space import Hyperparameter, SearchSpace, load_space, parse_space
from kfound.tuning.tuners import TUNERS, make_oracle, make_tuner

__all__ = [
    "HYPERMODELS", "TUNERS", "CNNHyperModel", "FinetuneHyperModel", "Hyperparameter",
    "LIPOOracle", "LIPOSearch", "MLPHyperModel", "SearchSpace", "load_space", "make_oracle",
    "make_tuner", "parse_space",
]

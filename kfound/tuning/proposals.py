"""The walk between a KerasTuner space and an oracle's own parameters, one hyperparameter each.

An oracle that proposes from a model of its own (LIPO's coordinates, Optuna's parameters)
gives every searchable hyperparameter of the space one parameter of its own, by the
hyperparameter, not by its name: two conditional hyperparameters may share a name
(`units` under `model == "v1"` and under `"v2"`), and only the active one takes a value.

- `searchable(hyperparameters)`: the hyperparameters that take a parameter (all but
  `Fixed`), in the space's order.
- `propose(hyperparameters, value_of)`: a proposal's values, walking the space in order and
  asking `value_of(hp)` for each active one, as KerasTuner activates them.
- `is_active(hp, values)`: whether `hp` is the one that a trial's `values` hold.
- `value_at(hp, prob)`: `hp`'s value at a cumulative probability, within its range.
"""

import numpy as np
from keras_tuner.engine import hyperparameters as hp_module


def searchable(hyperparameters):
    """The hyperparameters of a `keras_tuner.HyperParameters` that are tuned (not `Fixed`)."""
    return [hp for hp in hyperparameters.space if not isinstance(hp, hp_module.Fixed)]


def propose(hyperparameters, value_of):
    """The values of a proposal: each active hyperparameter's, in the space's order.

    Args:
        hyperparameters: the oracle's `keras_tuner.HyperParameters`.
        value_of: `value_of(hp)`, the value of a searchable hyperparameter that is active
            (given the values of the earlier ones). It is called in the space's order,
            once per active hyperparameter, so that a define-by-run sampler (Optuna's) is
            asked for the parameters it would be asked for.

    Returns:
        A dict of values by name, the active hyperparameters only (`Fixed` ones at their
        value), as `Oracle.populate_space` returns them.
    """
    hps = hp_module.HyperParameters()
    for hp in hyperparameters.space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = (hp.value if isinstance(hp, hp_module.Fixed)
                                   else python(value_of(hp)))
    return hps.values


def is_active(hp, values):
    """Whether `hp` is active in a trial's `values`, decided by its own conditions.

    Of two conditional hyperparameters that share a name, only the active one reads the value.
    """
    return hp.name in values and all(c.is_active(values) for c in hp.conditions)


def value_at(hp, prob):
    """`hp`'s value at cumulative probability `prob`, within its range.

    `prob` is clipped to `[0, 1)`, since `prob_to_value` at 1.0 would round an `Int` past its
    maximum. KerasTuner's reverse-log map can round past the minimum (9.999999999998899e-05
    for 1e-4 at `prob=0`), so a `Float` is clipped to `[min_value, max_value]`.
    """
    value = python(hp.prob_to_value(min(max(prob, 0.0), np.nextafter(1.0, 0.0))))
    if isinstance(hp, hp_module.Float):
        value = min(max(value, hp.min_value), hp.max_value)
    return value


def python(value):
    """A NumPy scalar as the Python value KerasTuner stores."""
    return value.item() if isinstance(value, np.generic) else value

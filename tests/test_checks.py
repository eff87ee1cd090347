"""Tests of kfound.checks, and that every layer and initializer applies them alike."""

import keras
import numpy as np
import pytest

from kfound import checks
from kfound.initializers import SparseInitializer
from kfound.layers import LRN, GroupNorm, LocallyConnected2D, RandomPCALighting, WeightNorm


@pytest.mark.parametrize("value", [3, np.int64(3), np.int8(3)])
def test_positive_int_accepts_python_and_numpy_integers(value):
    result = checks.positive_int("units", value)
    assert result == 3 and type(result) is int


@pytest.mark.parametrize(
    "value, shown",
    [(0, "0"), (-1, "-1"), (2.0, r"2\.0"), (True, "True"), (np.bool_(True), r"np\.True_"),
     ("3", "'3'"), (None, "None")],
)
def test_positive_int_rejects(value, shown):
    with pytest.raises(ValueError, match=rf"^Argument `units` must be a positive integer\. "
                       rf"Received: units={shown}$"):
        checks.positive_int("units", value)


def test_integer_bounds_name_the_bound():
    assert checks.non_negative_int("radius", 0) == 0
    with pytest.raises(ValueError, match=r"a non-negative integer\. Received: radius=-1$"):
        checks.non_negative_int("radius", -1)
    with pytest.raises(ValueError, match=r"an integer >= 2\. Received: n=1$"):
        checks.integer("n", 1, minimum=2)
    assert checks.integer("axis", -3) == -3


@pytest.mark.parametrize("value", [1e-6, np.float32(1e-6), np.float64(1e-6), 1, np.int32(1)])
def test_number_accepts_python_and_numpy_scalars(value):
    result = checks.positive_number("epsilon", value)
    assert result == pytest.approx(float(value)) and type(result) is float


@pytest.mark.parametrize(
    "value, shown",
    [(float("inf"), "inf"), (float("-inf"), "-inf"), (float("nan"), "nan"),
     (np.float32("inf"), r"np\.float32\(inf\)"), (True, "True"), ("1e-3", "'1e-3'"),
     (np.array([1e-3]), r"array\(\[0\.001\]\)"), (0.0, r"0\.0"), (-1e-3, r"-0\.001")],
)
def test_number_rejects(value, shown):
    with pytest.raises(ValueError, match=rf"^Argument `epsilon` must be a finite positive "
                       rf"number\. Received: epsilon={shown}$"):
        checks.positive_number("epsilon", value)


@pytest.mark.parametrize(
    "kwargs, value, expected",
    [
        ({"low": 0, "high": 1}, 1.5, r"a finite number in \[0, 1\]"),
        ({"low": 0, "high": 1, "high_inclusive": False}, 1, r"a finite number in \[0, 1\)"),
        ({"low": 0, "low_inclusive": False, "high": 1}, 0, r"a finite number in \(0, 1\]"),
        ({"low": 2}, 1, r"a finite number >= 2"),
        ({"high": 2, "high_inclusive": False}, 2, r"a finite number < 2"),
        ({}, float("nan"), r"a finite number"),
    ],
)
def test_number_ranges(kwargs, value, expected):
    with pytest.raises(ValueError, match=rf"must be {expected}\. Received: rate={value!r}$"):
        checks.number("rate", value, **kwargs)
    assert checks.number("rate", 0.5, **{**kwargs, "low": 0, "high": 1}) == 0.5


def test_boolean():
    assert checks.boolean("flag", np.bool_(False)) is False
    with pytest.raises(ValueError, match=r"^Argument `flag` must be a bool\. Received: flag=1$"):
        checks.boolean("flag", 1)


def test_one_of():
    assert checks.one_of("padding", "SAME", ("valid", "same"), case_sensitive=False) == "same"
    assert checks.one_of("implementation", 2, (1, 2, 3)) == 2
    with pytest.raises(ValueError, match=r"must be one of \('valid', 'same'\)\. "
                       r"Received: padding='SAME'$"):
        checks.one_of("padding", "SAME", ("valid", "same"))
    # True == 1 in Python, but a bool is not the integer choice.
    with pytest.raises(ValueError, match=r"Received: implementation=True$"):
        checks.one_of("implementation", True, (1, 2, 3))
    with pytest.raises(ValueError, match=r"\(case-insensitive\)\. Received: padding=1$"):
        checks.one_of("padding", 1, ("valid", "same"), case_sensitive=False)


def test_int_tuple():
    assert checks.int_tuple("kernel_size", 3, 2) == (3, 3)
    assert checks.int_tuple("kernel_size", [np.int64(2), 3], 2) == (2, 3)
    with pytest.raises(ValueError, match=r"a positive integer or a tuple of 2 positive "
                       r"integers\. Received: kernel_size=\(3, 0\)$"):
        checks.int_tuple("kernel_size", (3, 0), 2)
    with pytest.raises(ValueError, match=r"Received: kernel_size=\(1, 2, 3\)$"):
        checks.int_tuple("kernel_size", (1, 2, 3), 2)


@pytest.mark.parametrize(
    "input_shape, axis, match",
    [
        ((4,), -1, r"^LRN needs inputs of rank >= 2 .* Received: input_shape=\(4,\)$"),
        ((2, 3), 2, r"^Argument `axis` must be in range for inputs of rank 2, in \[-2, 2\)\. "
         r"Received: axis=2$"),
        ((2, 3), -2, r"not the batch axis 0\. Received: axis=-2$"),
        ((2, None), 1, r"axis 1 of the input to LRN must have a known size\. "
         r"Received: input_shape=\(2, None\)$"),
    ],
)
def test_channel_axis_errors(input_shape, axis, match):
    with pytest.raises(ValueError, match=match):
        checks.channel_axis("LRN", input_shape, axis)


def test_channel_axis_returns_the_positive_index():
    assert checks.channel_axis("GroupNorm", (2, 3, 4), -1) == 2
    assert checks.channel_axis("GroupNorm", (2, 3, 4), 1) == 1


# The case: WeightNorm refused np.float32(1e-6), which GroupNorm accepted, and
# accepted inf, which GroupNorm refused. Every small positive constant now agrees.
CONSTRUCTORS = {
    "GroupNorm.epsilon": lambda v: GroupNorm(groups=2, epsilon=v),
    "WeightNorm.epsilon": lambda v: WeightNorm(keras.layers.Dense(2), epsilon=v),
    "LRN.bias": lambda v: LRN(bias=v),
    "LRN.alpha": lambda v: LRN(alpha=v),
    "SparseInitializer.stddev": lambda v: SparseInitializer(stddev=v),
    "RandomPCALighting.stddev": lambda v: RandomPCALighting(stddev=v),
}


@pytest.mark.parametrize("name", list(CONSTRUCTORS))
def test_layers_and_initializers_agree_on_numbers(name):
    CONSTRUCTORS[name](np.float32(1e-6))
    CONSTRUCTORS[name](1e-6)
    argument = name.split(".")[1]
    for bad in (float("inf"), float("nan"), True, "1e-6"):
        with pytest.raises(ValueError, match=rf"Argument `{argument}` must be a finite .* "
                           rf"Received: {argument}="):
            CONSTRUCTORS[name](bad)


def test_layers_agree_on_integers():
    for make in (lambda v: GroupNorm(groups=v), lambda v: LocallyConnected2D(v, 3),
                 lambda v: SparseInitializer(connections=v)):
        make(np.int64(2))
        with pytest.raises(ValueError, match=r"must be a positive integer\. Received: "):
            make(0)
        with pytest.raises(ValueError, match=r"must be an integer|positive integer"):
            make(2.0)

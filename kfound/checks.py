"""The argument checks shared by kfound's layers, initializers and helpers.

Every check raises a `ValueError` (as Keras's own argument checks do, for a value of the
wrong type as well as one out of range) whose message names the argument, says what
was expected and ends with `Received: name=value`. Each returns the value in its
canonical Python type (`int`, `float`, `tuple`), so that configs hold plain values.

Numbers may be Python or NumPy scalars (`np.float32(1e-6)` and `1e-6` are the same
argument); booleans are never numbers here, although Python counts `True` as `1`.
"""

import math
import numbers

import numpy as np

from kfound.run_arguments import describe_integers, describe_numbers


def _fail(name, expected, value):
    raise ValueError(f"Argument `{name}` must be {expected}. Received: {name}={value!r}")


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def integer(name, value, *, minimum=None):
    """Checks that `value` is an integer (Python or NumPy), at least `minimum` if given.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        minimum: the smallest allowed value, or `None` for no bound. Defaults to `None`.

    Returns:
        `int(value)`.
    """
    if not _is_integer(value) or (minimum is not None and value < minimum):
        _fail(name, describe_integers(minimum), value)
    return int(value)


def positive_int(name, value):
    """Checks that `value` is an integer >= 1 and returns it as an `int`."""
    return integer(name, value, minimum=1)


def non_negative_int(name, value):
    """Checks that `value` is an integer >= 0 and returns it as an `int`."""
    return integer(name, value, minimum=0)


def is_finite_number(value):
    """Whether `value` is a finite real number, Python or NumPy, and not a bool."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(value)
    )


def number(name, value, *, low=None, high=None, low_inclusive=True, high_inclusive=True):
    """Checks that `value` is a finite real number (Python or NumPy) within a range.

    `inf`, `nan` and booleans are always refused.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        low: the lower bound, or `None` for none. Defaults to `None`.
        high: the upper bound, or `None` for none. Defaults to `None`.
        low_inclusive: whether `value == low` is allowed. Defaults to `True`.
        high_inclusive: whether `value == high` is allowed. Defaults to `True`.

    Returns:
        `float(value)`.
    """
    valid = (
        is_finite_number(value)
        and (low is None or (value >= low if low_inclusive else value > low))
        and (high is None or (value <= high if high_inclusive else value < high))
    )
    if not valid:
        _fail(name, describe_numbers(low, high, low_inclusive, high_inclusive), value)
    return float(value)


def positive_number(name, value):
    """Checks that `value` is a finite number > 0 and returns it as a `float`."""
    return number(name, value, low=0, low_inclusive=False)


def non_negative_number(name, value):
    """Checks that `value` is a finite number >= 0 and returns it as a `float`."""
    return number(name, value, low=0)


def boolean(name, value):
    """Checks that `value` is a `bool` (Python or NumPy) and returns it as a `bool`."""
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, "a bool", value)
    return bool(value)


def one_of(name, value, choices, *, case_sensitive=True):
    """Checks that `value` is one of `choices` and returns the matching choice.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        choices: the allowed values (strings when `case_sensitive=False`).
        case_sensitive: whether strings must match exactly; otherwise they are compared
            in lower case and the choice is returned as spelled in `choices`. Defaults
            to `True`.

    Returns:
        The element of `choices` that `value` matches.
    """
    choices = tuple(choices)
    for choice in choices:
        if case_sensitive:
            if type(value) is type(choice) and value == choice:
                return choice
        elif isinstance(value, str) and value.lower() == choice.lower():
            return choice
    suffix = "" if case_sensitive else " (case-insensitive)"
    _fail(name, f"one of {choices}{suffix}", value)


def int_tuple(name, value, length, *, minimum=1):
    """Checks an integer or a sequence of `length` integers, each at least `minimum`.

    An integer stands for `length` copies of itself, as in Keras's `kernel_size`.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        length: the number of integers.
        minimum: the smallest allowed integer. Defaults to `1`.

    Returns:
        A tuple of `length` ints.
    """
    items = (value,) * length if _is_integer(value) else value
    if (
        not isinstance(items, (tuple, list))
        or len(items) != length
        or not all(_is_integer(item) and item >= minimum for item in items)
    ):
        kind = "positive integer" if minimum == 1 else f"integer >= {minimum}"
        _fail(name, f"a {kind} or a tuple of {length} {kind}s", value)
    return tuple(int(item) for item in items)


def channel_axis(layer_name, input_shape, axis):
    """Checks `axis` against `input_shape` and returns it as a non-negative index.

    Args:
        layer_name: the layer's class name, for the message.
        input_shape: the input's shape, batch axis first.
        axis: the channel axis, negative counting from the end.

    Returns:
        `axis % rank`.

    Raises:
        ValueError: the input has rank below 2, `axis` is out of range or the batch axis,
            or the channel axis has no known size.
    """
    rank = len(input_shape)
    if rank < 2:
        raise ValueError(
            f"{layer_name} needs inputs of rank >= 2 (batch and channels). "
            f"Received: input_shape={tuple(input_shape)}"
        )
    if not -rank <= axis < rank:
        _fail("axis", f"in range for inputs of rank {rank}, in [{-rank}, {rank})", axis)
    if axis % rank == 0:
        _fail("axis", "a channel axis, not the batch axis 0", axis)
    if input_shape[axis] is None:
        raise ValueError(
            f"The channel axis {axis} of the input to {layer_name} must have a known size. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    return axis % rank

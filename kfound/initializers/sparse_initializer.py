"""Sparse initialization: a fixed number of nonzero incoming weights per unit."""

import math
import random

import keras
from keras import ops

from kfound import checks


def _initializer_seed(seed):
    """The seed a Keras random initializer keeps, from its `seed` argument or config.

    As in Keras's own random initializers (`keras.initializers.RandomNormal` and the
    rest): `None` becomes an integer drawn once from Python's `random` module (which
    `keras.utils.set_random_seed` seeds), so that one instance repeats its values; an
    integer is kept; a `keras.random.SeedGenerator`, or its serialized config, is kept
    and advances on every call.
    """
    if seed is None:
        return random.randint(1, int(1e9))
    if isinstance(seed, dict):
        seed = keras.saving.deserialize_keras_object(seed)
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(
            "Argument `seed` must be an integer, a `keras.random.SeedGenerator` or None. "
            f"Received: seed={seed!r}"
        )
    return seed


@keras.saving.register_keras_serializable(package="kfound")
class SparseInitializer(keras.initializers.Initializer):
    """Sparse initializer: exactly `connections` nonzero incoming weights per unit.

    Every output unit (the last axis of the kernel) gets exactly `connections`
    nonzero incoming weights, drawn from N(0, stddev²) at positions chosen
    uniformly at random without replacement; every other weight is zero. The
    fan-in of a unit is the product of all kernel axes but the last, so a
    `Dense` kernel `(inputs, units)` has fan-in `inputs` and a `Conv2D` kernel
    `(kh, kw, c_in, c_out)` has fan-in `kh * kw * c_in`.

    Martens (2010) uses this to keep the scale of a unit's input independent of
    the layer width (each unit sums `connections` terms, whatever the fan-in)
    while breaking symmetry, with `connections=15` and unit-variance weights.

    Unlike PyTorch's `torch.nn.init.sparse_(tensor, sparsity, std)`, which works
    on 2-D tensors only and zeroes a *fraction* `sparsity` of the entries of
    each column (so the number of nonzeros grows with the fan-in), this
    initializer fixes the *number* of nonzero weights per unit, as in the paper,
    and handles kernels of any rank >= 2.

    Seeds behave as in Keras's own random initializers: an integer seed gives
    the same values on every call; a `keras.random.SeedGenerator` gives fresh
    values on every call; `None` draws an integer seed once, when the
    initializer is constructed, so one instance repeats its values and two
    instances differ.

    Args:
        connections: positive integer, the number of nonzero incoming weights
            of each output unit. Must not exceed the fan-in of the kernel it
            initializes (checked when called). Defaults to `15`.
        stddev: positive float, the standard deviation of the nonzero weights.
            Defaults to `1.0`.
        seed: an integer, a `keras.random.SeedGenerator` or `None`.
            Defaults to `None`.

    Call arguments:
        shape: the kernel shape, of rank >= 2, output units last.
        dtype: the float dtype of the result. Defaults to `keras.config.floatx()`.

    Returns:
        A tensor of `shape` with exactly `connections` nonzero entries in every
        slice `[..., j]`.

    Example:

    >>> init = SparseInitializer(connections=3, seed=0)
    >>> kernel = keras.ops.convert_to_numpy(init((10, 4)))
    >>> (kernel != 0).sum(axis=0).tolist()
    [3, 3, 3, 3]
    >>> layer = keras.layers.Dense(64, kernel_initializer=SparseInitializer())

    Reference:
        - [Martens, 2010. Deep learning via Hessian-free optimization](
          https://www.cs.toronto.edu/~jmartens/docs/Deep_HessianFree.pdf), §4.
    """

    def __init__(self, connections=15, stddev=1.0, seed=None):
        self.connections = checks.positive_int("connections", connections)
        self.stddev = checks.positive_number("stddev", stddev)
        # The argument as given goes into the config: `None` draws a new seed on loading.
        self._init_seed = seed
        self.seed = _initializer_seed(seed)

    def __call__(self, shape, dtype=None):
        shape = tuple(int(dim) for dim in shape)
        if len(shape) < 2:
            raise ValueError(
                "SparseInitializer needs a kernel shape of rank >= 2 (fan-in axes, then "
                f"output units). Received: shape={shape}"
            )
        fan_in = math.prod(shape[:-1])
        units = shape[-1]
        if self.connections > fan_in:
            raise ValueError(
                "Argument `connections` must not exceed the fan-in of the kernel (the "
                f"product of all its axes but the last), which is {fan_in} for "
                f"shape={shape}. Received: connections={self.connections}"
            )
        dtype = dtype or keras.config.floatx()
        # One draw for both the positions and the values: its entries are independent,
        # so ranking the first `fan_in` columns picks uniformly random positions that
        # are independent of the values in the last `connections` columns.
        draws = keras.random.normal(
            (units, fan_in + self.connections), dtype="float32", seed=self.seed
        )
        _, positions = ops.top_k(draws[:, :fan_in], k=self.connections)
        values = draws[:, fan_in:] * self.stddev
        unit_ids = ops.repeat(ops.arange(units, dtype=positions.dtype), self.connections)
        indices = ops.stack([ops.reshape(positions, (-1,)), unit_ids], axis=1)
        kernel = ops.scatter(indices, ops.reshape(values, (-1,)), (fan_in, units))
        return ops.cast(ops.reshape(kernel, shape), dtype)

    def get_config(self):
        return {
            "seed": keras.saving.serialize_keras_object(self._init_seed),
            "connections": self.connections,
            "stddev": self.stddev,
        }

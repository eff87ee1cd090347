"""Weight normalization (Salimans & Kingma, 2016) as a Keras 3 layer wrapper."""

import dataclasses
import math

import keras
from keras import ops

from kfound import checks

_DENSE_LIKE = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
)
_TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_RECURRENT_CELLS = (
    keras.layers.SimpleRNNCell,
    keras.layers.GRUCell,
    keras.layers.LSTMCell,
)
_SUPPORTED = (
    "Dense, Conv1D, Conv2D, Conv3D, Conv1DTranspose, Conv2DTranspose, Conv3DTranspose, "
    "DepthwiseConv1D, DepthwiseConv2D, or an RNN (SimpleRNN, GRU, LSTM) over a "
    "SimpleRNNCell, GRUCell or LSTMCell"
)


def _is_recurrent(layer):
    return isinstance(layer, keras.layers.RNN) and isinstance(layer.cell, _RECURRENT_CELLS)


@dataclasses.dataclass
class _NormalizedKernel:
    """One kernel `g * v / ||v||`: the variable `v`, its length `g` and their axes."""

    v: keras.Variable
    g: keras.Variable
    reduce_axes: tuple
    g_shape: tuple


@dataclasses.dataclass
class _Plan:
    """What `WeightNorm.build` found in the wrapped layer."""

    input_shape: tuple
    owner: keras.layers.Layer
    kernels: list
    bias: keras.Variable | None


def _call_with_values(layer, values, inputs, **kwargs):
    """Calls `layer` with some of its variables read as the given tensors.

    `values` maps `id(variable)` to the tensor to read in its place. The call runs in a
    `keras.StatelessScope` (the public seam that `Layer.stateless_call` and the JAX
    trainer use), so gradients flow from the outputs into those tensors and the
    variables themselves are never written. A scope does not fall back on an enclosing
    one (the JAX trainer's), so every other variable of the layer is mapped to the value
    it has outside; updates the call makes (an RNN's dropout seed) are assigned outside.
    """
    mapping = [(v, values.get(id(v), v.value)) for v in layer.variables]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        before = [scope.get_current_value(v) for v, _ in mapping]
        outputs = layer(inputs, **kwargs)
        after = [scope.get_current_value(v) for v, _ in mapping]
    for (variable, _), old, new in zip(mapping, before, after, strict=True):
        if new is not old:
            variable.assign(new)
    return outputs


@keras.saving.register_keras_serializable(package="kfound")
class WeightNorm(keras.layers.Wrapper):
    """Weight normalization: a kernel `w = g * v / ||v||` for each output unit.

    Wraps a layer with a kernel and reparameterizes that kernel by a direction `v`
    (the wrapped layer's own kernel variable) and a length `g` per output unit (a
    new trainable weight of this wrapper), which decouples the length of each
    weight vector from its direction and speeds up training without any
    dependency on the batch (so it suits recurrent networks and small batches).

    Supported layers, with the kernel axis that indexes the output units:

    - `Dense`, `Conv1D`, `Conv2D`, `Conv3D`: the last axis.
    - `Conv1DTranspose`, `Conv2DTranspose`, `Conv3DTranspose`: the second-to-last
      axis (their kernels are `(*kernel_size, filters, in_channels)`).
    - `DepthwiseConv1D`, `DepthwiseConv2D`: the last two axes together; output
      channel `c * depth_multiplier + m` is kernel slice `[..., c, m]`.
    - `SimpleRNN`, `GRU`, `LSTM` (any `RNN` over their cells): both the kernel and
      the recurrent kernel are normalized, along their last axis, each with its
      own `g`.

    `g` starts at `||v||`, so that a freshly wrapped layer computes exactly what
    the plain layer computes. With `data_init=True`, the first call with
    `training=True` (the first training batch) instead initializes `g` and the
    bias from that batch, as in Section 3.2 of the paper: with `t = x . v / ||v||`
    the pre-activations of each unit over the batch, `g <- 1 / std(t)` and
    `bias <- -mean(t) / std(t)`, so that the pre-activations have zero mean and
    unit variance. A layer without a bias only gets the scale. The book (Section
    3.6.12) does not describe the initialization; this follows the paper.

    The initialization is stored in non-trainable weights: `g_offset` and
    `bias_offset` (added to `g` and to the bias) and the flag `initialized`. That
    is how it survives a forward pass compiled by any backend (JAX's trainer
    keeps only non-trainable state from the forward pass), `jit_compile=True`,
    and `tf.distribute` strategies (the offsets are averaged over replicas), and
    why it never runs again after saving and loading. Offsets leave the training
    dynamics unchanged, since the gradient with respect to `g` is the gradient
    with respect to `g + g_offset`. Inference (`training=False`, `predict`,
    `evaluate`) never changes any weight, not even before the initialization.

    For recurrent layers the statistics are those of the input projection
    `x_t . W` over the batch and all time steps (masks are not taken into
    account); the recurrent kernel keeps `g = ||v||`. The new bias replaces
    `unit_forget_bias`; pass `data_init=False` to keep it. For GRU with
    `reset_after=True` only the input bias is set.

    `remove()` folds the reparameterization back into a plain layer.

    Args:
        layer: the layer to wrap, one of the supported layers above. It may be
            built or not. It runs under this wrapper's dtype policy, which
            defaults to the layer's own.
        data_init: bool, whether to initialize `g` and the bias from the first
            training batch. Defaults to `True`.
        epsilon: small positive float, the floor of `||v||^2` and the amount
            added to the variance in the data-dependent initialization, which
            avoid divisions by zero. Defaults to `1e-6`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: the input tensor of the wrapped layer.
        training: bool, whether the call is a training call. The first training
            call runs the data-dependent initialization when `data_init=True`.

    Returns:
        The output of the wrapped layer with its normalized kernel.

    Example:

    >>> x = np.random.rand(8, 16, 16, 3).astype("float32")
    >>> layer = kfound.layers.WeightNorm(keras.layers.Conv2D(8, 3, padding="same"))
    >>> tuple(layer(x, training=True).shape)
    (8, 16, 16, 8)
    >>> plain = layer.remove()  # a Conv2D with the folded kernel
    >>> np.allclose(plain(x), layer(x), atol=1e-5)
    True

    Reference:
        - [Salimans & Kingma, 2016](https://arxiv.org/abs/1602.07868): Weight
          Normalization: A Simple Reparameterization to Accelerate Training of
          Deep Neural Networks.
    """

    def __init__(self, layer, data_init=True, epsilon=1e-6, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"Argument `layer` must be a `keras.layers.Layer` instance. Received: "
                f"layer={layer!r}"
            )
        if not isinstance(layer, _DENSE_LIKE + _TRANSPOSED + _DEPTHWISE) and not (
            _is_recurrent(layer)
        ):
            raise ValueError(
                "Argument `layer` must be a layer with a kernel to normalize: "
                f"{_SUPPORTED}. Received: layer={layer}"
            )
        data_init = checks.boolean("data_init", data_init)
        epsilon = checks.positive_number("epsilon", epsilon)
        kwargs.setdefault("dtype", layer.dtype_policy)
        # The wrapper reads its float32 weights itself and casts the kernel once.
        super().__init__(layer, autocast=False, **kwargs)
        if self.dtype_policy.name != layer.dtype_policy.name:
            layer.dtype_policy = self.dtype_policy
            if _is_recurrent(layer):
                layer.cell.dtype_policy = self.dtype_policy
        self.data_init = data_init
        self.epsilon = epsilon

    def build(self, input_shape):
        super().build(input_shape)
        layer = self.layer
        if _is_recurrent(layer):
            owner = layer.cell
            kernels = [(owner.kernel, (1,)), (owner.recurrent_kernel, (1,))]
        else:
            owner = layer
            rank = len(layer.kernel.shape)
            if isinstance(layer, _TRANSPOSED):
                out_axes = (rank - 2,)
            elif isinstance(layer, _DEPTHWISE):
                out_axes = (rank - 2, rank - 1)
            else:
                out_axes = (rank - 1,)
            kernels = [(layer.kernel, out_axes)]
        if not all(isinstance(v, keras.Variable) for v, _ in kernels):
            raise ValueError(
                "Argument `layer` must keep its kernel in a plain variable, not a "
                f"LoRA-enabled or quantized one. Received: layer={layer}"
            )
        normalized = []
        for index, (v, out_axes) in enumerate(kernels):
            reduce_axes = tuple(a for a in range(len(v.shape)) if a not in out_axes)
            g_shape = tuple(d if a in out_axes else 1 for a, d in enumerate(v.shape))
            g = self.add_weight(
                name="g" if index == 0 else "recurrent_g",
                shape=(math.prod(v.shape[a] for a in out_axes),),
                initializer=self._norm_initializer(v, reduce_axes),
                autocast=False,
            )
            normalized.append(_NormalizedKernel(v, g, reduce_axes, g_shape))
        bias = getattr(owner, "bias", None)
        # A plain object: Keras's tracker must not adopt the wrapped layer's variables.
        self._plan = _Plan(input_shape, owner, normalized, bias)
        if self.data_init:
            self.g_offset = self._add_offset("g_offset", normalized[0].g.shape)
            if bias is not None:
                self.bias_offset = self._add_offset("bias_offset", bias.shape)
            self.initialized = self._add_offset("initialized", ())

    def _add_offset(self, name, shape):
        # Averaged over replicas, so that tf.distribute allows the assignment in call().
        return self.add_weight(
            name=name, shape=shape, initializer="zeros", trainable=False, autocast=False,
            aggregation="mean",
        )

    def _norm_initializer(self, v, reduce_axes):
        def initializer(shape, dtype=None):
            v32 = ops.cast(v.value, "float32")
            norm = ops.sqrt(ops.sum(ops.square(v32), axis=reduce_axes))
            return ops.cast(ops.reshape(norm, shape), dtype or "float32")

        return initializer

    def _direction_scale(self, v32, reduce_axes):
        """`1 / ||v||` per output unit, broadcastable to `v`: one reduction in float32."""
        squared_norm = ops.sum(ops.square(v32), axis=reduce_axes, keepdims=True)
        return ops.rsqrt(ops.maximum(squared_norm, self.epsilon))

    def _kernels_and_bias(self, g_offset, bias_offset):
        """The effective float32 kernels and bias (`None` when the layer has none)."""
        kernels = []
        for index, kernel in enumerate(self._plan.kernels):
            v32 = ops.cast(kernel.v.value, "float32")
            g = kernel.g.value
            if index == 0 and g_offset is not None:
                g = g + g_offset
            scale = ops.reshape(g, kernel.g_shape) * self._direction_scale(v32, kernel.reduce_axes)
            kernels.append(v32 * scale)
        bias = self._plan.bias
        if bias is not None:
            bias = ops.cast(bias.value, "float32")
            if bias_offset is not None:
                bias = bias + bias_offset
        return kernels, bias

    def _offsets(self, inputs, training):
        """`(g_offset, bias_offset)`, either one `None` when absent.

        The first training call computes them from `inputs`; every training call
        assigns them unconditionally (with the stored values once initialized), so
        that no variable is assigned inside a conditional branch, which neither JAX
        nor `tf.distribute` allow. Inference calls only read them.
        """
        if not self.data_init:
            return None, None
        variables = [self.g_offset]
        if self._plan.bias is not None:
            variables.append(self.bias_offset)
        values = [variable.value for variable in variables]
        if training:
            stored = values
            needed = ops.equal(self.initialized.value, 0.0)
            values = ops.cond(needed, lambda: self._data_init_offsets(inputs), lambda: stored)
            # Outside the conditional: no gradient ever flows into it, so TensorFlow does
            # not keep (zero-filled) intermediates of the initialization branch per step.
            values = [ops.stop_gradient(value) for value in values]
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
            self.initialized.assign(1.0)
        return values[0], (values[1] if len(values) > 1 else None)

    def _data_init_offsets(self, inputs):
        """Offsets that give each unit zero-mean, unit-variance pre-activations."""
        first = self._plan.kernels[0]
        v32 = ops.cast(first.v.value, "float32")
        direction = v32 * self._direction_scale(v32, first.reduce_axes)
        if _is_recurrent(self.layer):
            pre_activations = ops.matmul(ops.cast(inputs, "float32"), direction)
            channel_axis = -1
        else:
            pre_activations = self._linear_call(inputs, direction)
            data_format = getattr(self.layer, "data_format", "channels_last")
            channel_axis = 1 if data_format == "channels_first" else -1
        pre_activations = ops.cast(pre_activations, "float32")
        rank = len(pre_activations.shape)
        axes = [a for a in range(rank) if a != channel_axis % rank]
        mean, variance = ops.moments(pre_activations, axes=axes)
        inv_std = ops.rsqrt(variance + self.epsilon)
        offsets = [inv_std - first.g.value]
        if self._plan.bias is not None:
            bias = ops.cast(self._plan.bias.value, "float32")
            target = -mean * inv_std
            if len(bias.shape) == 2:  # GRU(reset_after=True): [input_bias, recurrent_bias].
                target = ops.stack([target, bias[1]])
            offsets.append(target - bias)
        return offsets

    def _linear_call(self, inputs, kernel):
        """The wrapped layer's output with `kernel`, no bias and no activation."""
        layer = self.layer
        values = {id(self._plan.kernels[0].v): kernel}
        if self._plan.bias is not None:
            values[id(self._plan.bias)] = ops.zeros(self._plan.bias.shape, "float32")
        # `activation` is a public attribute of every supported non-recurrent layer.
        activation = layer.activation
        layer.activation = keras.activations.linear
        try:
            return _call_with_values(layer, values, inputs)
        finally:
            layer.activation = activation

    def call(self, inputs, training=None):
        g_offset, bias_offset = self._offsets(inputs, training)
        kernels, bias = self._kernels_and_bias(g_offset, bias_offset)
        values = {
            id(spec.v): kernel for spec, kernel in zip(self._plan.kernels, kernels, strict=True)
        }
        if bias_offset is not None:
            values[id(self._plan.bias)] = bias
        return _call_with_values(self.layer, values, inputs, training=training)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def remove(self):
        """Returns a plain copy of the wrapped layer with the normalized kernel folded in.

        Returns:
            A new layer of the wrapped layer's class and config whose weights give
            the same outputs as this wrapper (after any data-dependent
            initialization).
        """
        if not self.built:
            raise ValueError(
                "`remove()` needs a built `WeightNorm`; call it on data first. "
                f"Received: layer={self.layer}"
            )
        g_offset = self.g_offset.value if self.data_init else None
        has_bias_offset = self.data_init and self._plan.bias is not None
        bias_offset = self.bias_offset.value if has_bias_offset else None
        kernels, bias = self._kernels_and_bias(g_offset, bias_offset)
        folded = {id(spec.v): kernel for spec, kernel in zip(self._plan.kernels, kernels,
                                                                  strict=True)}
        if bias is not None:
            folded[id(self._plan.bias)] = bias
        plain = self.layer.__class__.from_config(self.layer.get_config())
        plain.build(self._plan.input_shape)
        plain.set_weights(
            [ops.convert_to_numpy(folded.get(id(w), w.value)) for w in self.layer.weights]
        )
        return plain

    def get_config(self):
        config = super().get_config()
        config.update({"data_init": self.data_init, "epsilon": self.epsilon})
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # `Wrapper.from_config` pops "layer" from its argument; leave the caller's intact.
        return super().from_config(dict(config), custom_objects=custom_objects)

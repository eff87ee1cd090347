"""Group normalization: Keras's GroupNormalization with a faster computation."""

import keras
from keras import ops

from kfound import checks


@keras.saving.register_keras_serializable(package="kfound")
class GroupNorm(keras.layers.GroupNormalization):
    """Group normalization (Wu & He, 2018), a faster `keras.layers.GroupNormalization`.

    The channels are split into `groups` groups; each example is normalized by the mean
    and variance of each of its groups, then scaled by `gamma` and shifted by `beta` per
    channel. An example's output never depends on the other examples of its batch, so the
    layer behaves the same in training and inference and at any batch size (unlike
    `BatchNormalization`). `groups=-1` is instance normalization, `groups=1` is layer
    normalization over all non-batch axes. See `kfound.layers.replace_batchnorm` to swap
    the BatchNormalization layers of a model for this one.

    It takes Keras's arguments and gives its results (up to float32 rounding), computed
    differently: float32 mean and variance per example and channel first (two passes,
    for accuracy: Keras's torch backend computes the variance in one pass, `E[x^2] -
    E[x]^2`, which loses digits when the mean is large against the spread), then per
    group from those small tensors; gamma, beta, mean and inverse standard deviation
    are folded into one scale and one offset per example and channel, and the output is
    `x * scale + offset` on the input in its own shape. Keras normalizes a grouped 5D
    view instead, with full-size broadcasts, which makes more passes over memory
    forward and backward (`benchmarks/layers.py` measures the two side by side; the
    README quotes its figures). Like Keras's layer, it passes masks through and
    includes masked steps in the statistics.

    Args:
        groups: int, the number of groups, dividing the channel count; `-1` for one
            group per channel. Defaults to `32`.
        axis: int, the channel axis; any axis but the batch axis. Defaults to `-1`.
        epsilon: float added to the variance. Defaults to `1e-3`.
        center: whether to add the offset `beta`. Defaults to `True`.
        scale: whether to multiply by `gamma`. Defaults to `True`.
        beta_initializer: initializer of `beta`. Defaults to `"zeros"`.
        gamma_initializer: initializer of `gamma`. Defaults to `"ones"`.
        beta_regularizer: optional regularizer of `beta`. Defaults to `None`.
        gamma_regularizer: optional regularizer of `gamma`. Defaults to `None`.
        beta_constraint: optional constraint of `beta`. Defaults to `None`.
        gamma_constraint: optional constraint of `gamma`. Defaults to `None`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a tensor of rank >= 2 with the batch on axis 0 and a known `axis` size.

    Returns:
        A tensor of the input's shape, in the layer's compute dtype.

    Example:

    >>> x = keras.random.normal((4, 16, 16, 64))
    >>> y = GroupNorm(groups=32)(x)
    >>> tuple(y.shape)
    (4, 16, 16, 64)

    Reference:
        [Wu & He, 2018. Group Normalization](https://arxiv.org/abs/1803.08494).
    """

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, **kwargs):
        groups = checks.integer("groups", groups)
        if groups != -1:
            groups = checks.positive_int("groups", groups)
        axis = checks.integer("axis", axis)
        epsilon = checks.non_negative_number("epsilon", epsilon)
        super().__init__(groups=groups, axis=axis, epsilon=epsilon, **kwargs)

    def build(self, input_shape):
        channels = input_shape[checks.channel_axis("GroupNorm", input_shape, self.axis)]
        groups = channels if self.groups == -1 else self.groups
        if channels % groups:
            raise ValueError(
                f"Argument `groups` must divide the {channels} channels of axis "
                f"{self.axis} (or be -1 for one group per channel). Received: groups={groups}"
            )
        super().build(input_shape)

    def call(self, inputs):
        rank = len(inputs.shape)
        axis = self.axis % rank
        channels = inputs.shape[axis]
        size = channels // self.groups
        # Per-(example, channel) statistics keep the batch and channel axes.
        reduction_axes = [i for i in range(1, rank) if i != axis]
        stats_shape = [1] * rank
        stats_shape[0] = -1
        stats_shape[axis] = channels

        def per_group(per_channel):
            # (N, 1.., C, 1..) -> mean over each group's channels, repeated per channel.
            grouped = ops.reshape(per_channel, (-1, self.groups, size))
            grouped = ops.mean(grouped, axis=-1, keepdims=True)
            return ops.reshape(ops.repeat(grouped, size, axis=-1), stats_shape)

        x = ops.cast(inputs, "float32")
        mean = per_group(ops.mean(x, axis=reduction_axes, keepdims=True))
        # The variance from the deviations (two passes), as Keras computes it: a one-pass
        # E[x^2] - E[x]^2 loses precision when the mean is large. The mean needs no
        # gradient here, because the deviations from it sum to zero.
        deviations = ops.square(x - ops.stop_gradient(mean))
        variance = per_group(ops.mean(deviations, axis=reduction_axes, keepdims=True))
        scale = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            scale = scale * ops.reshape(ops.cast(self.gamma, "float32"), stats_shape[1:])
        offset = -mean * scale
        if self.center:
            offset = offset + ops.reshape(ops.cast(self.beta, "float32"), stats_shape[1:])
        return ops.cast(x * scale + offset, self.compute_dtype)


def group_count(channels, groups):
    """The number of groups a `GroupNorm` over `channels` channels gets when `groups` is asked.

    The largest divisor of `channels` that is at most `groups`: `groups` itself when it
    divides the channels, otherwise the group count whose group size (channels per
    group) is closest to the one asked, from above. For example 48 channels and
    `groups=32` give 24 groups of 2 channels (a greatest common divisor would give 16
    groups of 3), and 5 channels give 5 groups.

    Args:
        channels: positive int, the number of channels.
        groups: positive int, the number of groups asked for (Wu & He use 32).

    Returns:
        An int that divides `channels`, between 1 and `min(groups, channels)`.
    """
    channels = checks.positive_int("channels", channels)
    groups = checks.positive_int("groups", groups)
    return max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)


def replace_batchnorm(model, groups=32):
    """Copies a model with every `BatchNormalization` layer replaced by a `GroupNorm`.

    Batch statistics are noisy for small batches (detection, segmentation, large inputs
    on one device); group normalization does not depend on the batch at all. The copy
    keeps every other layer, its weights and the model's structure (nested Functional
    and Sequential models included); each `GroupNorm` takes the name, axis, epsilon,
    center/scale flags, initializers, regularizers, constraints, dtype policy and
    trainability of the layer it replaces, and a copy of its `gamma` and `beta`. The
    moving mean and variance are dropped: GroupNorm has none. The copy computes
    something different from the original, so fine-tune it.

    When `groups` does not divide a layer's channel count, that layer gets
    `group_count(channels, groups)` groups: the largest
    divisor of the count not above `groups` (e.g. 24 groups for 48 channels and
    `groups=32`; 5 groups for 5 channels), the closest group size to the one asked.

    Args:
        model: a built Functional or Sequential `keras.Model`.
        groups: positive int, the number of groups of each GroupNorm, reduced where it
            does not divide the channels. Defaults to `32` (the paper's choice).

    Returns:
        A new model, sharing no layers or weights with `model`.

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((32, 32, 3)),
    ...     keras.layers.Conv2D(48, 3),
    ...     keras.layers.BatchNormalization(),
    ... ])
    >>> gn_model = replace_batchnorm(model, groups=32)
    >>> gn_model.layers[1].groups
    24
    """
    # Functional models (and built Sequential ones) have `outputs`; subclassed ones don't.
    is_graph = isinstance(model, keras.Sequential) or (
        isinstance(model, keras.Model) and hasattr(model, "outputs")
    )
    if not is_graph:
        raise TypeError(
            "Argument `model` must be a Functional or Sequential keras.Model (subclassed "
            f"models have no graph to edit). Received: model={model!r}"
        )
    groups = checks.positive_int("groups", groups)
    if not model.built:
        raise ValueError(
            "Argument `model` must be built (give it an Input or call it once) so that "
            f"its channel counts are known. Received: model={model.name!r}"
        )
    pairs = []

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            config = {
                key: config[key]
                for key in (
                    "name", "trainable", "dtype", "axis", "epsilon", "center", "scale",
                    "beta_initializer", "gamma_initializer", "beta_regularizer",
                    "gamma_regularizer", "beta_constraint", "gamma_constraint",
                )
            }
            new = GroupNorm(groups=group_count(channels, groups), **config)
        else:
            new = layer.__class__.from_config(config)
        pairs.append((layer, new))
        return new

    def call(layer, *args, **kwargs):
        # A functional graph replays BatchNormalization's call arguments (`mask=None`);
        # GroupNorm takes none of them (masks still propagate).
        if isinstance(layer, GroupNorm):
            kwargs = {}
        return layer(*args, **kwargs)

    copy = keras.models.clone_model(
        model,
        clone_function=clone,
        call_function=None if isinstance(model, keras.Sequential) else call,
        recursive=True,
    )
    for old, new in pairs:
        if isinstance(old, keras.layers.BatchNormalization):
            if old.scale:
                new.gamma.assign(old.gamma.value)
            if old.center:
                new.beta.assign(old.beta.value)
        else:
            # Variable to variable (Keras's get_weights() warns under NumPy 2).
            for target, source in zip(new.weights, old.weights, strict=True):
                target.assign(source.value)
    return copy

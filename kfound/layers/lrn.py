"""Local response normalization across channels (AlexNet)."""

import keras
from keras import ops

from kfound import checks


def _power(d, beta):
    """`d ** -beta` for `d > 0`, using square roots for the common exponents.

    `pow` is a slow transcendental on CPUs; AlexNet's 0.75 and the 0.5 and 1 of other
    papers are square roots and divisions, which every backend vectorizes well.
    """
    if beta == 0.75:
        inv_sqrt = ops.rsqrt(d)
        return inv_sqrt * ops.sqrt(inv_sqrt)
    if beta == 0.5:
        return ops.rsqrt(d)
    if beta == 1:
        return 1.0 / d
    return ops.exp(-beta * ops.log(d))


def _window_sum(values, depth_radius, axis):
    """Sums `values` over the `2 * depth_radius + 1` neighbours along `axis`, zero-padded."""
    depth = values.shape[axis]
    padding = [[0, 0]] * len(values.shape)
    padding[axis] = [depth_radius, depth_radius]
    padded = ops.pad(values, padding)
    total = None
    for start in range(2 * depth_radius + 1):
        index = [slice(None)] * len(values.shape)
        index[axis] = slice(start, start + depth)
        window = padded[tuple(index)]
        total = window if total is None else total + window
    return total


def lrn_portable(x, depth_radius, bias, alpha, beta, axis):
    """LRN in `keras.ops` for any backend, axis and rank, with an analytic gradient.

    `x` is float32 and `axis` non-negative. The window sum is a sum of shifted slices
    (O(depth_radius) work per value, fused into one loop under XLA). Differentiating the
    slices directly makes slow gradients (a padded full-size tensor per shift), so the
    gradient is given in closed form: with `d = bias + alpha * S(x^2)` and `y = x d^-beta`,
    `dx = dy d^-beta - 2 alpha beta x S(dy y / d)`, where the window sum `S` is symmetric.
    """

    @ops.custom_gradient
    def forward(inputs):
        denominator = bias + alpha * _window_sum(ops.square(inputs), depth_radius, axis)
        scale = _power(denominator, beta)
        outputs = inputs * scale

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            inner = _window_sum(upstream * outputs / denominator, depth_radius, axis)
            return upstream * scale - (2.0 * alpha * beta) * inputs * inner

        return outputs, grad

    return forward(x)


@keras.saving.register_keras_serializable(package="kfound")
class LRN(keras.layers.Layer):
    """Local response normalization across channels (Krizhevsky et al., 2012).

    Each value is divided by a power of the summed squares of its neighbours along the
    channel axis:

    `b_i = a_i / (bias + alpha * sum_{j=max(0, i-r)}^{min(C-1, i+r)} a_j^2) ** beta`

    with `r = depth_radius` and `C` channels. The window holds `2r + 1` channels and is
    clipped at the edges (channels beyond them count as zero). For channels-last input this
    equals `tf.nn.local_response_normalization(x, depth_radius, bias, alpha, beta)`.

    The chapter's formula writes `n/2` for `r` and says the sum covers "n+1 points"; it
    covers `2r + 1 = n` channels for AlexNet's odd `n = 5` (`r = 2`), as in the paper.

    Converting from PyTorch's `torch.nn.LocalResponseNorm(size, alpha, beta, k)`: torch
    divides `alpha` by `size` (as Caffe does; TensorFlow and the AlexNet paper don't) and
    sums over channels `c - size // 2` to `c + (size - 1) // 2`. For odd `size` use
    `LRN(depth_radius=(size - 1) // 2, bias=k, alpha=alpha / size, beta=beta, axis=1)`
    (`axis=1` for torch's channels-first layout). An even `size` gives torch an asymmetric
    window (one more channel before than after), which no `depth_radius` reproduces.

    The computation runs in float32 and is cast back to the layer's compute dtype, so
    mixed precision keeps float32 accuracy. With the TensorFlow backend, channels-last
    4D input on a machine with a GPU uses the native `tf.nn.local_response_normalization`
    (cuDNN). Elsewhere, the layer uses `keras.ops` with an analytic gradient, because the
    native op's CPU gradient kernel is a scalar loop (`benchmarks/layers.py` compares
    the two; the README quotes its figures). The native op's XLA lowering supports only
    float32, one more reason the float32 computation is kept throughout.

    Args:
        depth_radius: non-negative int, the half-width `r` of the window. Defaults to `2`.
        bias: positive float, the offset `k` that keeps the denominator away from zero.
            Defaults to `2.0`.
        alpha: non-negative float, the scale of the sum of squares (not divided by the
            window size). Defaults to `1e-4`.
        beta: non-negative float, the exponent. Defaults to `0.75`.
        axis: int, the channel axis; any axis but the batch axis. Defaults to `-1`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a tensor of rank >= 2 whose `axis` dimension is known.

    Returns:
        A tensor of the input's shape, in the layer's compute dtype.

    Example:

    >>> x = keras.random.normal((2, 13, 13, 96))
    >>> y = LRN()(x)  # AlexNet: k=2, n=5, alpha=1e-4, beta=0.75
    >>> tuple(y.shape)
    (2, 13, 13, 96)

    Reference:
        [Krizhevsky et al., 2012. ImageNet Classification with Deep Convolutional Neural
        Networks](https://papers.nips.cc/paper/4824), section 3.3.
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, axis=-1, **kwargs):
        depth_radius = checks.non_negative_int("depth_radius", depth_radius)
        bias = checks.positive_number("bias", bias)
        alpha = checks.non_negative_number("alpha", alpha)
        beta = checks.non_negative_number("beta", beta)
        axis = checks.integer("axis", axis)
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta
        self.axis = axis
        self.supports_masking = True

    def _canonical_axis(self, rank):
        return self.axis % rank

    def build(self, input_shape):
        rank = len(input_shape)
        axis = checks.channel_axis("LRN", input_shape, self.axis)
        self.input_spec = keras.layers.InputSpec(ndim=rank, axes={axis: input_shape[axis]})

    def _uses_native_op(self, rank):
        if keras.backend.backend() != "tensorflow" or rank != 4:
            return False
        if self._canonical_axis(rank) != 3:
            return False
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))

    def call(self, inputs):
        rank = len(inputs.shape)
        x = ops.cast(inputs, "float32")
        if self._uses_native_op(rank):
            import tensorflow as tf

            outputs = tf.nn.local_response_normalization(
                x, self.depth_radius, self.bias, self.alpha, self.beta
            )
        else:
            outputs = lrn_portable(
                x, self.depth_radius, self.bias, self.alpha, self.beta,
                self._canonical_axis(rank),
            )
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "depth_radius": self.depth_radius,
                "bias": self.bias,
                "alpha": self.alpha,
                "beta": self.beta,
                "axis": self.axis,
            }
        )
        return config

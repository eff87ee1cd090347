"""The chapter's worked examples and formulas, in NumPy, so recipes can check them against Keras.

- The 2-2-2 sigmoid network of §3.2.5 (Mazur's classic backpropagation example): forward pass,
  squared error, every gradient by the chain rule, and one gradient-descent step.
- The convolution/pooling output-size formula of §3.2.3-3.2.4, `W2 = (W1 - F + 2P) / S + 1`,
  and Keras's `"valid"`/`"same"` paddings written in that formula's terms.
- Small helpers the claim-testing recipes share: epochs and time to a target, the
  gradient-descent stability limit of a least-squares problem, mean/spread summaries, and
  `classify_gain`, which names a gain "helps", "hurts" or "no clear effect" against its
  seed spread.
"""

import contextlib
import math

import keras
import numpy as np

# §3.2.5: inputs i1, i2; targets; weights w1..w8; the hidden bias b1 (shared by h1 and h2)
# and the output bias b2 (shared by o1 and o2).
BOOK_NETWORK = {
    "inputs": (0.05, 0.10),
    "targets": (0.01, 0.99),
    "weights": (0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55),
    "b1": 0.35,
    "b2": 0.60,
}


def sigmoid(x):
    """The logistic function `1 / (1 + e^-x)`, in float64."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype="float64")))


def forward_2_2_2(inputs, weights, b1, b2):
    """The forward pass of the book's 2-2-2 sigmoid network.

    `net_h1 = w1*i1 + w2*i2 + b1`, `net_h2 = w3*i1 + w4*i2 + b1`,
    `net_o1 = w5*out_h1 + w6*out_h2 + b2`, `net_o2 = w7*out_h1 + w8*out_h2 + b2`,
    and every `out = sigmoid(net)`.

    Args:
        inputs: `(i1, i2)`.
        weights: `(w1, ..., w8)`.
        b1: the hidden layer's shared bias.
        b2: the output layer's shared bias.

    Returns:
        A dict of floats: `net_h1, net_h2, out_h1, out_h2, net_o1, net_o2, out_o1, out_o2`.
    """
    i1, i2 = _check_length("inputs", inputs, 2)
    w1, w2, w3, w4, w5, w6, w7, w8 = _check_length("weights", weights, 8)
    values = {"net_h1": w1 * i1 + w2 * i2 + b1, "net_h2": w3 * i1 + w4 * i2 + b1}
    values["out_h1"] = float(sigmoid(values["net_h1"]))
    values["out_h2"] = float(sigmoid(values["net_h2"]))
    values["net_o1"] = w5 * values["out_h1"] + w6 * values["out_h2"] + b2
    values["net_o2"] = w7 * values["out_h1"] + w8 * values["out_h2"] + b2
    values["out_o1"] = float(sigmoid(values["net_o1"]))
    values["out_o2"] = float(sigmoid(values["net_o2"]))
    return values


def squared_error(targets, outputs):
    """The book's error `E = sum 1/2 (target - output)^2`.

    Returns:
        `(per_output, total)`: a float64 array of each output's error and their sum.
    """
    targets = np.asarray(targets, dtype="float64")
    outputs = np.asarray(outputs, dtype="float64")
    per_output = 0.5 * np.square(targets - outputs)
    return per_output, float(per_output.sum())


def backprop_2_2_2(inputs, targets, weights, b1, b2):
    """Every gradient of the book's total error, by the chain rule, written out by hand.

    For an output unit, `delta_o = dE/dnet_o = (out_o - target) * out_o * (1 - out_o)`,
    and `dE/dw = delta_o * out_h` for the weight from `h` to `o`. For a hidden unit,
    `delta_h = (sum_o delta_o * w_ho) * out_h * (1 - out_h)` and `dE/dw = delta_h * i`.
    A shared bias collects the deltas of every unit it feeds.

    Returns:
        A dict `{"w1": ..., ..., "w8": ..., "b1": ..., "b2": ...}` of floats.
    """
    i1, i2 = _check_length("inputs", inputs, 2)
    t1, t2 = _check_length("targets", targets, 2)
    _, _, _, _, w5, w6, w7, w8 = _check_length("weights", weights, 8)
    v = forward_2_2_2(inputs, weights, b1, b2)
    delta_o1 = (v["out_o1"] - t1) * v["out_o1"] * (1.0 - v["out_o1"])
    delta_o2 = (v["out_o2"] - t2) * v["out_o2"] * (1.0 - v["out_o2"])
    delta_h1 = (delta_o1 * w5 + delta_o2 * w7) * v["out_h1"] * (1.0 - v["out_h1"])
    delta_h2 = (delta_o1 * w6 + delta_o2 * w8) * v["out_h2"] * (1.0 - v["out_h2"])
    return {
        "w1": delta_h1 * i1, "w2": delta_h1 * i2, "w3": delta_h2 * i1, "w4": delta_h2 * i2,
        "w5": delta_o1 * v["out_h1"], "w6": delta_o1 * v["out_h2"],
        "w7": delta_o2 * v["out_h1"], "w8": delta_o2 * v["out_h2"],
        "b1": delta_h1 + delta_h2, "b2": delta_o1 + delta_o2,
    }


def gradient_step(params, gradients, learning_rate):
    """One step of plain gradient descent, `p <- p - learning_rate * dE/dp`, on dicts."""
    if not learning_rate > 0:
        raise ValueError(
            f"Argument `learning_rate` must be positive. Received: learning_rate={learning_rate}"
        )
    return {name: value - learning_rate * gradients[name] for name, value in params.items()}


def dense_kernels_2_2_2(weights):
    """The book's `w1..w8` as the kernels of two Keras `Dense(2)` layers.

    A Keras kernel has shape `(inputs, units)`: `kernel[i, j]` connects input `i` to unit `j`.
    So the hidden kernel is `[[w1, w3], [w2, w4]]` and the output kernel `[[w5, w7], [w6, w8]]`.

    Returns:
        `(hidden_kernel, output_kernel)`, float64 arrays of shape `(2, 2)`.
    """
    w1, w2, w3, w4, w5, w6, w7, w8 = _check_length("weights", weights, 8)
    return (
        np.array([[w1, w3], [w2, w4]], dtype="float64"),
        np.array([[w5, w7], [w6, w8]], dtype="float64"),
    )


def weights_from_dense_kernels(hidden_kernel, output_kernel):
    """The inverse of `dense_kernels_2_2_2`: a dict `{"w1": ..., ..., "w8": ...}`."""
    h = np.asarray(hidden_kernel, dtype="float64")
    o = np.asarray(output_kernel, dtype="float64")
    order = (h[0, 0], h[1, 0], h[0, 1], h[1, 1], o[0, 0], o[1, 0], o[0, 1], o[1, 1])
    return {f"w{k}": float(v) for k, v in enumerate(order, start=1)}


@contextlib.contextmanager
def float64_precision():
    """Computes in float64 inside the block: Keras's `floatx`, and JAX's `jax_enable_x64`.

    Without `jax_enable_x64`, JAX truncates every float64 array to float32 (with a
    warning). Both settings are restored on exit, exceptions included. Under torch, Keras's
    `ops.matmul` still computes a float64 `Dense` in float32.
    """
    floatx = keras.config.floatx()
    jax_config = None
    if keras.backend.backend() == "jax":
        import jax

        jax_config = jax.config
        x64 = jax_config.read("jax_enable_x64")
        jax_config.update("jax_enable_x64", True)
    keras.config.set_floatx("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)
        if jax_config is not None:
            jax_config.update("jax_enable_x64", x64)


def book_network_model():
    """The book's 2-2-2 sigmoid network as a float64 Keras model, with the book's weights.

    Keras gives each unit its own bias, so both hidden units start at `b1` and both output
    units at `b2`; the gradient of the book's shared bias is the sum of the two.

    Returns:
        A `keras.Sequential` of two float64 `Dense(2, activation="sigmoid")` layers.
    """
    hidden, output = dense_kernels_2_2_2(BOOK_NETWORK["weights"])
    model = keras.Sequential(
        [
            keras.Input(shape=(2,), dtype="float64"),
            keras.layers.Dense(2, activation="sigmoid", dtype="float64", name="hidden"),
            keras.layers.Dense(2, activation="sigmoid", dtype="float64", name="output"),
        ],
        name="book_2_2_2",
    )
    model.get_layer("hidden").set_weights([hidden, np.full(2, BOOK_NETWORK["b1"])])
    model.get_layer("output").set_weights([output, np.full(2, BOOK_NETWORK["b2"])])
    return model


def half_sum_squared_error(y_true, y_pred):
    """The book's per-example error `sum 1/2 (target - output)^2`, as a Keras loss function."""
    return 0.5 * keras.ops.sum(keras.ops.square(y_true - y_pred), axis=-1)


def backend_gradients(model, loss_fn, x, y):
    """The loss and its gradients for `model.trainable_variables`, by the backend's autodiff.

    TensorFlow records a `tf.GradientTape`; JAX differentiates `model.stateless_call` with
    `jax.value_and_grad`; torch runs the model eagerly and calls `torch.autograd.grad` on
    the variables' tensors. No hand-written derivative is involved.

    Args:
        model: a built Keras model.
        loss_fn: `loss_fn(y_true, y_pred)`, returning per-example losses (summed here).
        x: the inputs.
        y: the targets.

    Returns:
        `(loss, gradients)`: a float and a list of NumPy arrays, one per trainable variable.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = keras.ops.sum(loss_fn(y, model(x)))
        gradients = tape.gradient(loss, model.trainable_variables)
    elif backend == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_of(trainable):
            y_pred, _ = model.stateless_call(trainable, non_trainable, x)
            return keras.ops.sum(loss_fn(y, y_pred))

        loss, gradients = jax.value_and_grad(loss_of)(
            [v.value for v in model.trainable_variables]
        )
    elif backend == "torch":
        import torch

        loss = keras.ops.sum(loss_fn(keras.ops.convert_to_tensor(y), model(x)))
        gradients = torch.autograd.grad(loss, [v.value for v in model.trainable_variables])
        loss = loss.detach()
    else:
        raise ValueError(
            "`backend_gradients` supports the 'tensorflow', 'jax' and 'torch' backends. "
            f"Received: backend={backend!r}"
        )
    return float(loss), [keras.ops.convert_to_numpy(g) for g in gradients]


def conv_output_size(input_size, kernel_size, stride=1, padding=0):
    """The book's `W2 = (W1 - F + 2P) / S + 1`, as every framework computes it.

    When `S` does not divide `W1 - F + 2P` the book's formula is not an integer; Keras,
    TensorFlow, PyTorch and JAX all floor it: the last `(W1 - F + 2P) mod S` rows, which no
    full window reaches, are dropped.

    Args:
        input_size: `W1`, the input width (or height).
        kernel_size: `F`, the filter (or pooling window) width.
        stride: `S`. Defaults to `1`.
        padding: `P`, zeros added on EACH side. Defaults to `0`.

    Returns:
        `W2`, an int.

    Example:

    >>> conv_output_size(7, 3, stride=2, padding=1)
    4
    >>> conv_output_size(5, 3, stride=2)
    2
    """
    _check_int("input_size", input_size, minimum=1)
    _check_int("kernel_size", kernel_size, minimum=1)
    _check_int("stride", stride, minimum=1)
    _check_int("padding", padding, minimum=0)
    if kernel_size > input_size + 2 * padding:
        raise ValueError(
            "Argument `kernel_size` must fit in the padded input (input_size + 2 * padding = "
            f"{input_size + 2 * padding}). Received: kernel_size={kernel_size}"
        )
    return (input_size - kernel_size + 2 * padding) // stride + 1


def keras_padding(input_size, kernel_size, stride, padding):
    """The zeros Keras adds before and after one axis for `padding="valid"` or `"same"`.

    `"valid"` is `P = 0`, so `W2 = floor((W1 - F) / S) + 1`. `"same"` first fixes the output,
    `W2 = ceil(W1 / S)`, then adds the fewest zeros that make it so:
    `total = max((W2 - 1) * S + F - W1, 0)`, split `total // 2` before and the rest after
    (so an odd total puts the extra zero at the end, unlike the book's symmetric `P`).

    Args:
        input_size: `W1`.
        kernel_size: `F`.
        stride: `S`.
        padding: `"valid"` or `"same"`.

    Returns:
        `(before, after)`, two ints.
    """
    _check_int("input_size", input_size, minimum=1)
    _check_int("kernel_size", kernel_size, minimum=1)
    _check_int("stride", stride, minimum=1)
    if padding == "valid":
        return 0, 0
    if padding != "same":
        raise ValueError(
            f"Argument `padding` must be 'valid' or 'same'. Received: padding={padding!r}"
        )
    output = math.ceil(input_size / stride)
    total = max((output - 1) * stride + kernel_size - input_size, 0)
    return total // 2, total - total // 2


def keras_output_size(input_size, kernel_size, stride, padding):
    """The output size of a Keras conv/pool layer, via `keras_padding` and the book's formula.

    With `before + after` zeros in place of `2P`: `W2 = floor((W1 - F + before + after) / S) + 1`.
    """
    before, after = keras_padding(input_size, kernel_size, stride, padding)
    if kernel_size > input_size + before + after:
        raise ValueError(
            f"Argument `kernel_size` must fit in the input ({input_size}) with padding "
            f"{padding!r}. Received: kernel_size={kernel_size}"
        )
    return (input_size - kernel_size + before + after) // stride + 1


def conv_parameter_count(kernel_size, in_channels, filters, use_bias=True):
    """The weights of a 2-D convolution: `(F * F * D + 1) * K` with a bias, else `F * F * D * K`.

    Example:

    >>> conv_parameter_count(3, in_channels=3, filters=2)
    56
    """
    _check_int("kernel_size", kernel_size, minimum=1)
    _check_int("in_channels", in_channels, minimum=1)
    _check_int("filters", filters, minimum=1)
    return (kernel_size * kernel_size * in_channels + int(bool(use_bias))) * filters


def epochs_to_target(values, target, higher_is_better=True):
    """The 1-based epoch at which a metric first reaches `target`, or `None` if it never does.

    Example:

    >>> epochs_to_target([0.5, 0.8, 0.96, 0.97], target=0.95)
    3
    """
    for epoch, value in enumerate(values, start=1):
        if (value >= target) if higher_is_better else (value <= target):
            return epoch
    return None


def time_to_target(epoch_seconds, epochs):
    """The wall time of the first `epochs` epochs, or `None` when `epochs` is `None`."""
    if epochs is None:
        return None
    if epochs > len(epoch_seconds):
        raise ValueError(
            f"Argument `epochs` must be at most len(epoch_seconds)={len(epoch_seconds)}. "
            f"Received: epochs={epochs}"
        )
    return float(sum(epoch_seconds[:epochs]))


def least_squares_hessian(x):
    """The Hessian of the mean squared error `mean((x @ w - y)^2)`: `2 / n * x.T @ x`."""
    x = np.asarray(x, dtype="float64")
    if x.ndim != 2:
        raise ValueError(f"Argument `x` must be a 2-D array. Received: x.shape={x.shape}")
    return 2.0 / len(x) * x.T @ x


def gradient_descent_limit(x):
    """The largest stable learning rate of plain gradient descent on `mean((x @ w - y)^2)`.

    Gradient descent on a quadratic diverges for `learning_rate >= 2 / lambda_max`, where
    `lambda_max` is the Hessian's largest eigenvalue; the number of steps it needs grows with
    the condition number `lambda_max / lambda_min`, which unequal feature scales inflate.

    Returns:
        `(limit, condition_number)`, two floats.
    """
    eigenvalues = np.linalg.eigvalsh(least_squares_hessian(x))
    return float(2.0 / eigenvalues[-1]), float(eigenvalues[-1] / eigenvalues[0])


def mean_and_spread(values):
    """`(mean, standard deviation)` of a list of floats (population std; 0 for one value)."""
    values = np.asarray(values, dtype="float64")
    if values.size == 0:
        raise ValueError("Argument `values` must not be empty. Received: values=[]")
    return float(values.mean()), float(values.std())


GAIN_EFFECTS = ("helps", "hurts", "no clear effect")


def classify_gain(gain, spread, spreads=1.0, min_gain=0.0):
    """Names the effect of a change from its mean gain over seeds and their spread.

    A gain "helps" when it exceeds both `spreads` times the spread and `min_gain`, "hurts"
    when it is below both their negatives, and otherwise has "no clear effect": the
    seed-to-seed noise could have made it. With a spread of 0 (one seed), any gain above
    `min_gain` counts.

    Args:
        gain: the mean gain (higher is better; pass an error reduction, not an error).
        spread: the spread of the gains over seeds, such as their standard deviation (the
            second value of `mean_and_spread` on paired gains).
        spreads: how many spreads a gain must exceed. Defaults to `1.0`.
        min_gain: the smallest gain that counts, however small the spread. Defaults to
            `0.0`.

    Returns:
        One of `GAIN_EFFECTS`: `"helps"`, `"hurts"` or `"no clear effect"`.

    Example:

    >>> classify_gain(0.05, 0.01), classify_gain(-0.05, 0.01), classify_gain(0.005, 0.01)
    ('helps', 'hurts', 'no clear effect')
    """
    threshold = spreads * spread
    if gain > threshold and gain > min_gain:
        return "helps"
    if gain < -threshold and gain < -min_gain:
        return "hurts"
    return "no clear effect"


def _check_length(name, values, length):
    values = tuple(float(v) for v in values)
    if len(values) != length:
        raise ValueError(
            f"Argument `{name}` must hold {length} numbers. Received: {name}={values}"
        )
    return values


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"Argument `{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
        )

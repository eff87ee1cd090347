"""LocallyConnected2D: a 2-D convolution with unshared weights, restored for Keras 3."""

import itertools
import math

import keras
import numpy as np
from keras import ops

from kfound import checks

_PADDINGS = ("valid", "same")
_DATA_FORMATS = ("channels_last", "channels_first")
# Keras 2's `implementation` values: the same function, three weight layouts.
_IMPLEMENTATIONS = (1, 2, 3)
MAX_KERNEL_BYTES = 2**30


def _output_length(length, kernel, stride, padding):
    if length is None:
        return None
    if padding == "same":
        return -(-length // stride)
    return max(length - kernel, -1) // stride + 1


@keras.saving.register_keras_serializable(package="kfound")
class LocallyConnected2D(keras.layers.Layer):
    """Locally-connected layer for 2D inputs: a `Conv2D` with unshared weights.

    Works like `Conv2D`, except that every output position has its own filters:
    the window at output position `(r, c)` is multiplied by the kernel slice of
    that position. The layer was part of Keras 2 and removed in Keras 3; this
    restores it with the Keras 2 arguments and weight layout
    (`implementation=1`), so that `set_weights` of a Keras 2 layer's weights
    gives the Keras 2 outputs:

    - `kernel`: `(output_rows * output_cols, kernel_rows * kernel_cols *
      input_channels, filters)`, positions in row-major order. The middle axis
      is a flattened window, ordered `(kernel_row, kernel_col, channel)` for
      `channels_last` and `(channel, kernel_row, kernel_col)` for
      `channels_first`, as in Keras 2.
    - `bias`: `(output_rows, output_cols, filters)`. For `channels_first`, Keras
      2 *reshaped* (did not transpose) it to `(filters, output_rows,
      output_cols)` before adding it; this layer does the same.

    The layer always keeps Keras 2's `implementation=1` layout: the forward pass
    extracts all windows with `kernel_size` strided slices and applies every
    position's kernel in one batched matmul. Keras 2's `implementation=2` (a
    dense, masked kernel) and `implementation=3` (a sparse kernel) compute the
    same function with other layouts; a layer constructed with one of them
    (as a Keras 2 config always says which) takes weights in that layout in
    `set_weights` and converts them, so a Keras 2 layer's `get_weights()`
    reproduce its outputs. Keras 2 padded `"same"` for them around the centre
    of the window (`kernel_size // 2` before it); weights whose windows this
    layer's padding cannot hold (some even kernels and strides) are refused. Unlike
    Keras 2's `implementation=1`, `padding="same"` is supported; it pads like
    `Conv2D` does (TensorFlow's "SAME" convention, the extra row or column at
    the bottom/right), so with every position's kernel set to the same `Conv2D`
    kernel the two layers agree.

    The weights depend on the spatial input size, so the input's height, width
    and channels must be known when the layer is built, and the layer only
    accepts inputs of that size afterwards. The kernel grows with the input's
    area: `build` refuses a kernel above `max_kernel_bytes` before allocating
    it (a 256x256x64 input and 64 3x3 filters would need 9.5 GB). The windows
    extracted in `call` take `batch_size` times the kernel's size divided by
    `filters`.

    The default `"glorot_uniform"` computes its fans from the whole 3-D kernel,
    which includes the number of positions, as in Keras 2: initial weights are
    `sqrt(output_rows * output_cols)` times smaller than a `Conv2D`'s. Pass
    e.g. `keras.initializers.VarianceScaling` with an explicit scale if that
    matters.

    Args:
        filters: positive integer, the number of output filters.
        kernel_size: an integer or a tuple of 2 integers, the height and width
            of the window.
        strides: an integer or a tuple of 2 integers, the strides along height
            and width. Defaults to `1`.
        padding: `"valid"` (no padding) or `"same"` (output size
            `ceil(input_size / stride)`), case-insensitive. Defaults to
            `"valid"`.
        data_format: `"channels_last"` (`(batch, rows, cols, channels)`) or
            `"channels_first"` (`(batch, channels, rows, cols)`). Defaults to
            `keras.config.image_data_format()`.
        activation: activation function. Defaults to `None` (linear).
        use_bias: whether the layer adds a per-position bias. Defaults to `True`.
        kernel_initializer: initializer of `kernel`. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of `bias`. Defaults to `"zeros"`.
        kernel_regularizer: regularizer of `kernel`. Defaults to `None`.
        bias_regularizer: regularizer of `bias`. Defaults to `None`.
        activity_regularizer: regularizer of the output. Defaults to `None`.
        kernel_constraint: constraint of `kernel`. Defaults to `None`.
        bias_constraint: constraint of `bias`. Defaults to `None`.
        implementation: `1`, `2` or `3`, the Keras 2 weight layout that
            `set_weights` accepts besides this layer's own (`1`). Defaults to
            `1`.
        max_kernel_bytes: positive int, the largest kernel `build` allocates,
            in bytes. Defaults to `2**30` (1 GiB).
        **kwargs: base `Layer` arguments such as `name` and `dtype`.

    Call arguments:
        inputs: a 4-D tensor of the spatial size and channels the layer was
            built with.

    Returns:
        A 4-D tensor `(batch, new_rows, new_cols, filters)` for
        `channels_last`, or `(batch, filters, new_rows, new_cols)` for
        `channels_first`.

    Example:

    >>> x = np.random.rand(2, 32, 32, 3).astype("float32")
    >>> layer = LocallyConnected2D(64, 3)
    >>> layer(x).shape
    (2, 30, 30, 64)
    >>> tuple(layer.kernel.shape)  # (30 * 30) positions, 3*3*3 inputs each.
    (900, 27, 64)

    Reference:
        - [Taigman et al., 2014. DeepFace: Closing the Gap to Human-Level
          Performance in Face Verification](
          https://openaccess.thecvf.com/content_cvpr_2014/papers/Taigman_DeepFace_Closing_the_2014_CVPR_paper.pdf),
          §3 (locally connected layers L4-L6).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        implementation=1,
        max_kernel_bytes=MAX_KERNEL_BYTES,
        **kwargs,
    ):
        filters = checks.positive_int("filters", filters)
        kernel_size = checks.int_tuple("kernel_size", kernel_size, 2)
        strides = checks.int_tuple("strides", strides, 2)
        padding = checks.one_of("padding", padding, _PADDINGS, case_sensitive=False)
        if data_format is None:
            data_format = keras.config.image_data_format()
        data_format = checks.one_of("data_format", data_format, _DATA_FORMATS)
        implementation = checks.one_of("implementation", implementation, _IMPLEMENTATIONS)
        max_kernel_bytes = checks.positive_int("max_kernel_bytes", max_kernel_bytes)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.data_format = data_format
        self.implementation = implementation
        self.max_kernel_bytes = max_kernel_bytes
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _spatial_and_channels(self, input_shape):
        if self.data_format == "channels_last":
            return input_shape[1], input_shape[2], input_shape[3]
        return input_shape[2], input_shape[3], input_shape[1]

    def _output_size(self, rows, cols):
        return (
            _output_length(rows, self.kernel_size[0], self.strides[0], self.padding),
            _output_length(cols, self.kernel_size[1], self.strides[1], self.padding),
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        rows, cols, channels = self._spatial_and_channels(input_shape)
        if channels is None:
            raise ValueError(
                "The channel dimension of the inputs to LocallyConnected2D must be "
                f"defined ({self.data_format}). Received: input_shape={input_shape}"
            )
        if rows is None or cols is None:
            raise ValueError(
                "LocallyConnected2D has weights per output position, so the height and "
                f"width of its inputs must be defined. Received: input_shape={input_shape}"
            )
        output_rows, output_cols = self._output_size(rows, cols)
        if output_rows < 1 or output_cols < 1:
            raise ValueError(
                f"The inputs are too small for kernel_size={self.kernel_size} with "
                f"strides={self.strides} and padding='{self.padding}': the output would "
                f"be {output_rows}x{output_cols}. Received: input_shape={input_shape}"
            )
        self.output_rows, self.output_cols = output_rows, output_cols
        self.input_size = (rows, cols, channels)
        window = self.kernel_size[0] * self.kernel_size[1] * channels
        shape = (output_rows * output_cols, window, self.filters)
        kernel_bytes = math.prod(shape) * np.dtype(self.variable_dtype).itemsize
        if kernel_bytes > self.max_kernel_bytes:
            raise ValueError(
                f"Argument `max_kernel_bytes` must be at least the kernel's size: "
                f"{output_rows}x{output_cols} positions with {window} weights per filter "
                f"make a kernel of {kernel_bytes / 2**30:.2f} GiB for "
                f"input_shape={input_shape}. Use a smaller input, kernel or filter count, "
                f"or strides, or raise `max_kernel_bytes` to {kernel_bytes} or more. "
                f"Received: max_kernel_bytes={self.max_kernel_bytes}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=shape,
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(output_rows, output_cols, self.filters),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        if self.data_format == "channels_last":
            spec_shape = (None, rows, cols, channels)
        else:
            spec_shape = (None, channels, rows, cols)
        self.input_spec = keras.layers.InputSpec(shape=spec_shape)

    def _pad_before(self):
        """The rows and columns of padding before the input, as `_pad` adds them."""
        if self.padding == "valid":
            return 0, 0
        rows, cols, _ = self.input_size
        return tuple(
            max((output - 1) * stride + kernel - length, 0) // 2
            for length, output, kernel, stride in zip(
                (rows, cols), (self.output_rows, self.output_cols), self.kernel_size,
                self.strides, strict=True,
            )
        )

    def _keras2_connections(self):
        """Keras 2's `(output_index, input_index)` pairs of its implementations 2 and 3.

        The indices are into one flattened output and input image, in `data_format`
        order, sorted as Keras 2's implementation 3 stores its kernel. Keras 2 puts
        each window `kernel // 2` before its centre `output * stride` for "same" (and
        at `output * stride` for "valid"), clipped to the input.
        """
        rows, cols, channels = self.input_size
        out_rows, out_cols, filters = self.output_rows, self.output_cols, self.filters

        def window(position, kernel, stride, length):
            start = position * stride - (kernel // 2 if self.padding == "same" else 0)
            return np.arange(max(start, 0), min(start + kernel, length))

        outputs, inputs = [], []
        for r, c in itertools.product(range(out_rows), range(out_cols)):
            in_r, in_c, ch, f = np.meshgrid(
                window(r, self.kernel_size[0], self.strides[0], rows),
                window(c, self.kernel_size[1], self.strides[1], cols),
                np.arange(channels), np.arange(filters), indexing="ij",
            )
            r_, c_ = np.full_like(f, r), np.full_like(f, c)
            if self.data_format == "channels_last":
                outputs.append(np.ravel_multi_index((r_, c_, f), (out_rows, out_cols, filters)))
                inputs.append(np.ravel_multi_index((in_r, in_c, ch), (rows, cols, channels)))
            else:
                outputs.append(np.ravel_multi_index((f, r_, c_), (filters, out_rows, out_cols)))
                inputs.append(np.ravel_multi_index((ch, in_r, in_c), (channels, rows, cols)))
        outputs = np.concatenate([o.ravel() for o in outputs])
        inputs = np.concatenate([i.ravel() for i in inputs])
        order = np.lexsort((inputs, outputs))
        return outputs[order], inputs[order]

    def _keras2_kernel_shape(self, connections):
        rows, cols, channels = self.input_size
        if self.implementation == 3:
            return (len(connections[0]),)
        if self.data_format == "channels_last":
            return (rows, cols, channels, self.output_rows, self.output_cols, self.filters)
        return (channels, rows, cols, self.filters, self.output_rows, self.output_cols)

    def _kernel_from_keras2(self, kernel, connections):
        """This layer's kernel from a Keras 2 implementation-2 or -3 kernel."""
        rows, cols, channels = self.input_size
        out_rows, out_cols, filters = self.output_rows, self.output_cols, self.filters
        (kernel_rows, kernel_cols), (stride_rows, stride_cols) = self.kernel_size, self.strides
        outputs, inputs = connections
        if self.data_format == "channels_last":
            r, c, f = np.unravel_index(outputs, (out_rows, out_cols, filters))
            in_r, in_c, ch = np.unravel_index(inputs, (rows, cols, channels))
        else:
            f, r, c = np.unravel_index(outputs, (filters, out_rows, out_cols))
            ch, in_r, in_c = np.unravel_index(inputs, (channels, rows, cols))
        if self.implementation == 3:
            values = kernel
        elif self.data_format == "channels_last":
            values = kernel[in_r, in_c, ch, r, c, f]
        else:
            values = kernel[ch, in_r, in_c, f, r, c]
        top, left = self._pad_before()
        i = in_r - (r * stride_rows - top)
        j = in_c - (c * stride_cols - left)
        if np.any((i < 0) | (i >= kernel_rows) | (j < 0) | (j >= kernel_cols)):
            raise ValueError(
                "Keras 2 centred its padding='same' windows (kernel_size // 2 before the "
                "centre), which for these arguments puts windows where this layer's "
                "Conv2D-style padding has none, so the weights cannot be converted. "
                f"Received: kernel_size={self.kernel_size}, strides={self.strides}, "
                f"input_shape={self.input_size}, implementation={self.implementation}"
            )
        if self.data_format == "channels_last":
            w = (i * kernel_cols + j) * channels + ch
        else:
            w = (ch * kernel_rows + i) * kernel_cols + j
        converted = np.zeros(tuple(self.kernel.shape), kernel.dtype)
        converted[r * out_cols + c, w, f] = values
        return converted

    def set_weights(self, weights):
        """Sets the weights, converting a Keras 2 kernel of `implementation` 2 or 3.

        Args:
            weights: `[kernel]` or `[kernel, bias]`, the kernel in this layer's layout
                or, when the layer was constructed with `implementation=2` or `3`, in
                that Keras 2 layout (as Keras 2's `get_weights()` returns it).
        """
        weights = list(weights)
        if self.built and self.implementation != 1 and weights:
            kernel = np.asarray(weights[0])
            if kernel.shape != tuple(self.kernel.shape):
                connections = self._keras2_connections()
                expected = self._keras2_kernel_shape(connections)
                if kernel.shape != expected:
                    raise ValueError(
                        f"Argument `weights` must start with a kernel of shape "
                        f"{tuple(self.kernel.shape)} or, in Keras 2's implementation="
                        f"{self.implementation} layout, {expected}. "
                        f"Received: weights[0].shape={kernel.shape}"
                    )
                weights[0] = self._kernel_from_keras2(kernel, connections)
        super().set_weights(weights)

    def _pad(self, inputs, rows, cols):
        """Pads like Conv2D's "same": the odd row/column goes to the bottom/right."""
        pads = []
        for length, output, kernel, stride in zip(
            (rows, cols),
            (self.output_rows, self.output_cols),
            self.kernel_size,
            self.strides,
            strict=True,
        ):
            total = max((output - 1) * stride + kernel - length, 0)
            pads.append((total // 2, total - total // 2))
        if self.data_format == "channels_last":
            pads = [(0, 0), *pads, (0, 0)]
        else:
            pads = [(0, 0), (0, 0), *pads]
        return ops.pad(inputs, pads)

    def _patches(self, inputs):
        """All windows, `(batch, positions, window)`, in the kernel's window order."""
        rows, cols, channels = self._spatial_and_channels(tuple(inputs.shape))
        if self.padding == "same":
            inputs = self._pad(inputs, rows, cols)
        (kernel_rows, kernel_cols), (stride_rows, stride_cols) = self.kernel_size, self.strides
        row_span = stride_rows * (self.output_rows - 1) + 1
        col_span = stride_cols * (self.output_cols - 1) + 1
        slices = []
        for i in range(kernel_rows):
            for j in range(kernel_cols):
                rows_slice = slice(i, i + row_span, stride_rows)
                cols_slice = slice(j, j + col_span, stride_cols)
                if self.data_format == "channels_last":
                    slices.append(inputs[:, rows_slice, cols_slice, :])
                else:
                    slices.append(inputs[:, :, rows_slice, cols_slice])
        positions = self.output_rows * self.output_cols
        window = kernel_rows * kernel_cols * channels
        if self.data_format == "channels_last":
            # (batch, out_rows, out_cols, kernel_rows * kernel_cols, channels).
            patches = ops.stack(slices, axis=3)
        else:
            # (batch, channels, kernel_rows * kernel_cols, out_rows, out_cols).
            patches = ops.transpose(ops.stack(slices, axis=2), (0, 3, 4, 1, 2))
        return ops.reshape(patches, (-1, positions, window))

    def call(self, inputs):
        patches = self._patches(inputs)
        outputs = ops.einsum("npk,pkf->npf", patches, self.kernel)
        outputs = ops.reshape(outputs, (-1, self.output_rows, self.output_cols, self.filters))
        if self.data_format == "channels_first":
            outputs = ops.transpose(outputs, (0, 3, 1, 2))
        if self.use_bias:
            if self.data_format == "channels_last":
                bias = self.bias
            else:
                # Keras 2's layout: a reshape, not a transpose, of (rows, cols, filters).
                bias = ops.reshape(
                    self.bias, (self.filters, self.output_rows, self.output_cols)
                )
            outputs = outputs + bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        rows, cols, _ = self._spatial_and_channels(tuple(input_shape))
        output_rows, output_cols = self._output_size(rows, cols)
        if self.data_format == "channels_last":
            return (input_shape[0], output_rows, output_cols, self.filters)
        return (input_shape[0], self.filters, output_rows, output_cols)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            "implementation": self.implementation,
            "max_kernel_bytes": self.max_kernel_bytes,
        }

"""The input checks shared by the layers that normalize along one channel axis."""


def channel_axis(layer_name, input_shape, axis):
    """Checks `axis` against `input_shape` and returns it as a non-negative index.

    Args:
        layer_name: the layer's class name, for the error message.
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
        raise ValueError(
            f"Argument `axis` is out of range for inputs of rank {rank}. Received: axis={axis}"
        )
    if axis % rank == 0:
        raise ValueError(
            "Argument `axis` must be a channel axis, not the batch axis 0. "
            f"Received: axis={axis}"
        )
    if input_shape[axis] is None:
        raise ValueError(
            f"The channel axis {axis} of the input must have a known size. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    return axis % rank

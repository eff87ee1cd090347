"""A compiled model's optimizer, built before `fit` so that TensorFlow traces `fit` once."""


def build_optimizer(model):
    """Builds `model`'s optimizer for its trainable variables, unless it is built.

    Under TensorFlow without a distribution strategy, Keras's `fit` builds the optimizer
    inside the first trace of its train function. Since that trace creates variables,
    `tf.function` then traces the function a second time, and tracing is most of the
    first epoch of a small model. Built beforehand, the train function is traced once. A
    metric compiled by name (`"accuracy"`) is built in that trace too: pass a metric
    object (`keras.metrics.SparseCategoricalAccuracy(name="accuracy")`), whose
    variables exist from the start.

    Nothing else changes: the optimizer's variables start from the same constants
    whenever they are made, so training gives the same result. Under JAX and torch,
    `fit` builds the optimizer before it traces anything, and this only builds it
    sooner.

    Call it where `fit` is called (in the same distribution scope), after the last
    change to which layers are trainable.

    Args:
        model: a compiled `keras.Model`.

    Returns:
        `model`.

    Raises:
        ValueError: if `model` is not compiled.

    Example:

    >>> from kfound import prebuild
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> model.compile("adam", "mse")
    >>> model = prebuild.build_optimizer(model)
    >>> model.optimizer.built
    True

    Reference:
    - [Better performance with tf.function: creating tf.Variables](
      https://www.tensorflow.org/guide/function#creating_tfvariables)
    """
    if getattr(model, "optimizer", None) is None:  # None or absent when never compiled
        raise ValueError(
            "Argument `model` must be compiled (its optimizer is built for its trainable "
            f"variables). Received: model={model.name!r}, not compiled"
        )
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return model

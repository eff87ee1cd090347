"""The shared layer-test helper, modelled on Keras's `testing.TestCase.run_layer_test`.

`run_layer_test` puts one layer configuration through every check that the project's
ground rules ask of a public layer:

1. `get_config` / `from_config` and `serialize` / `deserialize` round-trips, the latter
   with no `custom_objects` (so the class must be registered);
2. weight counts after `build`;
3. the symbolic output shape and dtype, against `compute_output_shape`;
4. an eager call against a NumPy reference;
5. one `fit` step with `jit_compile=True`;
6. a pass under the mixed_float16 and mixed_bfloat16 policies;
7. a `.keras` save and load with identical outputs;
8. on the TensorFlow backend, a `model.export()` SavedModel reload with identical outputs.

Checks 1-4 run for every configuration on every backend. The expensive ones, 5-7 (a
compiled `fit`, two mixed-precision passes, a `.keras` save), run for every configuration
under TensorFlow, and under JAX and torch once per layer class (and class of wrapped
layer) in each test process: there they test that the backend compiles, casts and saves
the layer, which one representative configuration shows, and repeating them for every
parameterization tripled `make test`'s cost for no new failure mode.
"""

import os

import keras
import numpy as np

BACKEND = keras.backend.backend()

_EXPENSIVE_CHECKS_DONE = set()  # Off TensorFlow: (layer kind, check) pairs already run.


def _first_of_its_kind(layer_cls, init_kwargs, check):
    """Whether expensive `check` runs: always on TF, else once per kind of layer."""
    if BACKEND == "tensorflow":
        return True
    kind = (layer_cls, check, *sorted(
        (name, type(value)) for name, value in init_kwargs.items()
        if isinstance(value, keras.layers.Layer)
    ))
    if kind in _EXPENSIVE_CHECKS_DONE:
        return False
    _EXPENSIVE_CHECKS_DONE.add(kind)
    return True


def _fresh_kwargs(init_kwargs):
    """Copies `init_kwargs`, cloning layer arguments so each construction gets its own."""
    fresh = {}
    for name, value in init_kwargs.items():
        if isinstance(value, keras.layers.Layer):
            value = value.__class__.from_config(value.get_config())
        fresh[name] = value
    return fresh


def _make_input(input_shape, input_dtype, seed):
    rng = np.random.default_rng(seed)
    if "int" in str(input_dtype):
        return rng.integers(0, 10, size=input_shape).astype(input_dtype)
    return rng.standard_normal(input_shape).astype(input_dtype)


def _model_around(layer, input_shape, input_dtype, call_kwargs):
    inputs = keras.Input(batch_shape=input_shape, dtype=input_dtype)
    outputs = layer(inputs, **call_kwargs)
    return keras.Model(inputs, outputs)


def _assert_config_round_trips(layer_cls, init_kwargs):
    layer = layer_cls(**_fresh_kwargs(init_kwargs))
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config, "from_config(get_config()) changed the config"

    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is layer_cls, f"deserialized a {type(restored)}, not {layer_cls}"
    assert restored.get_config() == config, "serialize/deserialize changed the config"
    registered = keras.saving.get_registered_name(layer_cls)
    assert registered.startswith("kfound>"), f"{layer_cls} registered as {registered!r}"


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    *,
    input_data=None,
    input_dtype="float32",
    call_kwargs=None,
    expected_output_shape=None,
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
    reference_fn=None,
    rtol=1e-5,
    atol=1e-5,
    mixed_precision_atol=5e-2,
    run_training_check=True,
    run_mixed_precision_check=True,
    run_saving_check=True,
    run_export_check=True,
    tmp_path=None,
):
    """Runs the standard checks on one layer configuration.

    Args:
        layer_cls: the layer class under test.
        init_kwargs: constructor arguments. Layer-valued arguments (for wrappers)
            are cloned for every construction.
        input_shape: the full input shape, batch included.
        input_data: the input array; defaults to standard-normal data of `input_shape`.
        input_dtype: the input dtype. Defaults to `"float32"`.
        call_kwargs: extra keyword arguments for the layer call, e.g. `{"training": True}`.
        expected_output_shape: the expected output shape, batch included.
            Defaults to `input_shape`.
        expected_num_trainable_weights: checked after `build` when given.
        expected_num_non_trainable_weights: checked after `build` when given.
        reference_fn: `reference_fn(layer, x) -> np.ndarray`, the NumPy reference for
            the eager call of the built `layer` on `x`. Skipped when `None`.
        rtol: relative tolerance of the reference check. Defaults to `1e-5`.
        atol: absolute tolerance of the reference check. Defaults to `1e-5`.
        mixed_precision_atol: how far a mixed-precision output may stray from the
            float32 one, relative to its scale. Defaults to `5e-2`.
        run_training_check: whether to run one `fit` step with `jit_compile=True`.
        run_mixed_precision_check: whether to run mixed_float16 and mixed_bfloat16.
        run_saving_check: whether to save and load a `.keras` file.
        run_export_check: whether to export a SavedModel (TensorFlow backend only).
        tmp_path: a folder for the saving checks (pytest's `tmp_path`); required when
            a saving or export check runs.

    Returns:
        The built float32 layer, for further checks by the caller.
    """
    call_kwargs = call_kwargs or {}
    expected_output_shape = tuple(expected_output_shape or input_shape)
    input_shape = tuple(input_shape)
    if input_data is None:
        input_data = _make_input(input_shape, input_dtype, seed=0)
    if (run_saving_check or run_export_check) and tmp_path is None:
        raise ValueError("run_layer_test needs `tmp_path` for its saving checks.")

    # 1. Config and serialization.
    _assert_config_round_trips(layer_cls, init_kwargs)

    # 2. Weight counts after build.
    layer = layer_cls(**_fresh_kwargs(init_kwargs))
    layer.build(input_shape)
    assert layer.built, "build() did not mark the layer built"
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, (
            f"{len(layer.trainable_weights)} trainable weights, "
            f"expected {expected_num_trainable_weights}"
        )
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, (
            f"{len(layer.non_trainable_weights)} non-trainable weights, "
            f"expected {expected_num_non_trainable_weights}"
        )

    # 3. Symbolic shape and dtype.
    symbolic_layer = layer_cls(**_fresh_kwargs(init_kwargs))
    symbolic = symbolic_layer(keras.KerasTensor(input_shape, dtype=input_dtype), **call_kwargs)
    assert tuple(symbolic.shape) == expected_output_shape, (
        f"symbolic output shape {symbolic.shape}, expected {expected_output_shape}"
    )
    assert symbolic.dtype == symbolic_layer.compute_dtype, (
        f"symbolic dtype {symbolic.dtype}, expected {symbolic_layer.compute_dtype}"
    )
    computed = symbolic_layer.compute_output_shape(input_shape)
    assert tuple(computed) == expected_output_shape, (
        f"compute_output_shape gave {computed}, expected {expected_output_shape}"
    )

    # 4. Eager call against the NumPy reference.
    output = keras.ops.convert_to_numpy(layer(input_data, **call_kwargs))
    assert output.shape == expected_output_shape
    assert np.all(np.isfinite(output)), "the eager output is not finite"
    if reference_fn is not None:
        expected = reference_fn(layer, np.asarray(input_data))
        np.testing.assert_allclose(output, expected, rtol=rtol, atol=atol)

    run_training_check = run_training_check and _first_of_its_kind(
        layer_cls, init_kwargs, "fit")
    run_mixed_precision_check = run_mixed_precision_check and _first_of_its_kind(
        layer_cls, init_kwargs, "mixed precision")
    run_saving_check = run_saving_check and _first_of_its_kind(layer_cls, init_kwargs, "save")

    # 5. One fit step, compiled with XLA.
    if run_training_check:
        _check_fit_step(layer_cls, init_kwargs, input_data, input_dtype, call_kwargs)

    # 6. Mixed precision.
    if run_mixed_precision_check:
        for policy in ("mixed_float16", "mixed_bfloat16"):
            _check_mixed_precision(
                layer_cls, init_kwargs, layer, input_data, call_kwargs, policy,
                mixed_precision_atol,
            )

    # 7. and 8. Saving.
    if run_saving_check or (run_export_check and BACKEND == "tensorflow"):
        model = _model_around(layer, input_shape, input_dtype, call_kwargs)
        reference = keras.ops.convert_to_numpy(model(input_data))
        if run_saving_check:
            path = os.path.join(tmp_path, f"{layer_cls.__name__}.keras")
            model.save(path)
            reloaded = keras.saving.load_model(path)
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(reloaded(input_data)), reference, rtol=0, atol=1e-6
            )
        if run_export_check and BACKEND == "tensorflow":
            _check_export(model, input_data, reference, os.path.join(tmp_path, "export"))
    return layer


def _check_fit_step(layer_cls, init_kwargs, input_data, input_dtype, call_kwargs):
    layer = layer_cls(**_fresh_kwargs(init_kwargs))
    inputs = keras.Input(batch_shape=input_data.shape, dtype=input_dtype)
    outputs = layer(inputs, **call_kwargs)
    # A trainable scale after the layer, so the step has something to train even when
    # the layer itself has no weights (augmentation layers).
    outputs = keras.layers.Dense(1)(keras.ops.reshape(outputs, (input_data.shape[0], -1)))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse", jit_compile=True)
    targets = np.zeros((input_data.shape[0], 1), "float32")
    history = model.fit(
        input_data, targets, batch_size=input_data.shape[0], epochs=1, verbose=0
    )
    loss = history.history["loss"][-1]
    assert np.isfinite(loss), f"the jit-compiled fit step gave a non-finite loss: {loss}"


def _check_mixed_precision(
    layer_cls, init_kwargs, float_layer, input_data, call_kwargs, policy, atol
):
    kwargs = _fresh_kwargs(init_kwargs)
    layer = layer_cls(**kwargs, dtype=policy)
    layer.build(input_data.shape)
    # Same weights as the float32 layer, so the outputs are comparable.
    for target, source in zip(layer.weights, float_layer.weights, strict=True):
        target.assign(source)
    for variable in layer.weights:
        assert variable.dtype == "float32", (
            f"{policy}: variable {variable.path} is {variable.dtype}"
        )
    output = layer(input_data, **call_kwargs)
    compute_dtype = keras.mixed_precision.Policy(policy).compute_dtype
    if keras.backend.is_float_dtype(output.dtype):
        assert keras.backend.standardize_dtype(output.dtype) == compute_dtype, (
            f"{policy}: output dtype {output.dtype}, expected {compute_dtype}"
        )
    low = keras.ops.convert_to_numpy(keras.ops.cast(output, "float32"))
    high = keras.ops.convert_to_numpy(float_layer(input_data, **call_kwargs))
    assert np.all(np.isfinite(low)), f"{policy}: output is not finite"
    scale = max(1.0, float(np.max(np.abs(high))))
    np.testing.assert_allclose(low, high, rtol=0, atol=atol * scale, err_msg=policy)


def _check_export(model, input_data, reference, path):
    import tensorflow as tf

    model.export(path, verbose=False)
    restored = tf.saved_model.load(path)
    exported = restored.serve(tf.constant(input_data)).numpy()
    np.testing.assert_allclose(exported, reference, rtol=0, atol=1e-5)


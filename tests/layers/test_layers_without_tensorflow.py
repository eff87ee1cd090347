"""kfound.layers and kfound.initializers import and run where TensorFlow is not installed."""

import os
import subprocess
import sys
import textwrap

import pytest

# Runs under JAX in a fresh interpreter in which `import tensorflow` fails, as it does
# where TensorFlow is not installed (the GPU machines have JAX and torch only).
SCRIPT = textwrap.dedent(
    """
    import sys

    sys.modules["tensorflow"] = None  # `import tensorflow` now raises ImportError.
    import keras
    import numpy as np

    import kfound.initializers
    import kfound.layers
    from kfound.layers import (
        LRN, GroupNorm, LocallyConnected2D, RandomPCALighting, WeightNorm,
        fit_pca_lighting, normalization_block, replace_batchnorm,
    )

    assert keras.backend.backend() == "jax", keras.backend.backend()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    inputs = keras.Input((8, 8, 3))
    x = RandomPCALighting(seed=0)(inputs)
    x = keras.layers.Conv2D(
        8, 3, kernel_initializer=kfound.initializers.SparseInitializer(4, seed=0)
    )(x)
    x = keras.layers.BatchNormalization()(x)
    x = LRN()(GroupNorm(groups=4)(x))
    x = WeightNorm(keras.layers.Conv2D(4, 3))(x)
    for layer in normalization_block("group", keras.layers.Conv2D(4, 1)):
        x = layer(x)
    x = LocallyConnected2D(2, 2)(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    model.compile("sgd", "mse", jit_compile=True)
    model.fit(images, np.zeros((4, 2), "float32"), epochs=1, verbose=0)
    assert np.all(np.isfinite(model.predict(images, verbose=0)))
    copy = replace_batchnorm(model, groups=4)
    assert not any(isinstance(la, keras.layers.BatchNormalization) for la in copy.layers)
    fit_pca_lighting(images, verbose=0)
    path = sys.argv[1]
    model.save(path)
    keras.saving.load_model(path)
    assert "tensorflow" not in sys.modules or sys.modules["tensorflow"] is None
    print("ok")
    """
)


@pytest.mark.backend_independent  # its subprocess runs JAX, whatever this backend
def test_layers_and_initializers_need_no_tensorflow(tmp_path):
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "model.keras")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), (
        result.stdout + result.stderr
    )

"""Without TensorFlow, `kfound.callbacks` imports and both monitors work (JAX and torch)."""

import os
import subprocess
import sys
import textwrap

import keras
import pytest

SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["tensorflow"] = None  # `import tensorflow` now raises ImportError

    import keras
    import numpy as np

    from kfound.callbacks import ActivationMonitor, GradientMonitor

    x = np.random.default_rng(0).uniform(size=(64, 6)).astype("float32")
    y = (x.sum(axis=1) > 3).astype("int32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, "relu"),
                              keras.layers.Dense(2, "softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    gradients, activations = GradientMonitor(every_n_batches=1), ActivationMonitor()
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0,
                        callbacks=[gradients, activations])
    assert gradients.history["grad_norm"].shape == (8, 2), gradients.history["grad_norm"]
    assert np.all(np.isfinite(gradients.history["grad_norm"]))
    assert activations.history["mean"].shape == (2, 2)
    assert len(history.history["grad_norm/" + gradients.history["layers"][0]]) == 2
    gradients.plot(sys.argv[1] + "/gradients.png")
    activations.plot(sys.argv[1] + "/activations.png")
    try:
        GradientMonitor(log_dir=sys.argv[1] + "/tb")
    except ImportError as error:
        print(error)
    print(keras.backend.backend(), "without tensorflow:", sys.modules["tensorflow"] is None)
""")


@pytest.mark.skipif(keras.backend.backend() == "tensorflow",
                    reason="the TensorFlow backend needs TensorFlow")
def test_both_monitors_work_without_tensorflow(tmp_path):
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"{keras.backend.backend()} without tensorflow: True"
    assert "needs the `tensorflow` package (`pip install tensorflow`)" in lines[-2]
    assert lines[-2].endswith(f"Received: log_dir='{tmp_path}/tb'")
    for name in ("gradients.png", "activations.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"

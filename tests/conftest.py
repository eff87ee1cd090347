"""Shared pytest fixtures."""

import os
import pathlib

import keras
import pytest

# `../shared/` beside the checkout holds team data (small pretrained weights). Users don't
# have it, so tests that need it skip visibly when it is absent.
SHARED_DIR = pathlib.Path(
    os.environ.get("KFOUND_SHARED_DIR", pathlib.Path(__file__).resolve().parents[2] / "shared")
)


@pytest.fixture(autouse=True)
def _isolated_keras_state():
    """Each test starts with a float32 policy, a fresh session and fixed seeds."""
    keras.config.set_dtype_policy("float32")
    # free_memory=False skips a full gc.collect(), which costs about a second per test.
    keras.utils.clear_session(free_memory=False)
    keras.utils.set_random_seed(1337)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def shared_weights_dir():
    """The folder of shared pretrained weights; skips the test when it is absent."""
    folder = SHARED_DIR / "data" / "weights"
    if not folder.is_dir():
        pytest.skip(f"shared weights are absent (looked in {folder}); users don't have them")
    return folder


def pytest_collection_modifyitems(config, items):
    backend = keras.backend.backend()
    for item in items:
        if backend != "tensorflow" and item.get_closest_marker("backend_independent"):
            item.add_marker(pytest.mark.skip(
                reason="backend-independent (NumPy, stdlib or argument checks, or "
                       "subprocesses that choose their own backend): run under TensorFlow only"))

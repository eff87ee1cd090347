import json
import os
import stat

import keras
import pytest

from kfound import io_utils


def test_write_json_round_trips_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    io_utils.write_json(path, {"val_accuracy": 0.5, "epochs": 3})
    assert json.loads(path.read_text()) == {"val_accuracy": 0.5, "epochs": 3}
    assert os.listdir(path.parent) == ["metrics.json"]


def test_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    io_utils.write_json(path, {"trials": 1})

    class Interrupted(Exception):
        pass

    with pytest.raises(Interrupted):
        with io_utils.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write('{"trials": 2, "trunc')
            raise Interrupted
    assert json.loads(path.read_text()) == {"trials": 1}
    assert os.listdir(tmp_path) == ["results.json"]


def test_atomic_path_keeps_the_extension(tmp_path):
    with io_utils.atomic_path(tmp_path / "model.keras") as tmp:
        assert tmp.endswith(".keras")
        open(tmp, "w").close()
    assert (tmp_path / "model.keras").exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        io_utils.write_json(tmp_path / "a.json", {})
        io_utils.write_text(tmp_path / "b.txt", "b")
    finally:
        os.umask(previous)
    for name in ("a.json", "b.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode


def save_model_with_an_unregistered_class(path, package="kfound"):
    """Saves a model whose last layer is a class then unregistered, as `package>Vanished`."""

    @keras.saving.register_keras_serializable(package=package, name="Vanished")
    class Vanished(keras.layers.Layer):
        def call(self, x):
            return x

    io_utils.save_model(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), Vanished()]),
                        path)
    del keras.saving.get_custom_objects()[f"{package}>Vanished"]
    return path


def test_load_model_names_an_unregistered_kfound_class(tmp_path):
    path = save_model_with_an_unregistered_class(tmp_path / "model.keras")
    with pytest.raises(ValueError) as error:
        io_utils.load_model(path, argument="weights")
    message = str(error.value)
    assert "\n" not in message and len(message) < 400
    assert "uses the class `kfound>Vanished`" in message and "`import kfound`" in message
    assert message.endswith(f"Received: weights={str(path)!r}")


def test_load_model_leaves_other_errors_to_keras(tmp_path):
    path = save_model_with_an_unregistered_class(tmp_path / "model.keras", package="theirs")
    with pytest.raises(TypeError, match="Could not locate class 'Vanished'"):
        io_utils.load_model(path)

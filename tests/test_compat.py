"""`kfound._compat`: the installed Keras and KerasTuner still have every private API used."""

import keras_tuner as kt

from kfound import _compat


def test_keras_tuner_has_every_private_name_kfound_uses():
    missing = _compat.missing_keras_tuner_private()
    assert not missing, (
        f"KerasTuner {kt.__version__} lacks private APIs that kfound/_compat.py uses: "
        f"{', '.join(missing)}. Update kfound/_compat.py, or pin keras-tuner in setup.cfg."
    )


def test_a_missing_keras_tuner_name_is_reported_by_its_path(monkeypatch):
    monkeypatch.setitem(_compat.KERAS_TUNER_PRIVATE, "keras_tuner.Oracle", ("_no_such_hook",))
    monkeypatch.setitem(_compat.KERAS_TUNER_PRIVATE, "keras_tuner.src.no_such_module",
                        ("Thing",))
    assert set(_compat.missing_keras_tuner_private()) == {
        "keras_tuner.Oracle._no_such_hook", "keras_tuner.src.no_such_module.Thing"}


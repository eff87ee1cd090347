import json
import os

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

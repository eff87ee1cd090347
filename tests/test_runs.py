import argparse
import json

import pytest

from kfound import runs
from kfound.data import load_digits


def _parse(argv, run_name="demo-{dataset}"):
    parser = argparse.ArgumentParser()
    runs.add_run_arguments(parser, run_name=run_name)
    parser.add_argument("--dataset", default="tfds:tf_flowers")
    return parser.parse_args(argv)


def test_start_run_fills_the_default_folder_and_writes_args(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _parse(["--seed", "7"])
    output = runs.start_run(args)
    assert output.as_posix() == "saved_models/demo-tf_flowers"
    written = json.loads((output / "args.json").read_text())
    assert written == {
        "seed": 7, "output": "saved_models/demo-tf_flowers", "smoke": False,
        "dataset": "tfds:tf_flowers",
    }


def test_start_run_honours_output(tmp_path):
    args = _parse(["--output", str(tmp_path / "here"), "--smoke"])
    assert runs.start_run(args) == tmp_path / "here"
    assert json.loads((tmp_path / "here" / "args.json").read_text())["smoke"] is True


def test_format_table_aligns_columns():
    table = runs.format_table(
        [{"state": "head", "acc": 0.5}, {"state": "scratch", "acc": 0.25}], ["state", "acc"]
    )
    assert table.splitlines() == [
        "state    acc",
        "-------  ------",
        "head     0.5000",
        "scratch  0.2500",
    ]


def test_load_digits_is_a_stratified_split_of_real_digits():
    (x, y), (x_val, y_val) = load_digits(validation_fraction=0.2)
    assert len(x) + len(x_val) == 1797
    assert x.shape[1:] == (8, 8, 1) and x.dtype == "float32"
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(y_val.tolist()) == set(range(10))
    (flat, _), _ = load_digits(images=False)
    assert flat.shape[1:] == (64,)


def test_load_digits_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match=r"`validation_fraction`.*Received: validation_fraction=1"):
        load_digits(validation_fraction=1)

import argparse
import ast
import json
import os
import pathlib
import sys

import pytest

import kfound.run_arguments
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


def test_start_run_refuses_a_default_folder_it_cannot_write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "saved_models").write_text("a file where the runs' folder should be")
    with pytest.raises(ValueError, match=r"^Argument `--output` must be a folder this process "
                                         r"can write to; .*saved_models is a file, not a "
                                         r"folder\. Received: output='.*demo-tf_flowers'$"):
        runs.start_run(_parse([]))


def test_start_run_honours_output(tmp_path):
    args = _parse(["--output", str(tmp_path / "here"), "--smoke"])
    assert runs.start_run(args) == tmp_path / "here"
    assert json.loads((tmp_path / "here" / "args.json").read_text())["smoke"] is True


def _recipe_args(argv):
    parser = argparse.ArgumentParser()
    runs.add_run_arguments(parser, run_name="demo", not_results=("verbose",))
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def _first_run(folder):
    args = _recipe_args(["--output", str(folder)])
    runs.start_run(args)
    (folder / "report.json").write_text("{}")
    (folder / "cache").mkdir()
    return json.loads((folder / "args.json").read_text())


def test_a_rerun_with_other_results_arguments_is_refused_before_any_work(tmp_path):
    recorded = _first_run(tmp_path)
    assert recorded["overwrite"] is False and "_not_results" not in recorded
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    args = _recipe_args(["--output", str(tmp_path), "--rate", "0.1", "--sizes", "3", "--seed",
                         "2", "--verbose"])
    with pytest.raises(ValueError) as error:
        runs.start_run(args)
    message = str(error.value)
    assert "--seed 1337 -> 2; --rate 0.5 -> 0.1; --sizes [1, 2] -> [3]. " in message
    assert "verbose" not in message and "pass --overwrite to start over" in message
    assert message.endswith(f"Received: output={str(tmp_path)!r}")
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_a_rerun_that_differs_only_in_arguments_that_change_no_result_proceeds(tmp_path):
    _first_run(tmp_path)
    args = _recipe_args(["--output", str(tmp_path), "--verbose"])
    assert runs.start_run(args) == tmp_path
    assert json.loads((tmp_path / "args.json").read_text())["verbose"] is True


def test_overwrite_deletes_the_previous_record_and_keeps_the_rest(tmp_path, capsys):
    _first_run(tmp_path)
    args = _recipe_args(["--output", str(tmp_path), "--rate", "0.1", "--overwrite"])
    runs.start_run(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["args.json", "cache"]
    assert json.loads((tmp_path / "args.json").read_text())["rate"] == 0.1
    assert f"deleted the previous run's results in {tmp_path}" in capsys.readouterr().out


@pytest.mark.parametrize("content, problem", [
    ("{not json", r"cannot be read \(JSONDecodeError"),
    ("[1, 2]", "does not hold a JSON object"),
    (" " * (2**20 + 1), "is over 1048576 bytes"),
])
def test_an_unreadable_record_is_a_clear_error(tmp_path, content, problem):
    (tmp_path / "args.json").write_text(content)
    with pytest.raises(ValueError, match=f"{problem}.*; pass --overwrite .*Received: output="):
        runs.start_run(_recipe_args(["--output", str(tmp_path)]))


def test_without_not_results_there_is_no_rerun_rule(tmp_path):
    # The search resumes by its own rule (its space and tuner) and has its own --overwrite.
    (tmp_path / "args.json").write_text(json.dumps({"seed": 1}))
    args = _parse(["--output", str(tmp_path)])
    assert not hasattr(args, "overwrite")
    assert runs.start_run(args) == tmp_path


def test_run_arguments_needs_only_the_standard_library():
    # Scripts load it by path to check their flags before importing Keras or TensorFlow.
    tree = ast.parse(pathlib.Path(kfound.run_arguments.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported and imported <= sys.stdlib_module_names


def test_finish_run_writes_the_report_and_its_plot_and_says_what_next(tmp_path, capsys):
    from matplotlib.figure import Figure

    report = {"recipe": "demo", "plot": "demo.png", "status": "confirmed"}
    for argv, next_step in [
        (["--smoke"], "Next: the full run, python recipes/demo.py"),
        (["--overwrite"], f"recipes/build_index.py --collect {tmp_path} --recipes demo"),
    ]:
        args = _recipe_args([*argv, "--output", str(tmp_path / "demo")])
        runs.start_run(args)
        assert runs.finish_run(args, report, Figure()) is report
        out = capsys.readouterr().out
        assert f"Wrote {tmp_path / 'demo' / 'report.json'}, " in out and next_step in out
    assert json.loads((tmp_path / "demo" / "report.json").read_text()) == report
    assert (tmp_path / "demo" / "demo.png").read_bytes().startswith(b"\x89PNG")
    args = _recipe_args(["--output", str(tmp_path / "elsewhere")])
    runs.start_run(args)
    runs.finish_run(args, report, Figure())
    assert "run into a folder named demo" in capsys.readouterr().out


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


@pytest.mark.backend_independent
@pytest.mark.parametrize("rule, good, bad, expected", [
    (kfound.run_arguments.integers(), [1, 7], [0, -2, 1.0, True], "a positive integer"),
    (kfound.run_arguments.integers(0), [0, 3], [-1], "a non-negative integer"),
    (kfound.run_arguments.integers(2, 10), [2, 10], [1, 11], "an integer in [2, 10]"),
    (kfound.run_arguments.integers(None), [-5], ["3"], "an integer"),
    (kfound.run_arguments.numbers(0, low_inclusive=False), [1e-9, 3],
     [0.0, -1.0, float("nan"), float("inf")], "a finite positive number"),
    (kfound.run_arguments.numbers(0), [0.0], [-0.5], "a finite non-negative number"),
    (kfound.run_arguments.numbers(0, 1, high_inclusive=False), [0.0, 0.5], [1.0, 1.5],
     "a finite number in [0, 1)"),
    (kfound.run_arguments.numbers(high=2), [-3.0, 2.0], [2.5], "a finite number <= 2"),
    (kfound.run_arguments.numbers(1), [1.0], [0.9], "a finite number >= 1"),
    (kfound.run_arguments.numbers(), [-1e30], [float("-inf")], "a finite number"),
])
def test_flag_rules_say_what_they_expect(rule, good, bad, expected):
    assert rule.expected == expected
    assert all(rule.holds(v) for v in good)
    assert not any(rule.holds(v) for v in bad)


@pytest.mark.backend_independent
def test_check_flags_names_the_first_bad_flag():
    rules = kfound.run_arguments
    args = argparse.Namespace(epochs=3, learning_rate=float("nan"), rates=[0.1, 0.5], size=None)
    checks = {"epochs": rules.integers(), "learning_rate": rules.numbers(0, low_inclusive=False),
              "size": rules.integers()}  # None: a flag left at its None default
    with pytest.raises(ValueError, match=r"^Argument `--learning-rate` must be a finite "
                                         r"positive number\. Received: learning_rate=nan$"):
        rules.check_flags(args, **checks)
    args.learning_rate = 0.1
    assert rules.check_flags(args, **checks) is args
    unit = rules.numbers(0, 1, high_inclusive=False)
    assert rules.check_flags(args, rates=unit) is args
    for rates in ([0.1, 1.5], [0.1, 0.1]):
        args.rates = rates
        with pytest.raises(ValueError, match=r"^Argument `--rates` must be a list of distinct "
                                             r"values, each a finite number in \[0, 1\)\. "
                                             rf"Received: rates=\[0\.1, {rates[1]}\]$"):
            rules.check_flags(args, rates=unit)
    args.rates = [0.1, 0.1]
    assert rules.check_flags(args, rates=rules.repeatable(unit)) is args
    args.rates = [0.1, 1.5]
    with pytest.raises(ValueError, match=r"^Argument `--rates` must be a list, each a finite "
                                         r"number in \[0, 1\)\. Received: rates=\[0\.1, 1\.5\]$"):
        rules.check_flags(args, rates=rules.repeatable(unit))
    assert str(rules.flag_error("min_size", "less than --max-size", 9)) == (
        "Argument `--min-size` must be less than --max-size. Received: min_size=9")


@pytest.mark.backend_independent
def test_check_flags_always_checks_the_seed_and_the_last_of_several_seeds():
    rules = kfound.run_arguments
    top = rules.MAX_SEED
    for seed in (-1, top + 1, True):
        with pytest.raises(ValueError, match=rf"^Argument `--seed` must be an integer in "
                                             rf"\[0, {top}\]\. Received: seed={seed}$"):
            rules.check_flags(argparse.Namespace(seed=seed))
    assert rules.check_flags(argparse.Namespace(seed=top)).seed == top
    several = argparse.Namespace(seed=top - 2, seeds=3)
    assert rules.check_flags(several, seeds=rules.integers()) is several
    several.seeds = 4
    with pytest.raises(ValueError, match=rf"^Argument `--seed` must be an integer in \[0, "
                                         rf"{top - 3}\] \(the last of its --seeds 4 seeds, "
                                         rf"seed \+ 3, must be at most {top}\)\. "
                                         rf"Received: seed={top - 2}$"):
        rules.check_flags(several, seeds=rules.integers())
    # A recipe with a rule of its own for --seed keeps it.
    assert rules.check_flags(argparse.Namespace(seed=-5), seed=rules.integers(None)).seed == -5


@pytest.mark.backend_independent
def test_check_writable_folder_accepts_a_folder_to_be(tmp_path):
    kfound.run_arguments.check_writable_folder(tmp_path / "new" / "run")
    assert os.listdir(tmp_path) == []  # Nothing created.


@pytest.mark.backend_independent
def test_check_writable_folder_refuses_a_path_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"Argument `output` must be a folder this process can "
                                         r"write to; .*file is a file, not a folder\. Received: "
                                         r"output='.*file/run'"):
        kfound.run_arguments.check_writable_folder(tmp_path / "file" / "run")


@pytest.mark.backend_independent
def test_check_writable_folder_refuses_a_read_only_folder(tmp_path, monkeypatch):
    # As root, a mode cannot make a folder read-only: ask os.access as the kernel would.
    monkeypatch.setattr(os, "access", lambda path, mode: path != str(tmp_path))
    with pytest.raises(ValueError, match=r"is not writable by this user\. Received: "
                                         r"model_dir="):
        kfound.run_arguments.check_writable_folder(tmp_path / "run", argument="model_dir")

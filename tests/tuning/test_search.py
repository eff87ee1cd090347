"""`tuning/search.py`: every tuner from a space file, grid counts, resume (also after kill -9)."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import keras
import pytest

from kfound.tuning import search

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = {
    "model": "mlp", "dataset": "digits", "objective": "val_accuracy",
    "hyperparameters": {
        "learning_rate": {"type": "float", "min": 1e-3, "max": 1e-1, "sampling": "log"},
        "units": {"type": "int", "min": 4, "max": 32},
        "activation": {"type": "choice", "values": ["relu", "tanh"]},
    },
}
GRID = {
    "model": "mlp", "dataset": "digits", "objective": "val_accuracy",
    "hyperparameters": {
        "learning_rate": {"type": "choice", "values": [0.003, 0.03]},
        "units": {"type": "choice", "values": [4, 8]},
    },
}


def _space(tmp_path, config, name="space.json"):
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return str(path)


def _trials(output):
    return json.loads((pathlib.Path(output) / "trials.json").read_text())


def _dashboard(output):
    """The HParams dashboard's rows, read back with TensorBoard's own reader and parser:
    `{run: {"hparams": {...}, "status": "STATUS_SUCCESS", metric tag: value}}`, and the
    experiment's hyperparameter names."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.util import tensor_util

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(pathlib.Path(output) / "tensorboard"))
    multiplexer.Reload()
    content = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    experiment = metadata.parse_experiment_plugin_data(content["."][metadata.EXPERIMENT_TAG])
    rows = {}
    for run, tags in content.items():
        if metadata.SESSION_START_INFO_TAG not in tags:
            continue
        start = metadata.parse_session_start_info_plugin_data(
            tags[metadata.SESSION_START_INFO_TAG])
        end = metadata.parse_session_end_info_plugin_data(tags[metadata.SESSION_END_INFO_TAG])
        row = {"hparams": {name: getattr(value, value.WhichOneof("kind"))
                           for name, value in start.hparams.items()},
               "status": api_pb2.Status.Name(end.status)}
        for info in experiment.metric_infos:
            events = multiplexer.Tensors(run, info.name.tag)
            row[info.name.tag] = float(tensor_util.make_ndarray(events[-1].tensor_proto))
        rows[run] = row
    return rows, [info.name for info in experiment.hparam_infos]


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband", "lipo", "tpe"])
def test_every_tuner_runs_a_smoke_search(tmp_path, tuner, capsys):
    output = tmp_path / "run"
    best = search.main(["--tuner", tuner, "--space", _space(tmp_path, SMALL), "--smoke",
                        "--max-trials", "2", "--output", str(output)])
    trials = _trials(output)
    assert len(trials) == 2 and {t["status"] for t in trials} == {"COMPLETED"}
    assert all(t["seconds"] > 0 and set(t) >= {"trial_id", "hyperparameters", "score"}
               for t in trials)
    assert json.loads((output / "best.json").read_text())["score"] == best["score"]
    for name in ("search.png", "args.json"):
        assert (output / name).stat().st_size > 0
    # The saved best model is the best trial's checkpoint: it scores what the trial scored.
    model = keras.saving.load_model(output / "best_model.keras", compile=False)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, validation = search.load_data(smoke=True)
    _, accuracy = model.evaluate(*validation, verbose=0)
    assert accuracy == pytest.approx(best["score"], abs=1e-6)
    printed = capsys.readouterr().out
    assert printed.count("] COMPLETED val_accuracy=") == 2 and "| best " in printed
    rows, names = _dashboard(output)  # HParams: a row per trial, Hyperband's too.
    assert sorted(names) == ["activation", "learning_rate", "units"]
    assert sorted(rows) == sorted(t["trial_id"] for t in trials)
    for trial in trials:
        row = rows[trial["trial_id"]]
        assert row["hparams"] == pytest.approx({k: v for k, v in trial["hyperparameters"].items()
                                                if not k.startswith("tuner/")})
        assert row["status"] == "STATUS_SUCCESS" and row["pruned"] == 0.0
        assert row["best_val_accuracy"] == pytest.approx(trial["score"])
        assert row["epochs_run"] == trial["epochs_run"] >= 1


def test_a_2x2_grid_gives_4_trials_and_resumes(tmp_path, monkeypatch):
    grid = _space(tmp_path, GRID)
    output = str(tmp_path / "grid")
    # Stopped after two points, then resumed with the same command: KerasTuner's own grid
    # oracle dies here with a KeyError (keras-tuner #1055).
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # recorded with each trial
    search.main(["--tuner", "grid", "--space", grid, "--smoke", "--max-trials", "2",
                 "--output", output])
    first = _trials(output)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    search.main(["--tuner", "grid", "--space", grid, "--smoke", "--output", output])
    trials = _trials(output)
    assert len(trials) == 4 and {t["status"] for t in trials} == {"COMPLETED"}
    points = {tuple(sorted(t["hyperparameters"].items())) for t in trials}
    assert len(points) == 4
    assert trials[:2] == first  # Not run again.
    assert [t["devices"] for t in trials] == [["2", "3"], ["2", "3"], ["1"], ["1"]]


PRUNED = {  # A grid: the default learning rate learns, the other barely moves.
    "model": "mlp", "dataset": "digits", "objective": "val_accuracy",
    "hyperparameters": {
        "learning_rate": {"type": "choice", "values": [0.03, 1e-5], "default": 0.03},
        "units": {"type": "choice", "values": [8]},
    },
}


def test_a_search_with_pruning_stops_the_hopeless_trial(tmp_path, capsys):
    output = tmp_path / "run"
    argv = ["--tuner", "grid", "--space", _space(tmp_path, PRUNED), "--epochs", "3",
            "--prune", "median", "--prune-warmup", "0", "--prune-min-trials", "1",
            "--output", str(output)]
    search.main(argv)
    good, hopeless = _trials(output)
    assert (good["epochs_run"], good["pruned"]) == (3, False)
    assert (hopeless["epochs_run"], hopeless["pruned"]) == (1, True)
    assert hopeless["status"] == "COMPLETED" and hopeless["score"] < good["score"]
    printed = capsys.readouterr().out
    assert "] COMPLETED (pruned after 1 epoch) val_accuracy=" in printed
    # TensorBoard's HParams dashboard: a row per trial.
    assert f"tensorboard --logdir {output / 'tensorboard'}" in printed
    rows, names = _dashboard(output)
    assert sorted(names) == ["learning_rate", "units"]
    for trial, pruned in ((good, 0.0), (hopeless, 1.0)):
        assert rows[trial["trial_id"]] == {
            "hparams": {"learning_rate": pytest.approx(trial["hyperparameters"]["learning_rate"]),
                        "units": 8},
            "status": "STATUS_SUCCESS", "best_val_accuracy": pytest.approx(trial["score"]),
            "epochs_run": trial["epochs_run"], "pruned": pruned}
    # The pruning flags change results: a rerun with others refuses to resume.
    with pytest.raises(ValueError, match=r"holds a search with another space or tuner"):
        search.main([*argv[:-6], "--output", str(output)])


def test_without_tensorboard_a_search_says_so_once_and_writes_no_dashboard(
        tmp_path, monkeypatch, capsys):
    from kfound.tuning import hparams_dashboard

    monkeypatch.setattr(hparams_dashboard, "available", lambda: False)
    output = tmp_path / "run"
    search.main(["--space", _space(tmp_path, SMALL), "--smoke", "--max-trials", "1",
                 "--output", str(output)])
    printed = capsys.readouterr().out
    assert printed.count("No HParams dashboard: the `tensorboard` package is not installed "
                         "(pip install tensorboard).") == 1
    assert "tensorboard --logdir" not in printed
    assert not (output / "tensorboard").exists() and (output / "best.json").exists()


@pytest.mark.parametrize("argv, match", [
    (["--epochs", "3"], r"`--epochs` fixes the epochs, but .* tunes `epochs`"),
    (["--tuner", "hyperband", "--prune", "median"],
     r"`prune` does not apply to tuner `hyperband`.* Received: prune='median'$"),
])
def test_flags_that_contradict_the_space(tmp_path, argv, match):
    config = json.loads(json.dumps(SMALL))
    config["hyperparameters"]["epochs"] = {"type": "int", "min": 1, "max": 2}
    with pytest.raises(ValueError, match=match):
        search.main(["--space", _space(tmp_path, config), "--output", str(tmp_path), *argv])


def test_resume_refuses_another_space(tmp_path):
    output = str(tmp_path / "run")
    search.main(["--space", _space(tmp_path, SMALL), "--smoke", "--max-trials", "1",
                 "--output", output])
    with pytest.raises(ValueError, match=r"holds a search with another space or tuner"):
        search.main(["--space", _space(tmp_path, GRID, "other.json"), "--smoke",
                     "--output", output])


@pytest.mark.parametrize("argv, match", [
    (["--role", "chief"], r"--role chief needs --oracle"),
    (["--role", "worker", "--oracle", "nohost"], r"--oracle must be HOST:PORT"),
    (["--worker-id", "chief2"], r"--worker-id must not contain 'chief'"),
    (["--worker-id", "../w1"], r"--worker-id must be letters, digits, '.', '_' or '-' \(it "
                               r"names a file in the run folder\). Received: worker_id='../w1'"),
    (["--max-trials", "0"], r"--max-trials must be >= 1"),
    (["--connect-timeout", "0"], r"--connect-timeout must be > 0 seconds"),
    (["--prune", "mean"], r"--prune: invalid choice: 'mean'"),
    (["--prune", "median", "--prune-warmup", "-1"],
     r"--prune-warmup must be >= 0. Received: prune_warmup=-1"),
    (["--prune", "median", "--prune-min-trials", "0"],
     r"--prune-min-trials must be >= 1. Received: prune_min_trials=0"),
    (["--prune-warmup", "3"], r"--prune-warmup applies only with --prune median. "
                              r"Received: prune='none'"),
])
def test_bad_flags(tmp_path, argv, match, capsys):
    with pytest.raises(SystemExit):
        search.main(["--space", "x.yaml", *argv])
    assert re.search(match, capsys.readouterr().err)


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _kill_after_first_trial(command, output, timeout=900):
    """Starts `command`, SIGKILLs it once a trial has completed; returns the trials then."""
    process = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    trials_file = pathlib.Path(output) / "trials.json"
    while time.time() < deadline and process.poll() is None:
        if trials_file.exists() and any(t["status"] == "COMPLETED" for t in _trials(output)):
            break
        time.sleep(0.05)
    assert process.poll() is None, "the search ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return [t for t in _trials(output) if t["status"] == "COMPLETED"]


@pytest.mark.parametrize("tuner, trials", [
    ("grid", 6),
    pytest.param("lipo", 5, marks=pytest.mark.slow),
    pytest.param("random", 5, marks=pytest.mark.slow),
    pytest.param("tpe", 5, marks=pytest.mark.slow),
])
def test_resume_after_kill_9(tmp_path, tuner, trials):
    config = json.loads(json.dumps(GRID))
    config["hyperparameters"]["units"]["values"] = [4, 8, 12]
    output = str(tmp_path / "run")
    command = [sys.executable, "tuning/search.py", "--tuner", tuner, "--smoke", "--space",
               _space(tmp_path, config if tuner == "grid" else SMALL), "--output", output]
    if tuner != "grid":
        command += ["--max-trials", str(trials)]
    before = _kill_after_first_trial(command, output)
    subprocess.run(command, cwd=ROOT, env=_env(), check=True, capture_output=True)
    final = _trials(output)
    assert len(final) == trials
    assert {t["status"] for t in final} == {"COMPLETED"}
    assert len({t["trial_id"] for t in final}) == trials
    assert len({tuple(sorted(t["hyperparameters"].items())) for t in final}) == trials
    by_id = {t["trial_id"]: t for t in final}
    assert [by_id[t["trial_id"]] for t in before] == before  # Finished trials never rerun.


def test_a_worker_without_a_chief_says_whom_it_waits_for_and_gives_up(tmp_path, capsys):
    from kfound.tuning import launch

    address = f"127.0.0.1:{launch.free_port()}"
    with pytest.raises(ConnectionError, match=rf"No chief answered at {address} within 0.5s: "
                                              rf"start the chief first .*--connect-timeout\. "
                                              rf"Received: oracle='{address}'"):
        search.main(["--space", _space(tmp_path, SMALL), "--role", "worker", "--oracle",
                     address, "--worker-id", "w1", "--connect-timeout", "0.5",
                     "--output", str(tmp_path / "run")])
    assert f"Worker w1: waiting for the chief at {address}" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def test_an_unwritable_output_is_one_line_on_stderr(tmp_path):
    (tmp_path / "file").write_text("x")
    out = subprocess.run(
        [sys.executable, "tuning/search.py", "--space", _space(tmp_path, SMALL), "--smoke",
         "--output", str(tmp_path / "file" / "run")],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    # The last line: TensorFlow's start-up logs may come before it.
    assert out.stderr.strip().splitlines()[-1:] == [
        "tuning/search.py: error: Argument `--output` must be a folder this process can write "
        f"to; {tmp_path / 'file'} is a file, not a folder. "
        f"Received: output='{tmp_path / 'file' / 'run'}'"]

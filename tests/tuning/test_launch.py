"""`tuning/launch.py`: a chief and workers on loopback, KerasTuner's gRPC protocol."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from kfound.tuning import launch

ROOT = pathlib.Path(__file__).resolve().parents[2]
GRID = {
    "model": "mlp", "dataset": "digits", "objective": "val_accuracy",
    "hyperparameters": {
        "learning_rate": {"type": "choice", "values": [0.003, 0.03]},
        "units": {"type": "choice", "values": [4, 8]},
    },
}


def _grid(tmp_path, units=(4, 8)):
    config = json.loads(json.dumps(GRID))
    config["hyperparameters"]["units"]["values"] = list(units)
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(config))
    return str(path)


def _trials(output):
    return json.loads((pathlib.Path(output) / "trials.json").read_text())


def test_two_workers_finish_the_grid_between_them(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    output = tmp_path / "run"
    code = launch.launch(["--tuner", "grid", "--space", _grid(tmp_path), "--smoke",
                          "--output", str(output)], workers=2)
    assert code == 0
    trials = _trials(output)
    assert len(trials) == 4 and {t["status"] for t in trials} == {"COMPLETED"}
    assert {t["worker"] for t in trials} == {"worker1", "worker2"}
    assert (output / "best_model.keras").exists() and (output / "best.json").exists()
    # The workers share the cores.
    threads = max(1, launch.available_cores() // 2)
    printed = capfd.readouterr().out
    assert printed.count(f"(threads: {threads})") == 2
    # Each worker prints one line per trial it finishes.
    lines = re.findall(r"^\[(worker\d)\] trial (\d+) COMPLETED val_accuracy=[\d.]+ in [\d.]+s$",
                       printed, re.M)
    assert sorted(trial for _, trial in lines) == sorted(t["trial_id"] for t in trials)
    assert {worker for worker, _ in lines} == {"worker1", "worker2"}


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_restarted_and_the_search_finishes(tmp_path):
    output = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "tuning/launch.py", "--workers", "2", "--", "--tuner", "grid",
         "--space", _grid(tmp_path, units=(4, 8, 12)), "--smoke", "--output", str(output)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    pids = {}
    for line in process.stdout:
        match = re.match(r"launch: (worker\d) pid (\d+)", line)
        if match:
            pids[match[1]] = int(match[2])
        if len(pids) == 2:
            break
    deadline = time.time() + 900
    while not (output / "trials.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(pids["worker1"], signal.SIGKILL)
    rest = process.stdout.read()
    assert process.wait() == 0
    assert "worker1 died" in rest
    trials = _trials(output)
    assert len(trials) == 6 and {t["status"] for t in trials} == {"COMPLETED"}


@pytest.mark.parametrize("args, kwargs, match", [
    (["--space", "s.yaml"], {"workers": 0},
     r"`workers` must be an integer >= 1. Received: workers=0"),
    (["--space", "s.yaml"], {"workers": 2, "threads_per_worker": 0},
     r"`threads_per_worker` must be an integer >= 1. Received: threads_per_worker=0"),
    (["--role", "chief"], {"workers": 2}, r"sets `--role` itself"),
    (["--space", "s.yaml"], {"workers": 1, "threads_per_worker": 4096, "pin_workers": True},
     r"`pin_workers` needs a core for each of workers \* threads_per_worker = 4096 threads; "
     r"\d+ cores can be pinned here. Received: pin_workers=True"),
])
def test_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        launch.launch(args, **kwargs)


@pytest.mark.parametrize("argv, match", [
    (["--workers", "2", "--tuner", "grid"], "put the search arguments after `--`"),
    (["--threads-per-worker", "0", "--", "--tuner", "grid"],
     "--threads-per-worker must be >= 1. Received: threads_per_worker=0"),
])
def test_bad_flags(argv, match, capsys):
    with pytest.raises(SystemExit):
        launch.main(argv)
    assert match in capsys.readouterr().err


def test_help_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["--help"])
    assert exit_info.value.code == 0
    assert "--workers N" in capsys.readouterr().out


def test_the_launcher_starts_without_tensorflow():
    # The launcher only starts processes: importing KerasTuner and TensorFlow would delay
    # the chief and the workers by seconds.
    # `tuning/launch.py` loads the launcher module by path, without `import kfound` (which
    # registers kfound's Keras classes and so imports Keras).
    code = ("import runpy, sys; sys.argv = ['launch.py', '--help']\n"
            "try:\n"
            f"    runpy.run_path({str(ROOT / 'tuning' / 'launch.py')!r}, run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(sorted({'keras', 'tensorflow', 'kfound'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "--workers N" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux's sched_setaffinity")
def test_a_pinned_child_runs_on_its_cores_and_the_launcher_keeps_its_own():
    ours = os.sched_getaffinity(0)
    core = min(ours)
    child = launch._popen_on([core], [sys.executable, "-c",
                                      "import os; print(sorted(os.sched_getaffinity(0)))"],
                             stdout=subprocess.PIPE, text=True)
    assert child.communicate(timeout=60)[0].strip() == f"[{core}]"
    assert os.sched_getaffinity(0) == ours


def test_the_flags_reach_the_launcher(monkeypatch):
    seen = {}
    monkeypatch.setattr(launch, "launch", lambda *args, **kwargs: seen.update(
        args=args, kwargs=kwargs) or 0)
    assert launch.main(["--workers", "3", "--threads-per-worker", "1", "--pin-workers", "--",
                        "--tuner", "grid"]) == 0
    assert seen["args"][:2] == (["--tuner", "grid"], 3)
    assert seen["kwargs"] == {"threads_per_worker": 1, "pin_workers": True}


@pytest.mark.slow
def test_a_worker_is_pruned_by_the_chief_s_oracle(tmp_path, monkeypatch, capfd):
    # The worker's `update_trial` goes over gRPC to the chief's oracle, which decides; its
    # STOPPED status comes back in KerasTuner's UpdateTrial response.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    config = json.loads(json.dumps(GRID))
    config["hyperparameters"] = {
        "learning_rate": {"type": "choice", "values": [0.03, 1e-5], "default": 0.03},
        "units": {"type": "choice", "values": [8]}}
    space = tmp_path / "pruned.json"
    space.write_text(json.dumps(config))
    output = tmp_path / "run"
    code = launch.launch(["--tuner", "grid", "--space", str(space), "--epochs", "3",
                          "--prune", "median", "--prune-warmup", "0", "--prune-min-trials",
                          "1", "--output", str(output)], workers=1)
    assert code == 0
    good, hopeless = _trials(output)
    assert (good["epochs_run"], good["pruned"]) == (3, False)
    assert (hopeless["epochs_run"], hopeless["pruned"]) == (1, True)
    printed = capfd.readouterr().out
    assert re.search(r"^\[worker1\] trial 1 COMPLETED val_accuracy=[\d.]+ in [\d.]+s, "
                     r"pruned after 1 epoch$", printed, re.M)

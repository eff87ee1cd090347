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


def _env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="pauses a worker with SIGSTOP")
def test_two_workers_share_the_grid_each_on_its_own_device(tmp_path):
    # `--workers auto` over CUDA_VISIBLE_DEVICES=0,1: two workers, one device each. (On a
    # CPU the frameworks ignore the variable; each trial records it all the same.)
    output = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "tuning/launch.py", "--workers", "auto", "--gpus-per-worker", "1",
         "--", "--tuner", "grid", "--space", _grid(tmp_path), "--smoke", "--output",
         str(output)],
        cwd=ROOT, env=_env(CUDA_VISIBLE_DEVICES="0,1"), stdout=subprocess.PIPE, text=True)
    # Whichever worker imports its framework first could finish the whole grid alone (a
    # smoke trial takes under a second under torch). So the first worker to finish a trial
    # is paused until the other has finished one too.
    pids, printed, paused, resumed = {}, [], None, False
    try:
        for line in process.stdout:
            printed.append(line)
            started = re.match(r"launch: (chief|worker\d) pid (\d+)", line)
            if started:
                pids[started[1]] = int(started[2])
            finished = re.match(r"\[(worker\d)\] trial", line)
            if finished and paused is None:
                paused = finished[1]
                os.kill(pids[paused], signal.SIGSTOP)
            elif finished and finished[1] != paused and not resumed:
                os.kill(pids[paused], signal.SIGCONT)
                resumed = True
    finally:
        if paused is not None and not resumed:
            os.kill(pids[paused], signal.SIGCONT)
        if process.poll() is None:  # The test failed: the launcher stops its processes.
            process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    assert process.returncode == 0
    printed = "".join(printed)
    # The chief trains nothing: it sees no GPU, so it reserves no memory on the workers'.
    # (Its /proc/PID/environ, read here before, once read empty on a loaded machine.)
    assert re.search(r"launch: chief pid \d+ on [\d.:]+ \(CUDA_VISIBLE_DEVICES=: it trains "
                     r"nothing\)\n", printed)
    trials = _trials(output)
    assert len(trials) == 4 and {t["status"] for t in trials} == {"COMPLETED"}
    assert {t["worker"] for t in trials} == {"worker1", "worker2"}
    own = {"worker1": ["0"], "worker2": ["1"]}
    assert all(t["devices"] == own[t["worker"]] for t in trials)
    assert (output / "best_model.keras").exists() and (output / "best.json").exists()
    # The workers share the cores, and each has its device.
    threads = max(1, launch.available_cores() // 2)
    for name, devices in own.items():
        assert re.search(rf"launch: {name} pid \d+ \(threads: {threads}, "
                         rf"CUDA_VISIBLE_DEVICES={devices[0]}\)", printed)
    # Each worker prints one line per trial it finishes.
    lines = re.findall(r"^\[(worker\d)\] trial (\d+) COMPLETED val_accuracy=[\d.]+ in [\d.]+s$",
                       printed, re.M)
    assert sorted(trial for _, trial in lines) == sorted(t["trial_id"] for t in trials)
    assert {worker for worker, _ in lines} == {"worker1", "worker2"}


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_restarted_and_the_search_finishes(tmp_path):
    output = tmp_path / "run"
    env = _env()
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
     r"`workers` must be an integer >= 1 or 'auto'. Received: workers=0"),
    (["--space", "s.yaml"], {"workers": "2"},
     r"`workers` must be an integer >= 1 or 'auto'. Received: workers='2'"),
    (["--space", "s.yaml"], {"workers": 2, "gpus_per_worker": 0},
     r"`gpus_per_worker` must be an integer >= 1. Received: gpus_per_worker=0"),
    (["--space", "s.yaml"], {"workers": 2, "gpus_per_worker": True},
     r"`gpus_per_worker` must be an integer >= 1. Received: gpus_per_worker=True"),
    (["--space", "s.yaml"], {"workers": 2, "max_restarts": -1},
     r"`max_restarts` must be an integer >= 0. Received: max_restarts=-1"),
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
    (["--workers", "many", "--", "--tuner", "grid"],
     "argument --workers: must be an integer >= 1 or 'auto'. Received: workers='many'"),
    (["--workers", "0", "--", "--tuner", "grid"], "--workers must be >= 1. Received: workers=0"),
    (["--gpus-per-worker", "0", "--", "--tuner", "grid"],
     "--gpus-per-worker must be >= 1. Received: gpus_per_worker=0"),
    (["--max-restarts", "-1", "--", "--tuner", "grid"],
     "--max-restarts must be >= 0. Received: max_restarts=-1"),
    # launch()'s own checks, before any process starts, as one line.
    (["--workers", "3", "--gpus-per-worker", "1", "--", "--tuner", "grid"],
     "needs workers * gpus_per_worker = 3 devices, but 2 are visible "
     "(CUDA_VISIBLE_DEVICES='0,1': 0,1). Received: gpus_per_worker=1"),
])
def test_bad_flags(argv, match, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(SystemExit):
        launch.main(argv)
    assert match in capsys.readouterr().err


def test_help_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "--workers N|auto [--gpus-per-worker K]" in printed and "nvidia-smi" in printed


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
    assert "--workers N|auto" in out.stdout
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
    assert seen["kwargs"] == {"threads_per_worker": 1, "pin_workers": True,
                              "gpus_per_worker": None}
    assert launch.main(["--workers", "auto", "--gpus-per-worker", "2", "--", "--x"]) == 0
    assert seen["args"][:2] == (["--x"], "auto")
    assert seen["kwargs"]["gpus_per_worker"] == 2


@pytest.mark.parametrize("listed, devices", [
    ("0,1", ["0", "1"]),
    (" 2 , 3 ", ["2", "3"]),
    ("", []),
    ("-1", []),
    ("1,-1,2", ["1"]),  # CUDA reads up to the first invalid entry
    ("GPU-8a1b,MIG-77c2", ["GPU-8a1b", "MIG-77c2"]),
])
def test_visible_devices_reads_cuda_visible_devices(listed, devices):
    assert launch.visible_devices({"CUDA_VISIBLE_DEVICES": listed}) == devices


NVIDIA_SMI = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-2222-3333-4444-555555555555)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-66666666-7777-8888-9999-000000000000)
  MIG 3g.20gb     Device  0: (UUID: MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)
  MIG 3g.20gb     Device  1: (UUID: MIG-ffffffff-0000-1111-2222-333333333333)
GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-44444444-5555-6666-7777-888888888888)
"""


def _nvidia_smi_on_path(tmp_path, monkeypatch, listing=NVIDIA_SMI, code=0):
    """An `nvidia-smi` executable that prints `listing` for `-L`, first on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "listing.txt").write_text(listing)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] && cat {folder / 'listing.txt'}\nexit {code}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.skipif(os.name != "posix", reason="a shell-script nvidia-smi")
def test_without_cuda_visible_devices_the_gpus_come_from_nvidia_smi(tmp_path, monkeypatch):
    _nvidia_smi_on_path(tmp_path, monkeypatch)
    # A GPU split into MIG instances is addressed by their UUIDs.
    expected = ["0", "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                "MIG-ffffffff-0000-1111-2222-333333333333", "2"]
    assert launch.visible_devices({}) == expected
    per_worker, unused, from_nvidia_smi = launch.assign_devices("auto", 2, environ={})
    assert per_worker == [expected[:2], expected[2:]] and unused == [] and from_nvidia_smi


@pytest.mark.skipif(os.name != "posix", reason="a shell-script nvidia-smi")
def test_no_device_to_give_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"none were found: CUDA_VISIBLE_DEVICES=''"):
        launch.assign_devices("auto", 1, environ={"CUDA_VISIBLE_DEVICES": ""})
    _nvidia_smi_on_path(tmp_path, monkeypatch, listing="No devices were found", code=6)
    with pytest.raises(ValueError, match=r"`nvidia-smi -L` failed \(exit code 6: No devices "
                       r"were found\)\. Set CUDA_VISIBLE_DEVICES"):
        launch.assign_devices("auto", 1, environ={})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi on it
    with pytest.raises(ValueError, match=r"gives each worker GPUs of its own, but none were "
                       r"found: CUDA_VISIBLE_DEVICES is unset and `nvidia-smi -L` is not "
                       r"installed\..*Received: gpus_per_worker=1"):
        launch.assign_devices(2, 1, environ={})
    with pytest.raises(ValueError, match=r"^Argument `workers` gives each worker GPUs .* or "
                       r"give --workers a number. Received: workers='auto'$"):
        launch.assign_devices("auto", environ={})


@pytest.mark.parametrize("workers, per_worker, expected, unused", [
    ("auto", 1, [["0"], ["1"], ["2"]], []),
    ("auto", 2, [["0", "1"]], ["2"]),
    (1, 3, [["0", "1", "2"]], []),
    (2, 1, [["0"], ["1"]], ["2"]),
])
def test_devices_are_split_among_the_workers(workers, per_worker, expected, unused):
    environ = {"CUDA_VISIBLE_DEVICES": "0,1,2"}
    assert launch.assign_devices(workers, per_worker, environ) == (expected, unused, False)


def test_too_few_devices_is_a_clear_error():
    environ = {"CUDA_VISIBLE_DEVICES": "0,1"}
    with pytest.raises(ValueError, match=r"needs at least 3 \(one worker's\) devices, but 2 "
                       r"are visible \(CUDA_VISIBLE_DEVICES='0,1': 0,1\). "
                       r"Received: gpus_per_worker=3"):
        launch.assign_devices("auto", 3, environ)
    with pytest.raises(ValueError, match=r"needs workers \* gpus_per_worker = 4 devices"):
        launch.assign_devices(2, 2, environ)


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

"""Runs a distributed search on this machine: one chief and N workers on loopback.

Each process is `python -m kfound.tuning.search <search args> --role ... --oracle
127.0.0.1:PORT`, KerasTuner's chief/worker protocol over gRPC with the run folder shared.
The chief holds the oracle and writes the results; the workers train.

A worker that dies (killed, out of memory) is restarted under the same worker id, and
KerasTuner hands it back the trial it was running (`Oracle.create_trial` returns a
tuner's ongoing trial), so the trial is retried and the search goes on. After
`max_restarts` deaths of one worker the launcher stops everything and exits non-zero;
running the same command again resumes the search.

The workers share this machine's cores. TensorFlow sizes its thread pools to every core
of the machine, so N workers would each run as many threads as there are cores and
crowd one another; each worker is therefore given `threads_per_worker` threads for its
intra-op and inter-op pools (TensorFlow's `TF_NUM_INTRAOP_THREADS` and
`TF_NUM_INTEROP_THREADS`, and `OMP_NUM_THREADS` for oneDNN), by default the cores
divided among the workers. A single worker gets every core.

Those variables do not cover every thread: tf.data and TensorFlow's runtime keep pools of
their own, so a worker given one thread still keeps more than one core busy. With
`pin_workers`, worker `i` is also bound to its own `threads_per_worker` cores (Linux's
`sched_setaffinity`), as if each worker had a machine of its own; the chief is not bound.

With `gpus_per_worker=K`, worker `i` gets GPUs of its own: the `i`-th K of the visible
devices, through `CUDA_VISIBLE_DEVICES` (which TensorFlow, JAX and torch all honour).
The visible devices are `CUDA_VISIBLE_DEVICES`'s entries, or, when it is unset, the GPUs
`nvidia-smi -L` lists (by index, with `CUDA_DEVICE_ORDER=PCI_BUS_ID` so that CUDA numbers
them as nvidia-smi does; a GPU split into MIG instances by their `MIG-` UUIDs). The chief,
which serves the oracle and trains nothing, gets none, so that its framework does not
reserve memory on the workers' GPUs. `workers="auto"` starts one worker per K devices.
"""

import argparse
import contextlib
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

_POLL_SECONDS = 0.2
HOST = "127.0.0.1"
NVIDIA_SMI_SECONDS = 30  # how long `nvidia-smi -L` may take (a wedged driver can hang it)


def free_port(host=HOST):
    """A TCP port that is free on `host` now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _own_cores():
    """The ids of the cores this process may run on, sorted; empty where the OS can't tell."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def available_cores():
    """The number of CPU cores this process may run on."""
    return len(_own_cores()) or os.cpu_count() or 1


def visible_devices(environ=None):
    """The GPUs this process may use, as `CUDA_VISIBLE_DEVICES` entries; `[]` for none.

    `CUDA_VISIBLE_DEVICES`'s entries when it is set (up to the first invalid one, `-1`
    for instance, as CUDA reads it), else `nvidia_smi_devices()`'s.
    """
    return _visible_devices(os.environ if environ is None else environ)[0]


def _visible_devices(environ):
    """`(devices, where)`: the visible devices and where they came from, in words."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        devices, problem = nvidia_smi_devices()
        return devices, ("CUDA_VISIBLE_DEVICES is unset and `nvidia-smi -L` " + (
            problem or f"lists {len(devices)}"))
    devices = []
    for entry in (e.strip() for e in listed.split(",")):
        if not entry or entry.startswith("-"):
            break
        devices.append(entry)
    return devices, f"CUDA_VISIBLE_DEVICES={listed!r}"


def nvidia_smi_devices():
    """`(devices, problem)`: the GPUs `nvidia-smi -L` lists, and why none, if it failed.

    Each GPU is its index, or, where it is split into MIG instances, their `MIG-` UUIDs
    (CUDA addresses a MIG instance by its UUID only).
    """
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=NVIDIA_SMI_SECONDS, check=True).stdout
    except FileNotFoundError:
        return [], "is not installed"
    except subprocess.TimeoutExpired:
        return [], f"did not answer within {NVIDIA_SMI_SECONDS}s"
    except subprocess.CalledProcessError as error:
        said = (error.stderr or error.stdout or "").strip()[:200]
        return [], f"failed (exit code {error.returncode}{': ' + said if said else ''})"
    except OSError as error:
        return [], f"could not run ({error})"
    devices = []  # [gpu index, [its MIG UUIDs]]
    for line in listing.splitlines():
        gpu = re.match(r"GPU (\d+):", line.strip())
        mig = re.search(r"\(UUID: (MIG-[^)\s]+)\)", line)
        if gpu:
            devices.append([gpu[1], []])
        elif mig and devices:
            devices[-1][1].append(mig[1])
    return [d for index, migs in devices for d in (migs or [index])], None


def assign_devices(workers, gpus_per_worker=None, environ=None):
    """Splits the visible devices among workers, `gpus_per_worker` each.

    Args:
        workers: the number of workers, or `"auto"`: one per `gpus_per_worker` devices.
        gpus_per_worker: the devices each worker gets, at least 1. Defaults to `None`: 1,
            for `workers="auto"`.
        environ: the environment to read `CUDA_VISIBLE_DEVICES` from. Defaults to
            `os.environ`.

    Returns:
        `(per_worker, unused, from_nvidia_smi)`: each worker's device list, the devices no
        worker got, and whether the list came from `nvidia-smi` (so that CUDA must number
        the devices as it does).

    Raises:
        ValueError: no device was found, or fewer than the workers need. It names
            `gpus_per_worker`, or `workers` when that alone asked for devices.
    """
    environ = os.environ if environ is None else environ
    devices, where = _visible_devices(environ)
    per = gpus_per_worker or 1
    name, value = (("gpus_per_worker", gpus_per_worker) if gpus_per_worker is not None
                   else ("workers", workers))
    if not devices:
        raise ValueError(
            f"Argument `{name}` gives each worker GPUs of its own, but none were found: "
            f"{where}. Set CUDA_VISIBLE_DEVICES to the devices to share out, or "
            f"{'drop --gpus-per-worker' if gpus_per_worker else 'give --workers a number'}. "
            f"Received: {name}={value!r}")
    count = len(devices) // per if workers == "auto" else workers
    if count < 1 or count * per > len(devices):
        needs = (f"workers * gpus_per_worker = {count * per}" if workers != "auto"
                 else f"at least {per} (one worker's)")
        raise ValueError(
            f"Argument `{name}` needs {needs} devices, but {len(devices)} are visible "
            f"({where}: {','.join(devices)}). Received: {name}={value!r}")
    per_worker = [devices[i * per:(i + 1) * per] for i in range(count)]
    return per_worker, devices[count * per:], "CUDA_VISIBLE_DEVICES" not in environ


def is_listening(host, port):
    """Whether a TCP server accepts connections on `host:port` now."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _popen_on(cores, command, **kwargs):
    """`subprocess.Popen(command)`, the child bound to `cores` (all of ours when `None`).

    The calling thread binds itself for the moment of the fork, which the child inherits:
    unlike a `preexec_fn`, this is safe while other threads run.
    """
    if cores is None:
        return subprocess.Popen(command, **kwargs)
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        return subprocess.Popen(command, **kwargs)
    finally:
        os.sched_setaffinity(0, previous)


def _is_count(value, minimum=1):
    """Whether `value` is an `int` (not a `bool`) of at least `minimum`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def launch(search_args, workers, max_restarts=3, port=None, python=sys.executable,
           verbose=True, threads_per_worker=None, pin_workers=False, gpus_per_worker=None):
    """Starts a chief and `workers` workers for `search_args`; returns the exit code.

    Args:
        search_args: the arguments of `tuning/search.py` (without `--role`/`--oracle`).
        workers: the number of workers, at least 1, or `"auto"`: one per
            `gpus_per_worker` visible devices (1 each by default).
        max_restarts: how many times one worker may die and be restarted. Defaults to 3.
        port: the chief's port on 127.0.0.1. Defaults to a free one.
        python: the Python interpreter to run. Defaults to this one.
        verbose: print the processes' ids and restarts. Defaults to `True`.
        threads_per_worker: the threads of each worker's TensorFlow thread pools.
            Defaults to `available_cores() // workers` (at least 1).
        pin_workers: bind worker `i` to the cores `i * threads_per_worker` to
            `(i + 1) * threads_per_worker - 1` of those this process may run on. Needs
            `workers * threads_per_worker` of them, and Linux. Defaults to `False`.
        gpus_per_worker: give each worker this many devices of its own, through
            `CUDA_VISIBLE_DEVICES` (see `assign_devices`); the chief gets none. Defaults
            to `None`: every process sees the devices this one does.

    Returns:
        `0` when the search finished, non-zero otherwise.
    """
    if workers != "auto" and not _is_count(workers):
        raise ValueError("Argument `workers` must be an integer >= 1 or 'auto'. "
                         f"Received: workers={workers!r}")
    for name, value in (("threads_per_worker", threads_per_worker),
                        ("gpus_per_worker", gpus_per_worker)):
        if value is not None and not _is_count(value):
            raise ValueError(f"Argument `{name}` must be an integer >= 1. "
                             f"Received: {name}={value!r}")
    if not _is_count(max_restarts, minimum=0):
        raise ValueError("Argument `max_restarts` must be an integer >= 0. "
                         f"Received: max_restarts={max_restarts!r}")
    for flag in ("--role", "--oracle", "--worker-id"):
        if any(a == flag or a.startswith(flag + "=") for a in search_args):
            raise ValueError(
                f"The launcher sets `{flag}` itself; remove it from the search arguments. "
                f"Received: search_args={search_args}"
            )
    devices, unused, from_nvidia_smi = None, [], False
    if gpus_per_worker is not None or workers == "auto":
        devices, unused, from_nvidia_smi = assign_devices(workers, gpus_per_worker)
        workers = len(devices)
    if threads_per_worker is None:
        threads_per_worker = max(1, available_cores() // workers)
    cores = _own_cores()
    if pin_workers and workers * threads_per_worker > len(cores):
        raise ValueError(
            f"Argument `pin_workers` needs a core for each of workers * threads_per_worker = "
            f"{workers * threads_per_worker} threads; {len(cores)} cores can be pinned here. "
            f"Received: pin_workers={pin_workers}"
        )

    def say(text, **kwargs):
        if verbose:
            print(text, **kwargs)

    port = port or free_port()
    # The children import the same kfound as this process.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(pathlib.Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    if devices is not None and from_nvidia_smi:
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA's numbers = nvidia-smi's
    address = f"{HOST}:{port}"
    command = [python, "-m", "kfound.tuning.search", *search_args, "--oracle", address]
    chief_env = env if devices is None else {**env, "CUDA_VISIBLE_DEVICES": ""}
    chief = subprocess.Popen([*command, "--role", "chief"], env=chief_env)
    hidden = "" if devices is None else " (CUDA_VISIBLE_DEVICES=: it trains nothing)"
    say(f"launch: chief pid {chief.pid} on {address}{hidden}", flush=True)
    # Workers start once the chief listens, so that a chief's --overwrite cannot delete
    # what they write.
    while not is_listening(HOST, port):
        if chief.poll() is not None:
            return chief.returncode
        time.sleep(_POLL_SECONDS)
    worker_args = [a for a in command if a != "--overwrite"]

    threads = str(threads_per_worker)
    worker_env = {**env, "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads,
                  "OMP_NUM_THREADS": threads}

    def start(name):
        i = names.index(name)
        pinned, own_env, where = None, worker_env, ""
        if pin_workers:
            pinned = cores[i * threads_per_worker:(i + 1) * threads_per_worker]
            where += f", cores: {','.join(map(str, pinned))}"
        if devices is not None:
            own_env = {**worker_env, "CUDA_VISIBLE_DEVICES": ",".join(devices[i])}
            where += f", CUDA_VISIBLE_DEVICES={own_env['CUDA_VISIBLE_DEVICES']}"
        process = _popen_on(pinned, [*worker_args, "--role", "worker", "--worker-id", name],
                            env=own_env)
        say(f"launch: {name} pid {process.pid} (threads: {threads}{where})", flush=True)
        return process

    if unused:
        say(f"launch: {len(unused)} device(s) left unused ({','.join(unused)}): "
            f"{workers} workers * {len(devices[0])} each", flush=True)
    names = [f"worker{i}" for i in range(1, workers + 1)]
    processes = {name: start(name) for name in names}
    deaths = dict.fromkeys(names, 0)
    try:
        while chief.poll() is None:
            for name, process in processes.items():
                code = process.poll()
                if code is None or code == 0:
                    continue
                deaths[name] += 1
                if deaths[name] > max_restarts:
                    say(f"launch: {name} died {deaths[name]} times (exit code {code}); "
                          "stopping. Run the same command again to resume.", flush=True)
                    return 1
                say(f"launch: {name} died (exit code {code}); restarting it, and it "
                      "retries its trial", flush=True)
                processes[name] = start(name)
            time.sleep(_POLL_SECONDS)
        return chief.returncode
    finally:
        for process in [chief, *processes.values()]:
            if process.poll() is None:
                process.terminate()
        for process in [chief, *processes.values()]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)


def _workers_flag(text):
    """`--workers`: an integer, or `auto`."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer >= 1 or 'auto'. Received: workers={text!r}") from None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="tuning/launch.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="tuning/launch.py --workers N|auto [--gpus-per-worker K] "
              "[--threads-per-worker T] [--pin-workers] [--max-restarts R] "
              "-- <tuning/search.py arguments>",
    )
    parser.add_argument("--workers", type=_workers_flag, default=2, metavar="N|auto",
                        help="the number of workers, or `auto`: one per --gpus-per-worker "
                             "devices (default: 2)")
    parser.add_argument("--gpus-per-worker", type=int, default=None, metavar="K",
                        help="give each worker K GPUs of its own through CUDA_VISIBLE_DEVICES, "
                             "taken from the visible ones (CUDA_VISIBLE_DEVICES, or `nvidia-smi "
                             "-L` when it is unset); each trial records its worker's list in "
                             "trials.json (default: every worker sees every device; 1 with "
                             "--workers auto)")
    parser.add_argument("--max-restarts", type=int, default=3,
                        help="restarts allowed per worker before giving up (default: 3)")
    parser.add_argument("--threads-per-worker", type=int, default=None,
                        help="threads of each worker's TensorFlow thread pools (default: the "
                             f"cores divided among the workers; {available_cores()} cores here)")
    parser.add_argument("--pin-workers", action="store_true",
                        help="bind each worker to cores of its own (Linux), as if each had a "
                             "machine of its own")
    parser.add_argument("--port", type=int, default=None,
                        help="the chief's port on 127.0.0.1 (default: a free one)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        parser.parse_known_args(argv)  # `--help` prints the help and exits.
        parser.error("put the search arguments after `--`, e.g. `--workers 2 -- --tuner random "
                     "--space tuning/spaces/mlp.yaml`. Received: no `--`")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    for name, low in (("workers", 1), ("gpus_per_worker", 1), ("threads_per_worker", 1),
                      ("max_restarts", 0)):
        value = getattr(args, name)
        if value is not None and value != "auto" and value < low:
            parser.error(f"argument --{name.replace('_', '-')} must be >= {low}. "
                         f"Received: {name}={value}")
    try:
        return launch(argv[split + 1:], args.workers, args.max_restarts, args.port,
                      threads_per_worker=args.threads_per_worker, pin_workers=args.pin_workers,
                      gpus_per_worker=args.gpus_per_worker)
    except ValueError as error:  # launch() checks everything before it starts a process.
        parser.error(str(error))

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
"""

import argparse
import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import time

_POLL_SECONDS = 0.2
HOST = "127.0.0.1"


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


def launch(search_args, workers, max_restarts=3, port=None, python=sys.executable,
           verbose=True, threads_per_worker=None, pin_workers=False):
    """Starts a chief and `workers` workers for `search_args`; returns the exit code.

    Args:
        search_args: the arguments of `tuning/search.py` (without `--role`/`--oracle`).
        workers: the number of workers, at least 1.
        max_restarts: how many times one worker may die and be restarted. Defaults to 3.
        port: the chief's port on 127.0.0.1. Defaults to a free one.
        python: the Python interpreter to run. Defaults to this one.
        verbose: print the processes' ids and restarts. Defaults to `True`.
        threads_per_worker: the threads of each worker's TensorFlow thread pools.
            Defaults to `available_cores() // workers` (at least 1).
        pin_workers: bind worker `i` to the cores `i * threads_per_worker` to
            `(i + 1) * threads_per_worker - 1` of those this process may run on. Needs
            `workers * threads_per_worker` of them, and Linux. Defaults to `False`.

    Returns:
        `0` when the search finished, non-zero otherwise.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"Argument `workers` must be an integer >= 1. Received: workers={workers}")
    if threads_per_worker is None:
        threads_per_worker = max(1, available_cores() // workers)
    if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise ValueError("Argument `threads_per_worker` must be an integer >= 1. "
                         f"Received: threads_per_worker={threads_per_worker}")
    cores = _own_cores()
    if pin_workers and workers * threads_per_worker > len(cores):
        raise ValueError(
            f"Argument `pin_workers` needs a core for each of workers * threads_per_worker = "
            f"{workers * threads_per_worker} threads; {len(cores)} cores can be pinned here. "
            f"Received: pin_workers={pin_workers}"
        )
    for flag in ("--role", "--oracle", "--worker-id"):
        if any(a == flag or a.startswith(flag + "=") for a in search_args):
            raise ValueError(
                f"The launcher sets `{flag}` itself; remove it from the search arguments. "
                f"Received: search_args={search_args}"
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
    address = f"{HOST}:{port}"
    command = [python, "-m", "kfound.tuning.search", *search_args, "--oracle", address]
    chief = subprocess.Popen([*command, "--role", "chief"], env=env)
    say(f"launch: chief pid {chief.pid} on {address}", flush=True)
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
        pinned = None
        if pin_workers:
            i = names.index(name)
            pinned = cores[i * threads_per_worker:(i + 1) * threads_per_worker]
        process = _popen_on(pinned, [*worker_args, "--role", "worker", "--worker-id", name],
                            env=worker_env)
        where = "" if pinned is None else f", cores: {','.join(map(str, pinned))}"
        say(f"launch: {name} pid {process.pid} (threads: {threads}{where})", flush=True)
        return process

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


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="tuning/launch.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="tuning/launch.py --workers N [--threads-per-worker T] [--pin-workers] "
              "[--max-restarts K] -- <tuning/search.py arguments>",
    )
    parser.add_argument("--workers", type=int, default=2, help="the number of workers (default: 2)")
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
    if args.threads_per_worker is not None and args.threads_per_worker < 1:
        parser.error("argument --threads-per-worker must be >= 1. "
                     f"Received: threads_per_worker={args.threads_per_worker}")
    return launch(argv[split + 1:], args.workers, args.max_restarts, args.port,
                  threads_per_worker=args.threads_per_worker, pin_workers=args.pin_workers)

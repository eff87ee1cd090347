"""The hyperparameter-search command line: `tuning/search.py` and `python -m kfound.tuning.search`.

Reads a search-space file, runs a KerasTuner search (grid, random, bayesian, hyperband,
lipo or tpe) on it, and writes `trials.json` and TensorBoard's HParams dashboard
(`tensorboard/`) as each trial ends, then `best.json`, `best_model.keras` and `search.png`,
into the run folder. Running the same command again resumes a search that was stopped or
killed. With `--role chief|worker --oracle HOST:PORT` the same command is one process of
a distributed search (KerasTuner's chief/worker protocol over gRPC, with a shared run
folder). `--prune median` stops hopeless trials after an epoch (`kfound.tuning.pruning`).

Each trial in `trials.json` records `devices`, the GPUs of the process that trained it
(`launch.visible_devices()`: `CUDA_VISIBLE_DEVICES`'s entries, or `nvidia-smi`'s). A
worker writes its list to `workers/<worker id>.json` in the run folder when it starts,
where the chief reads it when it hands the worker a trial: KerasTuner's protocol carries
no more than the worker's id.
"""

import argparse
import functools
import importlib.util
import json
import os
import pathlib
import re
import socket
import time
import warnings

import keras
from keras_tuner.engine.trial import TrialStatus

from kfound import _compat, distribution, io_utils, runs
from kfound.data import load_digits
from kfound.tuning import (
    hparams_dashboard,
    hypermodels,
    launch,
    pruning,
    results,
    space,
    tpe_oracle,
    tuners,
)

SMOKE_TRAIN, SMOKE_VALIDATION = 256, 128
_DEFAULT_TRIALS, _SMOKE_TRIALS = 10, 3
_POLL_SECONDS = 0.2
CONNECT_TIMEOUT = 120.0  # seconds a worker waits for its chief (--connect-timeout)
WORKERS_FOLDER = "workers"  # in the run folder: each worker's devices, for the chief
_WORKER_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # a worker id that names a file


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tuning/search.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tuner", choices=tuners.TUNERS, default="random",
                        help="the search algorithm (default: random); tpe is Optuna's TPE "
                             "sampler (pip install 'kfound[tpe]')")
    parser.add_argument("--space", required=True,
                        help="the search-space file (.yaml or .json), e.g. tuning/spaces/mlp.yaml")
    parser.add_argument("--max-trials", type=int, default=None,
                        help=f"the number of trials (default: the whole grid for grid, "
                             f"{_DEFAULT_TRIALS} otherwise, {_SMOKE_TRIALS} with --smoke); "
                             "hyperband's own schedule sets its count, capped by this")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per trial when the space does not tune `epochs` "
                             "(default: 10); for hyperband, the most epochs of one trial")
    parser.add_argument("--executions-per-trial", type=int, default=1,
                        help="models trained per trial, their scores averaged (default: 1)")
    parser.add_argument("--prune", choices=pruning.PRUNERS, default="none",
                        help="stop hopeless trials early (default: none). median: after the "
                             "warm-up, a trial stops at the end of an epoch when its best "
                             "objective so far is worse than the median of the completed "
                             "trials at that epoch (Google Vizier's rule, as Optuna's "
                             "MedianPruner). A pruned trial counts as completed, scored by "
                             "its best epoch. Not for hyperband, which prunes by its own "
                             "schedule")
    parser.add_argument("--prune-warmup", type=int, default=None, metavar="EPOCHS",
                        help="with --prune median, the first epochs of every trial that are "
                             f"never pruned (default: {pruning.WARMUP})")
    parser.add_argument("--prune-min-trials", type=int, default=None, metavar="N",
                        help="with --prune median, the completed trials that must have "
                             "reached an epoch before any trial is pruned there "
                             f"(default: {pruning.MIN_TRIALS})")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over, deleting the previous search (default: resume it)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="train under the mixed_float16 dtype policy")
    parser.add_argument("--jit", action="store_true",
                        help="compile training steps with XLA (jit_compile=True)")
    parser.add_argument("--role", choices=("chief", "worker"), default=None,
                        help="this process's role in a distributed search (needs --oracle)")
    parser.add_argument("--oracle", metavar="HOST:PORT", default=None,
                        help="the chief's address: where the chief listens, where workers "
                             "connect")
    parser.add_argument("--worker-id", default=None,
                        help="a worker's stable name (letters, digits, '.', '_', '-'); "
                             "restarting a worker under the same name resumes its trial "
                             "(default: worker-<host>-<pid>)")
    parser.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT,
                        metavar="SECONDS",
                        help="how long a worker waits for the chief at --oracle before it "
                             f"gives up (default: {CONNECT_TIMEOUT:g})")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    runs.add_run_arguments(parser, run_name="search-{space_name}-{tuner}")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("max_trials", "epochs", "executions_per_trial", "prune_min_trials"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"argument --{name.replace('_', '-')} must be >= 1. "
                         f"Received: {name}={value}")
    if args.prune_warmup is not None and args.prune_warmup < 0:
        parser.error("argument --prune-warmup must be >= 0. "
                     f"Received: prune_warmup={args.prune_warmup}")
    for name in ("prune_warmup", "prune_min_trials"):
        if getattr(args, name) is not None and args.prune == "none":
            parser.error(f"argument --{name.replace('_', '-')} applies only with --prune "
                         "median. Received: prune='none'")
    if args.tuner == "tpe" and importlib.util.find_spec("optuna") is None:
        parser.error("--tuner tpe needs Optuna, an optional dependency: "
                     f"pip install '{tpe_oracle.EXTRA}'. Received: tuner='tpe'")
    if args.role is not None and args.oracle is None:
        parser.error(f"--role {args.role} needs --oracle HOST:PORT. Received: oracle=None")
    if args.oracle is not None:
        host, _, port = args.oracle.rpartition(":")
        if not host or not port.isdigit():
            parser.error(f"argument --oracle must be HOST:PORT. Received: oracle={args.oracle!r}")
        if args.role is None:
            parser.error("--oracle needs --role chief or --role worker. Received: role=None")
    if not args.connect_timeout > 0:
        parser.error("argument --connect-timeout must be > 0 seconds. "
                     f"Received: connect_timeout={args.connect_timeout}")
    if args.worker_id is not None and "chief" in args.worker_id:
        parser.error("argument --worker-id must not contain 'chief' (KerasTuner reserves it). "
                     f"Received: worker_id={args.worker_id!r}")
    if args.worker_id is not None and not _WORKER_ID.fullmatch(args.worker_id):
        parser.error("argument --worker-id must be letters, digits, '.', '_' or '-' (it names "
                     f"a file in the run folder). Received: worker_id={args.worker_id!r}")
    args.space_name = pathlib.Path(args.space).stem
    return args


def load_data(smoke=False):
    """Digits as `(8, 8, 1)` images, for models `mlp` and `cnn`; a small slice with `smoke`.

    Under DataParallel each set is cut to a length the device count divides (at most one
    example per device less), so that every batch splits evenly.
    """
    (x, y), (x_val, y_val) = load_digits()
    if smoke:
        x, y = x[:SMOKE_TRAIN], y[:SMOKE_TRAIN]
        x_val, y_val = x_val[:SMOKE_VALIDATION], y_val[:SMOKE_VALIDATION]
    return distribution.trim_to_devices(x, y), distribution.trim_to_devices(x_val, y_val)


def hypermodel_inputs(search_space, smoke=False, seed=0, output=None):
    """The data of a space: its hypermodel's arguments and `tuner.search`'s.

    - `digits` (models `mlp` and `cnn`): `load_data`'s arrays, passed to `tuner.search`.
    - `embedded`, `tfds:NAME`, `folder:PATH` (model `finetune`): `FinetuneHyperModel`
      loads `kfound.data`'s pipelines itself when it is made, before any trial (once per
      image size: a tuned image size needs its own), so `tuner.search` gets no data.
      `smoke` leaves them whole; `--smoke` caps each trial at one epoch instead.

    Args:
        search_space: a `SearchSpace` (its `dataset` and `model` were checked together).
        smoke: take a small slice of `digits`. Defaults to `False`.
        seed: the seed of the image datasets' split and shuffling. Defaults to `0`.
        output: the run folder; `finetune`'s head trials cache backbone features in its
            `features/`, so trials on the same backbone compute them once. Defaults to
            `None` (no cache on disk).

    Returns:
        `(hypermodel_kwargs, search_args, search_kwargs)`.
    """
    if search_space.dataset != "digits":
        return ({"dataset": search_space.dataset, "seed": seed,
                 "feature_cache": None if output is None else os.path.join(output, "features")},
                (), {})
    (x, y), validation = load_data(smoke)
    return ({"input_shape": x.shape[1:], "num_classes": int(y.max()) + 1}, (x, y),
            {"validation_data": validation})


def check_arguments(args, search_space):
    """Cross-checks the flags against the space, before anything runs."""
    tuners.check_pruner(args.tuner, make_pruner(args))
    tuned = search_space.hyperparameters
    if "epochs" in tuned and args.epochs is not None:
        raise ValueError(
            f"Argument `--epochs` fixes the epochs, but {search_space.source} tunes `epochs`; "
            f"drop one of them. Received: epochs={args.epochs}"
        )
    if search_space.model == "finetune" and args.tuner == "hyperband":
        raise ValueError(
            f"{search_space.source}: model `finetune` trains in phases of its own (`epochs`, "
            "`fine_tune_epochs`), which Hyperband's epoch schedule cannot resume; use another "
            "tuner. Received: tuner='hyperband'"
        )
    if "epochs" in tuned and args.tuner == "hyperband":
        raise ValueError(
            f"{search_space.source} tunes `epochs`, but hyperband sets each trial's epochs "
            "itself (up to --epochs); remove `epochs` from the space. Received: tuner='hyperband'"
        )


def _configure_role(args):
    """Sets KerasTuner's distributed environment variables; returns the role or `None`."""
    if args.role is None:
        if "KERASTUNER_ORACLE_IP" in os.environ:  # KerasTuner's own variables, set by hand.
            return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"
        return None
    host, _, port = args.oracle.rpartition(":")
    os.environ["KERASTUNER_ORACLE_IP"] = host
    os.environ["KERASTUNER_ORACLE_PORT"] = port
    worker_id = args.worker_id or f"worker-{socket.gethostname()}-{os.getpid()}"
    os.environ["KERASTUNER_TUNER_ID"] = "chief" if args.role == "chief" else worker_id
    return args.role


def _check_resume(output, search_space, args):
    """Refuses to resume a search that used another space or tuner."""
    saved = output / "space.json"
    config = {"tuner": args.tuner, **search_space.to_config()}
    if args.prune != "none":  # Absent when off, so that earlier searches still resume.
        config["prune"] = {"rule": args.prune, **make_pruner(args).get_config()}
    if saved.exists() and not args.overwrite:
        previous = json.loads(saved.read_text(encoding="utf-8"))
        if previous != json.loads(json.dumps(config, default=io_utils._json_default)):
            raise ValueError(
                f"Argument `--output` holds a search with another space or tuner ({saved}); "
                "pass --overwrite to start over or choose another --output. "
                f"Received: output={str(output)!r}"
            )
    io_utils.write_json(saved, config)


def make_pruner(args):
    """The `--prune` rule with its flags, or `None`."""
    return pruning.make_pruner(
        args.prune,
        warmup=pruning.WARMUP if args.prune_warmup is None else args.prune_warmup,
        min_trials=args.prune_min_trials or pruning.MIN_TRIALS)


def wait_for_chief(address, timeout, log=print):
    """Waits until the chief at `address` (`HOST:PORT`) listens; says so while it waits.

    Raises:
        ConnectionError: nothing listened there within `timeout` seconds.
    """
    host, _, port = address.rpartition(":")
    if launch.is_listening(host, int(port)):
        return
    log(f"Worker {os.environ['KERASTUNER_TUNER_ID']}: waiting for the chief at {address} "
        f"(giving up after {timeout:g}s, --connect-timeout)", flush=True)
    deadline = time.monotonic() + timeout
    while not launch.is_listening(host, int(port)):
        if time.monotonic() > deadline:
            raise ConnectionError(
                f"No chief answered at {address} within {timeout:g}s: start the chief first "
                f"(--role chief --oracle {address}), check the address, or raise "
                f"--connect-timeout. Received: oracle={address!r}"
            )
        time.sleep(_POLL_SECONDS)


def record_worker_devices(output, worker_id, devices):
    """Writes `devices`, a worker's device list, where the chief's `worker_devices` reads it."""
    if _WORKER_ID.fullmatch(worker_id):  # KerasTuner's variable, set by hand, may be any text.
        io_utils.write_json(pathlib.Path(output) / WORKERS_FOLDER / f"{worker_id}.json",
                            {"devices": devices})


def worker_devices(output, worker_id):
    """The device list that worker `worker_id` recorded in run folder `output`, or `None`."""
    path = pathlib.Path(output) / WORKERS_FOLDER / f"{worker_id}.json"
    if not _WORKER_ID.fullmatch(worker_id) or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["devices"]


def serve_oracle(oracle, address):
    """Serves `oracle` over KerasTuner's gRPC protocol until the search is done.

    This is `keras_tuner`'s own chief with a short poll: KerasTuner's sleeps 20 seconds
    at a time while the last trials finish.
    """
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = _compat.add_oracle_servicer(oracle, server)
    server.add_insecure_port(address)
    server.start()
    try:
        while not _compat.chief_may_exit(oracle, servicer):
            time.sleep(_POLL_SECONDS)
    finally:
        server.stop(grace=1)


def finish(tuner, output, quiet=False, placement=None, dashboard=True):
    """Writes `trials.json`, `best.json`, `best_model.keras`, `search.png` and the HParams
    dashboard (`tensorboard/`, with `dashboard`); prints the table.

    `placement` is the `kfound.distribution` record that `best.json` gets.
    """
    oracle = tuner.oracle
    records = results.trial_records(oracle)
    io_utils.write_json(output / "trials.json", records)
    if dashboard:
        hparams_dashboard.update(results.dashboard_folder(output), oracle, records)
    best = results.best_record(records, oracle.objective.direction)
    if best is None:
        print("No trial completed; nothing to report.")
        return None
    results.write_best(output, best, oracle.objective, placement)
    with warnings.catch_warnings():
        # The checkpoint holds the optimizer's variables; the reloaded model has none yet.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model = tuner.get_best_models(1)[0]
    io_utils.save_model(model, output / "best_model.keras")
    class_names = getattr(tuner.hypermodel, "class_names", None)
    if class_names is not None:
        # As kfound.finetune saves a classifier, so `recipes/finetune.py --state predict
        # --model .../best_model.keras` labels images with names, not indices.
        from kfound import prediction

        io_utils.write_json(output / prediction.CLASSES_FILE, class_names)
    results.plot_search(records, oracle.objective.name, oracle.objective.direction,
                        output / "search.png")
    if not quiet:
        completed = sum(r["status"] == TrialStatus.COMPLETED for r in records)
        print(f"\n{completed} trials completed; best {oracle.objective.name}="
              f"{best['score']:.4f} (trial {best['trial_id']}). Results in {output}/")
        if dashboard:
            print("HParams dashboard (a row per trial): tensorboard --logdir "
                  f"{results.dashboard_folder(output)}")
        print()
        print(results.summary_table(records, oracle.objective.direction, oracle.objective.name))
    return best


def main(argv=None):
    """Runs (or resumes) one search, or one process of a distributed search."""
    args = parse_args(argv)
    search_space = space.load_space(args.space)
    check_arguments(args, search_space)
    if args.output is None:  # The same default for the chief and its workers.
        args.output = os.path.join(runs.SAVED_MODELS, f"search-{args.space_name}-{args.tuner}")
    runs.check_writable_folder(args.output, flag=True)
    role = _configure_role(args)
    devices = None if role == "chief" else launch.visible_devices()  # the chief trains none
    if role == "worker":  # --oracle, or KerasTuner's own variables set by hand
        address = args.oracle or (f"{os.environ['KERASTUNER_ORACLE_IP']}:"
                                  f"{os.environ.get('KERASTUNER_ORACLE_PORT', '')}")
        wait_for_chief(address, args.connect_timeout)
        output = pathlib.Path(args.output)
        record_worker_devices(output, os.environ["KERASTUNER_TUNER_ID"], devices)
        keras.utils.set_random_seed(args.seed)
    else:
        output = runs.start_run(args)
        _check_resume(output, search_space, args)
    if args.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    placement = distribution.setup()

    model_kwargs, search_args, search_kwargs = hypermodel_inputs(
        search_space, args.smoke, args.seed, output=str(output))
    hypermodel = hypermodels.hypermodel_class(search_space.model)(
        **model_kwargs, space=search_space,
        epochs=args.epochs or 10, max_epochs=1 if args.smoke else None,
        jit_compile=True if args.jit else "auto",
    )
    max_trials = args.max_trials or (
        search_space.grid_size() if args.tuner == "grid"
        else _SMOKE_TRIALS if args.smoke else _DEFAULT_TRIALS)
    dashboard = hparams_dashboard.available()
    if not dashboard and role != "worker":
        print("No HParams dashboard: the `tensorboard` package is not installed "
              "(pip install tensorboard).", flush=True)
    reporter = results.SearchReporter(output, verbose=not args.quiet,
                                      distribution=placement.record(), dashboard=dashboard)
    tuner = tuners.make_tuner(
        args.tuner, hypermodel, search_space.objective, directory=output,
        max_trials=max_trials, seed=args.seed, max_epochs=2 if args.smoke else args.epochs,
        overwrite=args.overwrite and role != "worker",
        executions_per_trial=args.executions_per_trial, reporter=reporter,
        distribution_strategy=placement.strategy,
        trial_log=(functools.partial(print, flush=True) if role == "worker" and not args.quiet
                   else None),
        devices=(functools.partial(worker_devices, output) if role == "chief"
                 else lambda tuner_id: devices),
        pruner=make_pruner(args),
    )
    if role != "worker" and not args.quiet:
        done = sum(t.status in tuners.FINISHED for t in tuner.oracle.trials.values())
        resumed = f", resuming after {done} finished trials" if done else ""
        print(f"Search: {args.tuner} on {search_space.source} ({search_space.model}, "
              f"{search_space.objective.name} {search_space.objective.direction}), "
              f"max_trials={tuner.oracle.max_trials}{resumed}. Results in {output}/", flush=True)
    tuner.oracle.verbose = 0  # KerasTuner's own display; the reporter prints one line a trial.
    if role == "chief":
        tuner.save()
        serve_oracle(tuner.oracle, args.oracle)
    else:
        tuner.search(*search_args, **search_kwargs, verbose=0)
    if role == "worker":
        return None
    return finish(tuner, output, quiet=args.quiet, placement=placement.record(),
                  dashboard=dashboard)


def cli(argv=None):
    """`main`, with bad input and an absent chief as one line on stderr instead of a traceback."""
    try:
        return main(argv)
    except (ValueError, ConnectionError) as e:
        build_parser().exit(2, f"tuning/search.py: error: {e}\n")


if __name__ == "__main__":
    cli()

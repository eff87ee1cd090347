"""Benchmarks of kfound.tuning; prints one JSON line.

1. LIPO and TPE (Optuna's) vs random search (and KerasTuner's Bayesian optimization as
   a reference) on
   Branin and Hartmann-3, through KerasTuner's Oracle API without training models.
   Measure: evaluations until the best value is within 1% of the
   optimum, where "within 1%" is Malherbe & Vayatis's target t = 0.99:
   `f_best - f* <= 0.01 * (mean_f - f*)`, `mean_f` the mean of f over the domain
   (20,000 uniform points). Median over seeds; a run that misses the target counts as
   its budget (reported as `censored`). Goal: lipo/random <= 0.5. (2-D Rosenbrock is
   retired from this table: random search reaches its 1% target in about 12 evaluations,
   so it cannot tell optimizers apart.)
1b. dlib's own tests of `find_min_global` (dlib/test/global_optimization.cpp), through
   the Oracle API: the seeds of 10 on which LIPO meets each one's tolerance in its
   number of calls (`dlib_<case>_passes`). Goal: at least 9 of 10 for each.
   `--dlib-seeds N` runs N seeds instead.
2. Per-trial time of `tuning/search.py` (in process) vs a hand-written KerasTuner
   `RandomSearch` loop on the same tiny model, epochs and trials (the marginal time of
   extra trials, so that both sides' one-time costs cancel). Goal <= 1.05.
3. A distributed grid with 2 workers vs 1 (`tuning/launch.py`), wall time, with the
   workers sharing the machine and with each worker pinned to a core of its own. Goal
   <= 0.6.
4. Resident memory after trial 20 vs after trial 5 of a random search. Goal <= 1.10.
5. Pruning (`--prune median`): random search, 30 trials of `mlp` (`tuning/spaces/mlp.yaml`
   without its `epochs`) on digits at 20 epochs, with and without pruning, on 3 seeds,
   side by side (the same seed proposes the same trials). Measures: the median over the
   seeds of the unpruned search's best val_accuracy minus the pruned one's
   (`pruning_best_gap`, goal <= 0.005), and of the pruned search's total epochs over the
   unpruned one's (`pruning_epochs_ratio`, goal <= 0.5).

`--quick` uses fewer seeds, trials and repeats (minutes on 2 shared cores).
"""

import argparse
import contextlib
import json
import math
import os
import pathlib
import resource
import sys
import tempfile
import time

import keras
import keras_tuner as kt
import numpy as np

from kfound.data import load_digits
from kfound.tuning import hypermodels, launch, search, space, tuners
from kfound.tuning.lipo_oracle import LIPOOracle
from kfound.tuning.tpe_oracle import TPEOracle

ROOT = pathlib.Path(__file__).resolve().parents[1]
_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_C = np.array([1.0, 1.2, 3.0, 3.2])
_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547],
                      [381, 5743, 8828]])


def branin(x):
    return ((x[1] - 5.1 / (4 * math.pi**2) * x[0] ** 2 + 5 / math.pi * x[0] - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x[0]) + 10)


def hartmann3(x):
    return -float(np.sum(_C * np.exp(-np.sum(_A * (np.asarray(x) - _P) ** 2, axis=1))))


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def complex_holder_table(x):
    """dlib's "complex Holder table": Holder's table made discontinuous (steps of 0.5 in
    x0 shifted by +-0.25), tilted towards (10, 10), with ripples; minimum -21.9210397."""
    x0, x1 = x
    shift, j = 1.0, -4.0
    while j < 9:
        if j < x0 < j + 0.5:
            x0 += 0.25 * shift
        shift, j = -shift, j + 0.5
    return (-abs(math.sin(x0) * math.cos(x1)
                 * math.exp(abs(1 - math.sqrt(x0 * x0 + x1 * x1) / math.pi)))
            + (x0 + x1) / 10 + math.sin(10 * x0) * math.cos(10 * x1))


FUNCTIONS = {  # name: (f, bounds, f*)
    "branin": (branin, [(-5.0, 10.0), (0.0, 15.0)], 0.397887),
    "hartmann3": (hartmann3, [(0.0, 1.0)] * 3, -3.86278),
}

# dlib's find_min_global tests: name -> (f, bounds, calls, passed(x_best, f_best)). The
# Rosenbrock tolerance is on every coordinate (dlib's find_max_global test; its
# find_min_global test takes the closest coordinate only).
DLIB_CASES = {
    "rosenbrock": (rosenbrock, [(0.1, 2.0)] * 2, 100,
                   lambda x, y: max(abs(x[0] - 1), abs(x[1] - 1)) < 1e-5),
    "rosenbrock_bounded": (rosenbrock, [(0.0, 0.9)] * 2, 100,
                           lambda x, y: max(abs(x[0] - 0.9), abs(x[1] - 0.81)) < 1e-5),
    "quadratic": (lambda x: (x[0] - 2) ** 2, [(-10.0, 10.0)], 10,
                  lambda x, y: abs(x[0] - 2) < 1e-9),
    "quadratic_bounded": (lambda x: (x[0] - 2) ** 2, [(-10.0, 1.0)], 10,
                          lambda x, y: abs(x[0] - 1) < 1e-9),
    "complex_holder_table": (complex_holder_table, [(-10.0, 10.0)] * 2, 300,
                             lambda x, y: abs(y + 21.9210397) < 1e-4),
}


def dlib_case(name, seed, directory):
    """Runs LIPO on dlib's case `name` through the Oracle API; whether it passed."""
    f, bounds, calls, passed = DLIB_CASES[name]
    hp = kt.HyperParameters()
    names = [f"x{i}" for i in range(len(bounds))]
    for n, (low, high) in zip(names, bounds, strict=True):
        hp.Float(n, low, high)
    oracle = LIPOOracle(kt.Objective("f", "min"), calls, hyperparameters=hp, seed=seed)
    oracle.verbose = 0
    oracle._set_project_dir(directory, "dlib")
    best_y, best_x = math.inf, None
    for _ in range(calls):
        trial = oracle.create_trial("tuner0")
        x = [trial.hyperparameters.values[n] for n in names]
        y = f(x)
        if y < best_y:
            best_y, best_x = y, x
        oracle.update_trial(trial.trial_id, {"f": y})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return bool(passed(best_x, best_y))


def dlib_benchmark(seeds, scratch):
    out = {}
    for name in DLIB_CASES:
        passes = sum(dlib_case(name, s, tempfile.mkdtemp(dir=scratch)) for s in range(seeds))
        out[f"dlib_{name}_passes"] = f"{passes}/{seeds}"
    return out


def _target(f, bounds, f_star):
    rng = np.random.default_rng(0)
    low, high = np.array(bounds).T
    mean = np.mean([f(x) for x in rng.uniform(low, high, (20000, len(bounds)))])
    return f_star + 0.01 * (mean - f_star)


def evaluations_to_target(oracle, f, names, target, budget, directory):
    """Runs `oracle` on `f` through the Oracle API; the evaluation count reaching `target`."""
    oracle.verbose = 0
    oracle._set_project_dir(directory, "bench")
    for i in range(budget):
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            return budget
        y = f([trial.hyperparameters.values[n] for n in names])
        oracle.update_trial(trial.trial_id, {"f": y})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        if y <= target:
            return i + 1
    return budget


def optimizer_benchmark(seeds, budget, bayes_seeds, bayes_budget, scratch, tpe_seeds=20):
    out = {}
    makers = {
        "lipo": lambda hp, s: LIPOOracle(kt.Objective("f", "min"), budget, hyperparameters=hp,
                                         seed=s),
        "random": lambda hp, s: kt.oracles.RandomSearchOracle(
            kt.Objective("f", "min"), budget, hyperparameters=hp, seed=s),
        "bayesian": lambda hp, s: kt.oracles.BayesianOptimizationOracle(
            kt.Objective("f", "min"), bayes_budget, hyperparameters=hp, seed=s),
        "tpe": lambda hp, s: TPEOracle(kt.Objective("f", "min"), budget, hyperparameters=hp,
                                       seed=s),
    }
    ratios = []
    for name, (f, bounds, f_star) in FUNCTIONS.items():
        target = _target(f, bounds, f_star)
        hp = kt.HyperParameters()
        names = [f"x{i}" for i in range(len(bounds))]
        for n, (low, high) in zip(names, bounds, strict=True):
            hp.Float(n, low, high)
        medians = {}
        for method, make in makers.items():
            # Bayesian optimization and TPE cost much more per proposal: fewer seeds.
            n_seeds, cap = ((bayes_seeds, bayes_budget) if method == "bayesian"
                            else (min(seeds, tpe_seeds), budget) if method == "tpe"
                            else (seeds, budget))
            # KerasTuner's random oracle seeds each draw with seed+1, seed+2, ...: space the
            # seeds so that two runs never share draws.
            counts = [evaluations_to_target(make(hp, 10000 * s + 1), f, names, target, cap,
                                            tempfile.mkdtemp(dir=scratch))
                      for s in range(n_seeds)]
            medians[method] = float(np.median(counts))
            out[f"{name}_{method}_median_evals"] = medians[method]
            out[f"{name}_{method}_censored"] = int(sum(c >= cap for c in counts))
        out[f"{name}_lipo_vs_random"] = round(medians["lipo"] / medians["random"], 3)
        out[f"{name}_tpe_vs_random"] = round(medians["tpe"] / medians["random"], 3)
        ratios.append(medians["lipo"] / medians["random"])
    out["lipo_vs_random_geomean"] = round(float(np.exp(np.mean(np.log(ratios)))), 3)
    return out


def _write_space(folder):
    path = pathlib.Path(folder) / "bench.json"
    path.write_text(json.dumps({
        "model": "mlp", "dataset": "digits", "objective": "val_accuracy",
        "hyperparameters": {
            "learning_rate": {"type": "float", "min": 1e-3, "max": 1e-1, "sampling": "log"},
            "units": {"type": "int", "min": 8, "max": 64},
        },
    }))
    return str(path)


def _hand_written(trials, folder, seed):
    """The same search written directly with KerasTuner, as a user would.

    The model is the one `MLPHyperModel` builds for `_write_space`'s space under `--smoke`:
    two `Dense(units)` + ReLU blocks and a float32 softmax head, Adam, one epoch at batch
    size 32 on the same slice of digits, the best model saved at the end.
    """
    (x, y), validation = search.load_data(smoke=True)

    def build(hp):
        units = hp.Int("units", 8, 64)
        model = keras.Sequential([
            keras.Input((8, 8, 1)), keras.layers.Flatten(),
            keras.layers.Dense(units), keras.layers.Activation("relu"),
            keras.layers.Dense(units), keras.layers.Activation("relu"),
            keras.layers.Dense(10, activation="softmax", dtype="float32"),
        ])
        model.compile(keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 1e-1,
                                                     sampling="log")),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    tuner = kt.RandomSearch(build, objective="val_accuracy", max_trials=trials, seed=seed,
                            directory=folder, project_name="hand")
    tuner.search(x, y, validation_data=validation, epochs=1, batch_size=32, verbose=0)
    tuner.get_best_models(1)[0].save(os.path.join(folder, "best.keras"))


def overhead_benchmark(trials, repeats, scratch):
    """Per-trial time of `tuning/search.py` over a hand-written KerasTuner loop.

    Both run in this process on the same model, data, epochs and number of trials (see
    `_hand_written`). Each side's per-trial time is the difference between a search of
    `trials` trials and one of 2, divided by `trials - 2`: both sides' one-time costs
    (argument parsing, loading the data, the final model, our plot and table) cancel,
    and what remains is everything each side does per trial: building, training and
    evaluating the model, KerasTuner's checkpoints and state files, and ours (atomic
    state files, `trials.json` and `best.json`, the progress line, the collector
    handling of `kfound.tuning.tuners`). The sides alternate, each repeat with a fresh
    seed shared by both; the ratios are medians over repeats, of wall time and of this
    process's CPU time (all threads). Other users' load on a shared machine shifts wall
    time by tens of percent between runs; CPU time much less.
    """
    space_file = _write_space(scratch)

    def timed(run):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        return np.array([time.perf_counter() - wall, time.process_time() - cpu])

    def ours(n, seed):
        def run():
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                search.main(["--tuner", "random", "--space", space_file, "--smoke",
                             "--max-trials", str(n), "--seed", str(seed),
                             "--output", tempfile.mkdtemp(dir=scratch)])
        return timed(run)

    def hand(n, seed):
        return timed(lambda: _hand_written(n, tempfile.mkdtemp(dir=scratch), seed))

    ours(2, 0), hand(2, 0)  # Warm-up: tracing caches, imports.
    ratios = []
    for r in range(repeats):
        # A-B-B-A order, reversed every repeat, so that drifting load hits both alike.
        sides = {"ours": ours, "hand": hand}
        order = ["ours", "hand"] if r % 2 == 0 else ["hand", "ours"]
        seconds = {name: sides[name](trials, r + 1) for name in order}
        for name in reversed(order):
            seconds[name] = (seconds[name] - sides[name](2, r + 1)) / (trials - 2)
        ratios.append(seconds["ours"] / seconds["hand"])
    wall, cpu = np.median(ratios, axis=0)
    return {"search_py_vs_keras_tuner_per_trial": round(float(wall), 3),
            "search_py_vs_keras_tuner_per_trial_cpu": round(float(cpu), 3)}


def distributed_benchmark(scratch, units, search_args, pinned=False):
    """Wall time of a grid search through `tuning/launch.py` with 2 workers over 1 worker.

    The same launcher runs both sides: a chief and the workers on loopback. The time
    includes everything a user waits for: the processes' start-up (imports, ~5 s each),
    the trials, and the chief's final model, plot and table. Start-up is paid on each
    side, so the grid (3 learning rates x `units`) must be large enough for the trials to
    dominate. Two settings:

    - Shared (`pinned=False`, the launcher's defaults): the workers divide the machine's
      cores, so a single worker gets all of them. This measures what a second worker adds
      on the same machine. The CPU time of the launched processes bounds it from below:
      the two-worker search does at least the one-worker search's CPU work on at most
      every core, so `2 vs 1 >= cpu_seconds(1 worker) / (cores * wall_seconds(1 worker))`
      (`..._floor`). A worker keeps more cores busy than its TensorFlow threads (tf.data
      and the runtime have pools of their own), so on a machine with as many cores as
      workers, the first worker already uses much of what the second would.
    - Pinned (`pinned=True`): each worker has one thread and one core of its own
      (`pin_workers`), on both sides, as if each worker were a one-core machine. This
      measures what a second machine adds, which is what distributing a search is for.
    """
    grid = pathlib.Path(scratch) / "grid.json"
    grid.write_text(json.dumps({
        "model": "mlp", "dataset": "digits", "objective": "val_accuracy",
        "hyperparameters": {
            "learning_rate": {"type": "choice", "values": [0.003, 0.01, 0.03]},
            "units": {"type": "choice", "values": list(units)},
        },
    }))
    seconds, cpu = {}, {}
    for workers in (1, 2):
        start = time.perf_counter()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        code = launch.launch(["--tuner", "grid", "--space", str(grid), "--quiet", *search_args,
                              "--output", tempfile.mkdtemp(dir=scratch)], workers,
                             verbose=False, threads_per_worker=1 if pinned else None,
                             pin_workers=pinned)
        seconds[workers] = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu[workers] = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        if code != 0:
            raise RuntimeError(f"the distributed search with {workers} workers failed")
    key = "distributed_pinned" if pinned else "distributed"
    out = {f"{key}_2_vs_1_workers_wall": round(seconds[2] / seconds[1], 3),
           f"{key}_1_worker_seconds": round(seconds[1], 1),
           f"{key}_1_worker_cores_busy": round(cpu[1] / seconds[1], 2),
           f"{key}_2_workers_cores_busy": round(cpu[2] / seconds[2], 2)}
    if not pinned:
        cores = launch.available_cores()
        out.update({f"{key}_2_vs_1_floor": round(cpu[1] / (cores * seconds[1]), 3),
                    "distributed_cores": cores, "distributed_trials": 3 * len(units)})
    return out


def _rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_benchmark(early, late, scratch):
    search_space = space.load_space(_write_space(scratch))
    (x, y), validation = search.load_data(smoke=True)
    hypermodel = hypermodels.MLPHyperModel((8, 8, 1), 10, space=search_space, epochs=1)
    rss = {}

    def record(oracle, trial):
        rss[len(oracle.end_order)] = _rss_mib()

    tuner = tuners.make_tuner("random", hypermodel, search_space.objective,
                              tempfile.mkdtemp(dir=scratch), max_trials=late, seed=1,
                              reporter=record)
    tuner.search(x, y, validation_data=validation, verbose=0)
    return {f"rss_trial{late}_vs_trial{early}": round(rss[late] / rss[early], 3),
            f"rss_trial{early}_mib": round(rss[early], 1)}


def pruning_benchmark(seeds, trials, epochs, scratch):
    """Random search with and without `--prune median`, interleaved seed by seed."""
    lines = (ROOT / "tuning" / "spaces" / "mlp.yaml").read_text().splitlines(keepends=True)
    space_file = pathlib.Path(scratch) / "mlp_pruning.yaml"  # every epoch count is --epochs
    space_file.write_text("".join(line for line in lines if not line.startswith("  epochs:")))
    assert "epochs" not in space.load_space(space_file).hyperparameters
    best, total_epochs = {"none": [], "median": []}, {"none": [], "median": []}
    for seed in range(seeds):
        for prune in ("none", "median"):
            output = pathlib.Path(scratch) / f"prune-{prune}-{seed}"
            search.main(["--tuner", "random", "--space", str(space_file), "--epochs",
                         str(epochs), "--max-trials", str(trials), "--seed", str(seed),
                         "--prune", prune, "--quiet", "--output", str(output)])
            records = json.loads((output / "trials.json").read_text())
            best[prune].append(json.loads((output / "best.json").read_text())["score"])
            total_epochs[prune].append(sum(r["epochs_run"] for r in records))
    gaps = [a - b for a, b in zip(best["none"], best["median"], strict=True)]
    ratios = [b / a for a, b in zip(total_epochs["none"], total_epochs["median"], strict=True)]
    return {"pruning_best_gap": round(float(np.median(gaps)), 4),
            "pruning_epochs_ratio": round(float(np.median(ratios)), 3),
            "pruning_best_unpruned": [round(v, 4) for v in best["none"]],
            "pruning_best_pruned": [round(v, 4) for v in best["median"]],
            "pruning_epochs": total_epochs,
            "pruning_setup": {"trials": trials, "epochs": epochs, "seeds": seeds}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer seeds, trials, repeats")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per function and method in the optimizer comparison "
                             "(default: 100; 20 with --quick)")
    parser.add_argument("--dlib-seeds", type=int, default=10,
                        help="seeds per case of dlib's tests (default: 10)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["optimizers", "dlib", "overhead", "distributed", "memory",
                                 "pruning"],
                        help="parts to leave out")
    args = parser.parse_args(argv)
    load_digits()  # Warm scikit-learn's import before anything is timed.
    result = {}
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) \
            as scratch:
        if "optimizers" not in args.skip:
            result.update(optimizer_benchmark(
                seeds=args.seeds or (20 if args.quick else 100),
                budget=200 if args.quick else 400,
                bayes_seeds=3 if args.quick else 20, bayes_budget=60 if args.quick else 100,
                scratch=scratch))
        if "dlib" not in args.skip:
            result.update(dlib_benchmark(seeds=args.dlib_seeds, scratch=scratch))
        if "overhead" not in args.skip:
            result.update(overhead_benchmark(6 if args.quick else 10, 1 if args.quick else 3,
                                             scratch))
        if "memory" not in args.skip:
            result.update(memory_benchmark(5, 20, scratch))
        if "pruning" not in args.skip:
            # Quick: one seed, 12 trials of 6 epochs (the rule needs 5 completed trials).
            result.update(pruning_benchmark(*((1, 12, 6) if args.quick else (3, 30, 20)),
                                            scratch))
        if "distributed" not in args.skip:
            # Quick: a 6-point smoke grid, which start-up dominates. Full: 12 points on all
            # of digits, 3 epochs each.
            for pinned in (False, True) if launch.available_cores() >= 2 else (False,):
                result.update(distributed_benchmark(
                    scratch, units=(16, 32) if args.quick else (8, 16, 32, 64),
                    search_args=["--smoke"] if args.quick else ["--epochs", "3"],
                    pinned=pinned))
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())

"""What a search leaves behind: `trials.json`, `best.json`, `search.png`, a table, progress."""

import math
import os

from keras_tuner.engine.trial import TrialStatus

from kfound import io_utils, runs
from kfound.tuning import hparams_dashboard
from kfound.tuning.tuners import FINISHED


def trial_records(oracle):
    """One dict per trial, by trial id: `trial_id`, `hyperparameters`, `score`, `status`
    (a `keras_tuner.engine.trial.TrialStatus`: RUNNING, COMPLETED, FAILED, ...), `seconds`,
    `worker`, `devices` (the `CUDA_VISIBLE_DEVICES` entries its worker had), `epochs_run`
    (the epochs it trained, from its per-epoch metrics) and `pruned` (whether the oracle
    stopped it early; a pruned trial is `COMPLETED`, scored by its best epoch)."""
    seconds = getattr(oracle, "trial_seconds", {})
    workers = getattr(oracle, "trial_workers", {})
    devices = getattr(oracle, "trial_devices", {})
    pruned = getattr(oracle, "pruned_trials", {})
    return [
        {
            "trial_id": trial_id,
            "hyperparameters": dict(trial.hyperparameters.values),
            "score": trial.score,
            "status": trial.status,
            "seconds": seconds.get(trial_id),
            "worker": workers.get(trial_id),
            "devices": devices.get(trial_id),
            "epochs_run": epochs_run(trial),
            "pruned": trial_id in pruned,
        }
        for trial_id, trial in sorted(oracle.trials.items())
    ]


def epochs_run(trial):
    """The epochs a trial trained: the steps of its longest per-epoch metric history."""
    return max((len(history.get_history()) for history in trial.metrics.metrics.values()),
               default=0)


def dashboard_folder(output):
    """The folder of a search's HParams dashboard: `<output>/tensorboard`."""
    return os.path.join(output, hparams_dashboard.FOLDER)


def completed_records(records):
    """The records of the trials that completed with a score."""
    return [r for r in records if r["status"] == TrialStatus.COMPLETED and r["score"] is not None]


def best_record(records, direction):
    """The completed record with the best score, or `None`."""
    completed = completed_records(records)
    if not completed:
        return None
    pick = max if direction == "max" else min
    return pick(completed, key=lambda r: r["score"])


class SearchReporter:
    """Called by the oracle when a trial ends: rewrites `trials.json` and `best.json`
    atomically, adds the trial's row to the HParams dashboard, and prints one progress
    line with the running best.

    Args:
        output: the run folder.
        verbose: print the progress line. Defaults to `True`.
        distribution: the `kfound.distribution` record to write into `best.json`.
        dashboard: write TensorBoard's HParams dashboard into `<output>/tensorboard/`
            (`kfound.tuning.hparams_dashboard`). Defaults to `True`.
    """

    def __init__(self, output, verbose=True, distribution=None, dashboard=True):
        self.output = output
        self.verbose = verbose
        self.distribution = distribution
        self.dashboard = dashboard

    def __call__(self, oracle, trial):
        records = trial_records(oracle)
        io_utils.write_json(os.path.join(self.output, "trials.json"), records)
        if self.dashboard:
            hparams_dashboard.update(dashboard_folder(self.output), oracle, records,
                                     ended=trial.trial_id)
        best = best_record(records, oracle.objective.direction)
        if best is not None:
            write_best(self.output, best, oracle.objective, self.distribution)
        if self.verbose:
            print(progress_line(oracle, trial, records, best), flush=True)


def progress_line(oracle, trial, records, best):
    """`[trial 3/10] COMPLETED val_accuracy=0.9421 in 4.2s (worker1) | best 0.9533 (trial 1)`;
    a pruned trial says `COMPLETED (pruned after 3 epochs) ...`."""
    done = sum(r["status"] in FINISHED for r in records)
    total = f"/{oracle.max_trials}" if oracle.max_trials else ""
    score = "" if trial.score is None else f" {oracle.objective.name}={trial.score:.4f}"
    seconds = getattr(oracle, "trial_seconds", {}).get(trial.trial_id)
    took = "" if seconds is None else f" in {seconds:.1f}s"
    worker = getattr(oracle, "trial_workers", {}).get(trial.trial_id)
    by = f" ({worker})" if worker and worker != "tuner0" else ""
    best_text = "none yet" if best is None else f"{best['score']:.4f} (trial {best['trial_id']})"
    values = " ".join(f"{k}={_short(v)}" for k, v in trial.hyperparameters.values.items()
                      if not k.startswith("tuner/"))
    pruned_after = getattr(oracle, "pruned_trials", {}).get(trial.trial_id)
    pruned = "" if pruned_after is None else f" (pruned after {_epochs(pruned_after)})"
    return (f"[trial {done}{total}] {trial.status}{pruned}{score}{took}{by} | best {best_text} | "
            f"{values}")


def write_best(output, best, objective, distribution=None):
    """Writes `best.json`: the objective, the best trial's id, score and hyperparameters,
    and the `kfound.distribution` record of how trials trained (`{"kind", "devices"}`)."""
    io_utils.write_json(os.path.join(output, "best.json"), {
        "objective": objective.name,
        "direction": objective.direction,
        "trial_id": best["trial_id"],
        "score": best["score"],
        "hyperparameters": best["hyperparameters"],
        "distribution": distribution,
    })


def summary_table(records, direction, objective_name, top=10):
    """The `top` completed trials, best first, as a printable table."""
    completed = completed_records(records)
    completed.sort(key=lambda r: r["score"], reverse=direction == "max")
    names = [n for n in (completed[0]["hyperparameters"] if completed else {})
             if not n.startswith("tuner/")]
    rows = [
        {"trial": r["trial_id"], objective_name: r["score"],
         "seconds": None if r["seconds"] is None else f"{r['seconds']:.1f}",
         **{n: _short(r["hyperparameters"].get(n)) for n in names}}
        for r in completed[:top]
    ]
    return runs.format_table(rows)


def plot_search(records, objective_name, direction, path):
    """Saves `search.png`: the objective per trial with the best so far and, when two or
    more numeric hyperparameters vary, the two most varied against the score."""
    from matplotlib.figure import Figure

    completed = completed_records(records)
    numeric = _varying_numeric(completed)
    figure = Figure(figsize=(11 if len(numeric) >= 2 else 6, 4.2), layout="constrained")
    axes = figure.subplots(1, 2 if len(numeric) >= 2 else 1, squeeze=False)[0]
    order = [int(r["trial_id"]) for r in completed]
    scores = [r["score"] for r in completed]
    pick = max if direction == "max" else min
    best_so_far = [pick(scores[: i + 1]) for i in range(len(scores))]
    axes[0].plot(order, scores, "o", label=objective_name, alpha=0.7)
    axes[0].step(order, best_so_far, where="post", label="best so far")
    axes[0].set_xlabel("trial")
    axes[0].set_ylabel(objective_name)
    axes[0].set_title("Objective per trial")
    axes[0].legend()
    if len(numeric) >= 2:
        (x_name, x_log), (y_name, y_log) = numeric[:2]
        points = axes[1].scatter([r["hyperparameters"][x_name] for r in completed],
                                 [r["hyperparameters"][y_name] for r in completed],
                                 c=scores, cmap="viridis")
        axes[1].set_xscale("log" if x_log else "linear")
        axes[1].set_yscale("log" if y_log else "linear")
        axes[1].set_xlabel(x_name)
        axes[1].set_ylabel(y_name)
        axes[1].set_title(f"{objective_name} by hyperparameters")
        figure.colorbar(points, ax=axes[1], label=objective_name)
    io_utils.save_figure(figure, path, dpi=100)


def _varying_numeric(records):
    """Numeric hyperparameters that take two or more values, most distinct values first;
    each with whether a log axis suits it (positive values spanning over 10x)."""
    found = []
    names = records[0]["hyperparameters"] if records else {}
    for name in names:
        if name.startswith("tuner/"):
            continue
        values = [r["hyperparameters"].get(name) for r in records]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        if len(set(values)) >= 2:
            log = min(values) > 0 and max(values) / min(values) > 10
            found.append((len(set(values)), name, log))
    found.sort(key=lambda t: -t[0])
    return [(name, log) for _, name, log in found]


def _epochs(count):
    return f"{count} epoch{'' if count == 1 else 's'}"


def _short(value):
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return float(f"{value:.4g}")
    return value

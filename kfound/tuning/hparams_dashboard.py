"""TensorBoard's HParams dashboard for a search, on every backend, without TensorFlow.

KerasTuner logs HParams only under TensorFlow, through a TensorBoard callback the user
must pass. kfound writes the dashboard itself from the oracle's trials: `<output>/
tensorboard/` holds one run per trial (`<trial_id>/`) with its hyperparameters, its status
(the session's end), its best objective (`best_<objective>`), `epochs_run` and `pruned`,
and its learning curves (`epoch_<metric>` per epoch), plus an experiment summary at the
top that lists every hyperparameter with its domain and the three metrics. Open it with

```
tensorboard --logdir <output>/tensorboard
```

and pick HPARAMS: one row per trial.

The files are TensorBoard event files written with the `tensorboard` package's own
protocol buffers (`tensorboard.compat.proto`), its HParams summaries
(`tensorboard.plugins.hparams.summary_v2`) and its TF-free record writer, so nothing
imports TensorFlow. Each file is written whole and moved into place (`os.replace`), so a
killed search never leaves a half-written file; a trial's run is written when it ends.
Without the `tensorboard` package the search still runs and says once that it writes no
dashboard (`available()`).
"""

import contextlib
import importlib.util
import io
import os
import tempfile
import time

from keras_tuner.engine import hyperparameters as hp_module
from keras_tuner.engine.trial import TrialStatus

FOLDER = "tensorboard"
EVENT_FILE = "events.out.tfevents.kfound"  # TensorBoard reads files named *tfevents*
CURVE_PREFIX = "epoch_"
_FINISHED = (TrialStatus.COMPLETED, TrialStatus.FAILED)
_STATUS = {  # KerasTuner's trial status -> the HParams session status name
    TrialStatus.COMPLETED: "STATUS_SUCCESS", TrialStatus.FAILED: "STATUS_FAILURE",
    TrialStatus.INVALID: "STATUS_FAILURE", TrialStatus.RUNNING: "STATUS_RUNNING",
}


def available():
    """Whether the `tensorboard` package is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def objective_tag(objective_name):
    """The scalar tag of a trial's best objective: `best_val_accuracy`."""
    return f"best_{objective_name}"


def write_experiment(logdir, hyperparameters, objective):
    """Writes the experiment summary: the hyperparameters with their domains, the metrics.

    Rewritten only when it changes (a conditional hyperparameter that first appears in a
    trial): a running TensorBoard shows the new columns once it is restarted.

    Args:
        logdir: the dashboard's folder, `<output>/tensorboard`.
        hyperparameters: the oracle's `keras_tuner.HyperParameters` (its space).
        objective: the oracle's `keras_tuner.Objective`.
    """
    from tensorboard.plugins.hparams import summary_v2

    seen, hparams = set(), []
    for hp in hyperparameters.space:
        if hp.name in seen:  # The same name in two conditional scopes: one column.
            continue
        seen.add(hp.name)
        hparams.append(summary_v2.HParam(hp.name, _domain(hp, summary_v2)))
    metrics = [
        summary_v2.Metric(objective_tag(objective.name),
                          display_name=f"{objective.name} (best epoch)",
                          description=f"the trial's score: its best {objective.name} "
                                      f"({objective.direction})"),
        summary_v2.Metric("epochs_run", description="the epochs the trial trained"),
        summary_v2.Metric("pruned", description="1 if the pruner stopped the trial early"),
    ]
    # No creation time, and a zero wall time: the same space gives the same bytes.
    _write_events(logdir, [(0, summary_v2.hparams_config_pb(hparams, metrics))],
                  wall_time=0.0, only_if_changed=True)


def write_trial(logdir, trial, record, objective):
    """Writes one trial's run: its HParams row and its learning curves.

    Args:
        logdir: the dashboard's folder, `<output>/tensorboard`.
        trial: the oracle's `keras_tuner.engine.trial.Trial` (its per-epoch metrics).
        record: the trial's `kfound.tuning.results.trial_records` entry.
        objective: the oracle's `keras_tuner.Objective`.
    """
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2

    values = {name: value for name, value in record["hyperparameters"].items()
              if not name.startswith("tuner/") and value is not None}
    now = time.time()
    started = now - (record["seconds"] or 0.0)
    start = summary_v2.hparams_pb(values, trial_id=record["trial_id"], start_time_secs=started)
    end_info = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.Status.Value(_STATUS.get(record["status"], "STATUS_UNKNOWN")),
        end_time_secs=now)
    end = summary_pb2.Summary()
    end.value.add(tag=metadata.SESSION_END_INFO_TAG, tensor=metadata.NULL_TENSOR,
                  metadata=metadata.create_summary_metadata(
                      plugin_data_pb2.HParamsPluginData(session_end_info=end_info)))
    summaries = [(0, start)]
    for name, history in sorted(trial.metrics.metrics.items()):
        for observation in history.get_history():
            summaries.append((observation.step, _scalar(CURVE_PREFIX + name, observation.mean())))
    finals = {"epochs_run": record["epochs_run"], "pruned": float(record["pruned"])}
    if record["score"] is not None:
        finals[objective_tag(objective.name)] = record["score"]
    summaries += [(0, _scalar(tag, value)) for tag, value in finals.items()]
    summaries.append((0, end))
    _write_events(os.path.join(logdir, str(record["trial_id"])), summaries, wall_time=now)


def update(logdir, oracle, records, ended=None):
    """Brings the dashboard up to date with the oracle's trials.

    Writes the experiment summary (if it changed), the run of trial `ended` (if given),
    and the run of every finished trial that has none yet (a search resumed, or written
    before this dashboard existed).

    Args:
        logdir: the dashboard's folder, `<output>/tensorboard`.
        oracle: the search's `keras_tuner.Oracle`.
        records: `kfound.tuning.results.trial_records(oracle)`.
        ended: the id of the trial that just ended, or `None`.
    """
    write_experiment(logdir, oracle.get_space(), oracle.objective)
    for record in records:
        trial_id = record["trial_id"]
        if trial_id == ended or (record["status"] in _FINISHED and not os.path.exists(
                os.path.join(logdir, str(trial_id), EVENT_FILE))):
            write_trial(logdir, oracle.trials[trial_id], record, oracle.objective)


def _domain(hp, summary_v2):
    if isinstance(hp, hp_module.Boolean):
        return summary_v2.Discrete([True, False])
    if isinstance(hp, hp_module.Fixed):
        return summary_v2.Discrete([hp.value])
    if isinstance(hp, hp_module.Choice):
        return summary_v2.Discrete(list(hp.values))
    if isinstance(hp, hp_module.Int):
        return summary_v2.IntInterval(hp.min_value, hp.max_value)
    if isinstance(hp, hp_module.Float):
        return summary_v2.RealInterval(float(hp.min_value), float(hp.max_value))
    return None


def _scalar(tag, value):
    from tensorboard.compat.proto import summary_pb2

    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, simple_value=float(value))
    return summary


def _write_events(folder, summaries, wall_time, only_if_changed=False):
    """Writes `(step, Summary)` pairs as `folder/EVENT_FILE`, whole, then moves it in place.

    The temporary file's name lacks `tfevents`, so a running TensorBoard never reads it.
    """
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    events = [event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2")]
    events += [event_pb2.Event(wall_time=wall_time, step=int(step), summary=summary)
               for step, summary in summaries]
    buffer = io.BytesIO()
    writer = RecordWriter(buffer)
    for event in events:
        writer.write(event.SerializeToString())
    data = buffer.getvalue()
    path = os.path.join(folder, EVENT_FILE)
    if only_if_changed and os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".events-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)  # as `open()` would create it
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise

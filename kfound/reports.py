"""Training reports: a history as one CSV file, and a plot of its loss and accuracy curves."""

import csv
import io

from kfound import io_utils


def write_history_csv(path, history):
    """Writes a history dict of per-epoch lists as a CSV, atomically."""
    keys = list(history)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(keys)
    writer.writerows(zip(*(history[k] for k in keys), strict=True))
    io_utils.write_text(path, buffer.getvalue())


def plot_curves(path, histories, title=""):
    """Plots training and validation loss and accuracy of one or more histories.

    Args:
        path: the image file (written atomically).
        histories: a dict from run name to history dict.
        title: the figure title.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    for name, history in histories.items():
        epochs = history["epoch"]
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            line = ax.plot(epochs, history[metric], "--", label=f"{name} train")[0]
            ax.plot(epochs, history[f"val_{metric}"], "-", color=line.get_color(),
                    label=f"{name} val")
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(title)
    io_utils.save_figure(figure, path, dpi=100)

"""What every recipe and search script shares: its standard flags, its run folder, its table.

A recipe's `main()` does:

```python
parser = argparse.ArgumentParser(description=__doc__)
kfound.runs.add_run_arguments(parser, run_name="vanishing_gradients", not_results=())
parser.add_argument("--epochs", type=int, default=30, help="...")
args = parser.parse_args(argv)
output = kfound.runs.start_run(args)  # checks a rerun, writes args.json, seeds everything
...
return kfound.runs.finish_run(args, report, plot(rows))  # report.json, the PNG, what next
```

The flags and the rerun rule live in `kfound.run_arguments`, which needs only the standard
library; this module re-exports them.
"""

import contextlib
import os
import pathlib

import keras

from kfound import io_utils
from kfound.data.spec import parse_dataset, safe_name
from kfound.run_arguments import DEFAULT_SEED as DEFAULT_SEED
from kfound.run_arguments import SAVED_MODELS as SAVED_MODELS
from kfound.run_arguments import add_run_arguments as add_run_arguments
from kfound.run_arguments import check_rerun as check_rerun
from kfound.run_arguments import check_writable_folder as check_writable_folder
from kfound.run_arguments import result_arguments as result_arguments

# The dots per inch of every recipe's plot.
PLOT_DPI = 100


def start_run(args):
    """Resolves the run folder, applies the rerun rule, writes `args.json`, seeds everything.

    For a parser given `add_run_arguments(..., not_results=...)`, a rerun into a folder
    that holds another run's `args.json` is refused unless every result-changing argument
    matches or `--overwrite` is set (`kfound.run_arguments.check_rerun`, which `--overwrite`
    has delete the previous `args.json` and `report.json`). Call it once the arguments are
    checked and before any work.

    Args:
        args: the parsed `argparse.Namespace` of a parser given `add_run_arguments`.

    Returns:
        The run folder, a `pathlib.Path` that exists.

    Raises:
        ValueError: the run folder cannot be written (`check_writable_folder`), or the
            rerun rule refuses the run (see `check_rerun`).
    """
    output = run_folder(args)
    check_writable_folder(output, flag=True)
    if getattr(args, "_not_results", None) is not None:
        check_rerun(output, args)
    output.mkdir(parents=True, exist_ok=True)
    resolved = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    io_utils.write_json(output / "args.json", resolved)
    keras.utils.set_random_seed(args.seed)
    return output


def finish_run(args, report, figure):
    """Ends a recipe: writes `report.json` and its plot, and says where they went and what next.

    Args:
        args: the recipe's arguments, after `start_run` (which set `args.output`).
        report: the recipe's report, a JSON-serializable dict with the standard keys that
            `recipes/build_index.py` checks (`recipe`, `chapter`, `claim`, `status`,
            `verdict`, `plot`).
        figure: the `matplotlib.figure.Figure` to save as `report["plot"]`, a PNG in the
            run folder, at `PLOT_DPI` dots per inch.

    Returns:
        `report`.
    """
    output = pathlib.Path(args.output)
    io_utils.write_json(output / "report.json", report)
    io_utils.save_figure(figure, output / report["plot"], dpi=PLOT_DPI)
    print(f"Wrote {output / 'report.json'}, {output / report['plot']} and "
          f"{output / 'args.json'}")
    name = report["recipe"]
    if args.smoke:
        print(f"Next: the full run, python recipes/{name}.py")
    elif output.name == name:
        print("Next: copy it into recipes/results/ and the index, python "
              f"recipes/build_index.py --collect {output.parent} --recipes {name}")
    else:
        print(f"Next: to index it, run into a folder named {name} (--output DIR/{name}), "
              f"then python recipes/build_index.py --collect DIR --recipes {name}")
    return report


def run_folder(args):
    """The run folder of `args` (`--output`, or its default name), without creating it.

    Sets `args.output` when it was `None`.

    Args:
        args: the parsed `argparse.Namespace` of a parser given `add_run_arguments`.

    Returns:
        The run folder, a `pathlib.Path`.
    """
    if args.output is None:
        name = args._run_name.format(**{k: _slug(v) for k, v in vars(args).items()})
        args.output = os.path.join(SAVED_MODELS, name)
    return pathlib.Path(args.output)


def format_table(rows, columns=None, floatfmt="{:.4f}"):
    """Formats a list of dicts as an aligned plain-text table.

    Args:
        rows: a list of dicts, one per table row.
        columns: the keys to show, in order. Defaults to the first row's keys.
        floatfmt: the format of float cells. Defaults to four decimals.

    Returns:
        The table as one string, with a header and a rule.

    Example:

    >>> print(format_table([{"state": "head", "val_accuracy": 0.91}]))
    state  val_accuracy
    -----  ------------
    head   0.9100
    """
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())

    def cell(value):
        if isinstance(value, float):
            return floatfmt.format(value)
        return "" if value is None else str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _slug(value):
    text = str(value)
    with contextlib.suppress(ValueError):
        text = parse_dataset(text).slug  # "tfds:tf_flowers" -> "tf_flowers"
    return safe_name(text)

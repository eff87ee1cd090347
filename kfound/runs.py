"""What every recipe and search script shares: its standard flags, its run folder, its table.

A recipe's `main()` does:

```python
parser = argparse.ArgumentParser(description=__doc__)
kfound.runs.add_run_arguments(parser, run_name="vanishing_gradients")
parser.add_argument("--epochs", type=int, default=30, help="...")
args = parser.parse_args(argv)
output = kfound.runs.start_run(args)  # makes the folder, writes args.json, seeds everything
```
"""

import contextlib
import os
import pathlib

import keras

from kfound import io_utils
from kfound.data.spec import parse_dataset, safe_name

DEFAULT_SEED = 1337
SAVED_MODELS = "saved_models"


def add_run_arguments(parser, run_name):
    """Adds `--seed`, `--output` and `--smoke` to an `argparse.ArgumentParser`.

    Args:
        parser: the parser to extend.
        run_name: the run's folder name; `--output` defaults to `saved_models/<run_name>/`.
            A string may hold `{placeholders}` naming other arguments (for example
            `"finetune-{dataset}-{backbone}-{state}"`); `start_run` fills them in.
    """
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED,
        help=f"random seed for Python, NumPy and the backend (default: {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--output", default=None,
        help=f"run folder for models, metrics and plots (default: {SAVED_MODELS}/{run_name}/)",
    )
    parser.add_argument(
        "--smoke", action="store_true",
        help="a tiny, seconds-long run that checks the plumbing, not the result",
    )
    parser.set_defaults(_run_name=run_name)
    return parser


def start_run(args):
    """Resolves the run folder, writes `args.json` into it and seeds every generator.

    Args:
        args: the parsed `argparse.Namespace` of a parser given `add_run_arguments`.

    Returns:
        The run folder, a `pathlib.Path` that exists.
    """
    output = run_folder(args)
    output.mkdir(parents=True, exist_ok=True)
    resolved = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    io_utils.write_json(output / "args.json", resolved)
    keras.utils.set_random_seed(args.seed)
    return output


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

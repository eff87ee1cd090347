"""The flags every recipe shares, and the rule for a rerun into an existing run folder.

This module imports nothing but the standard library, and nothing from kfound, so that a
script can parse and check its flags before it imports Keras (and, under the TensorFlow
backend, TensorFlow), which takes seconds. `import kfound.run_arguments` runs
`kfound/__init__.py`, which imports Keras; a script that must stay light loads this file by
its path instead (see `recipes/finetune.py`). `kfound.runs` re-exports everything here.

The rerun rule: a run into an `--output` folder that already holds a run's `args.json`
proceeds only when every argument that changes a result equals the recorded one (a
deterministic recipe then computes the same results again; a resumable one resumes).
Otherwise it refuses before any work, names each differing argument with its old and new
value, and points to `--overwrite`.

The flag rules: `check_flags(args, epochs=integers(), rates=numbers(0, 1, high_inclusive=False))`
checks parsed values before any work, with the message of `kfound.checks` (the argument,
what was expected, "Received: name=value").
"""

import collections
import json
import math
import numbers as _numbers
import os
import shutil
import sys

DEFAULT_SEED = 1337
# NumPy's seeds are 32-bit: `--seed` (and each of a recipe's `--seeds` seeds from it) must
# fit, or `keras.utils.set_random_seed` fails after the work has started.
MAX_SEED = 2**32 - 1
SAVED_MODELS = "saved_models"
# Arguments that never change a result, whatever the recipe.
ALWAYS_NOT_RESULTS = ("output", "overwrite")
# A recorded args.json is a few hundred bytes; a larger one is not ours.
MAX_ARGS_BYTES = 2**20
_ABSENT = object()


def add_run_arguments(parser, run_name, not_results=None):
    """Adds `--seed`, `--output` and `--smoke`, and for a recipe `--overwrite`.

    Args:
        parser: the `argparse.ArgumentParser` to extend.
        run_name: the run's folder name; `--output` defaults to `saved_models/<run_name>/`.
            A string may hold `{placeholders}` naming other arguments (for example
            `"finetune-{dataset}-{backbone}-{state}"`); `kfound.runs.start_run` fills them in.
        not_results: the `dest` names of the arguments that change no result (a verbosity
            flag, a cache folder), besides `--output` and `--overwrite`, which never do.
            Given (an empty tuple included), the parser also gets `--overwrite` and
            `kfound.runs.start_run` applies the rerun rule. Defaults to `None`: neither,
            for a script that resumes by a rule of its own (the search, which compares its
            space and tuner).

    Returns:
        `parser`.
    """
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED,
        help="random seed for Python, NumPy and the backend (default: %(default)s)",
    )
    parser.add_argument(
        "--output", default=None,
        help=f"run folder for models, metrics and plots (default: {SAVED_MODELS}/{run_name}/)",
    )
    parser.add_argument(
        "--smoke", action="store_true",
        help="a tiny, seconds-long run that checks the plumbing, not the result",
    )
    if not_results is not None:
        parser.add_argument(
            "--overwrite", action="store_true",
            help="replace the run already in --output; without it, a rerun there proceeds "
                 "only when every result-changing argument matches its args.json",
        )
    parser.set_defaults(
        _run_name=run_name,
        _not_results=None if not_results is None else (*ALWAYS_NOT_RESULTS, *not_results),
    )
    return parser


Rule = collections.namedtuple("Rule", ["expected", "holds", "distinct"], defaults=[True])
Rule.__doc__ = """A flag rule: what the value must be (for the message), its test, and for a
list flag whether its values must be distinct (`True` unless made `repeatable`)."""


def repeatable(rule):
    """`rule` for a list flag whose values may repeat (one learning rate per optimizer)."""
    return rule._replace(distinct=False)


def describe_integers(minimum=None, maximum=None):
    """What an integer in `[minimum, maximum]` is called in messages ("a positive integer").

    `kfound.checks` words its messages with this and `describe_numbers` too, so that a
    flag and a layer argument are refused in the same words.
    """
    if maximum is not None:
        return f"an integer in [{minimum}, {maximum}]"
    return {1: "a positive integer", 0: "a non-negative integer",
            None: "an integer"}.get(minimum, f"an integer >= {minimum}")


def integers(minimum=1, maximum=None):
    """The rule for an integer flag in `[minimum, maximum]`.

    Args:
        minimum: the smallest allowed value, or `None` for no bound. Defaults to `1`.
        maximum: the largest allowed value, or `None` for no bound. Defaults to `None`.

    Returns:
        A `Rule` for `check_flags`.
    """
    return Rule(describe_integers(minimum, maximum), lambda v: (
        isinstance(v, int) and not isinstance(v, bool)
        and (minimum is None or v >= minimum) and (maximum is None or v <= maximum)
    ))


def describe_numbers(low=None, high=None, low_inclusive=True, high_inclusive=True):
    """What a finite number within a range is called in messages ("a finite positive number")."""
    if low is None and high is None:
        return "a finite number"
    if high is None:
        if low == 0:
            return "a finite non-negative number" if low_inclusive else "a finite positive number"
        return f"a finite number {'>=' if low_inclusive else '>'} {low}"
    if low is None:
        return f"a finite number {'<=' if high_inclusive else '<'} {high}"
    left, right = "[" if low_inclusive else "(", "]" if high_inclusive else ")"
    return f"a finite number in {left}{low}, {high}{right}"


def numbers(low=None, high=None, *, low_inclusive=True, high_inclusive=True):
    """The rule for a finite number flag within a range.

    `inf` and `nan` are always refused.

    Args:
        low: the lower bound, or `None` for none. Defaults to `None`.
        high: the upper bound, or `None` for none. Defaults to `None`.
        low_inclusive: whether `low` itself is allowed. Defaults to `True`.
        high_inclusive: whether `high` itself is allowed. Defaults to `True`.

    Returns:
        A `Rule` for `check_flags`.
    """
    return Rule(describe_numbers(low, high, low_inclusive, high_inclusive), lambda v: (
        isinstance(v, _numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        and (low is None or (v >= low if low_inclusive else v > low))
        and (high is None or (v <= high if high_inclusive else v < high))
    ))


def flag_error(dest, expected, value):
    """The `ValueError` for flag `dest` (its `argparse` name) whose `value` is not `expected`.

    For the checks between flags that `check_flags` cannot state, with the same message.
    """
    return ValueError(f"Argument `--{dest.replace('_', '-')}` must be {expected}. "
                      f"Received: {dest}={value!r}")


def check_flags(args, **rules):
    """Checks parsed flags against their rules, before any work.

    Call it on the values the user gave: after `parse_args`, before `--smoke` replaces any.
    Besides the flags in `rules`, `--seed` (of `add_run_arguments`) is always checked: an
    integer in `[0, MAX_SEED]`, and a recipe whose `--seeds` count runs the seeds `seed`,
    `seed + 1`, ... needs the last of them in that range too (give `seeds` its rule). A
    given `--output` must be a folder this user can write to, or can create
    (`check_writable_folder`).

    Args:
        args: the parsed `argparse.Namespace`.
        **rules: for a flag's `dest`, the `Rule` its value must meet (`integers(...)`,
            `numbers(...)`). A list (a flag with `nargs`) must meet it in every element,
            with no element given twice unless the rule is `repeatable`. A `None` value (a
            flag left at its `None` default) is not checked.

    Returns:
        `args`.

    Raises:
        ValueError: for the first flag that breaks its rule (see `flag_error`).
    """
    for dest, rule in rules.items():
        value = getattr(args, dest)
        if isinstance(value, list):
            repeated = rule.distinct and len(set(value)) < len(value)
            if repeated or not all(rule.holds(v) for v in value):
                kind = "a list of distinct values" if rule.distinct else "a list"
                raise flag_error(dest, f"{kind}, each {rule.expected}", value)
        elif value is not None and not rule.holds(value):
            raise flag_error(dest, rule.expected, value)
    if "seed" in vars(args) and "seed" not in rules:
        seed = integers(0, MAX_SEED - (getattr(args, "seeds", 1) - 1))
        if not seed.holds(args.seed):
            expected = seed.expected
            if "seeds" in vars(args):
                expected += (f" (the last of its --seeds {args.seeds} seeds, seed + "
                             f"{args.seeds - 1}, must be at most {MAX_SEED})")
            raise flag_error("seed", expected, args.seed)
    if getattr(args, "output", None) is not None and "output" not in rules:
        check_writable_folder(args.output, flag=True)
    return args


def run_main(main):
    """Runs a script's `main()`, ending a bad argument's `ValueError` with one line.

    The line is `<script>: error: <message>`, with exit status 1, as `argparse` reports its
    own errors. A `ValueError` without "Received: " in its message is not about an argument
    (it is a bug) and keeps its traceback.

    Args:
        main: the script's `main`, called without arguments.

    Returns:
        What `main()` returns.
    """
    try:
        return main()
    except ValueError as error:
        if "Received: " not in str(error):
            raise
        sys.exit(f"{os.path.basename(sys.argv[0])}: error: {error}")


def check_writable_folder(path, argument="output", *, flag=False):
    """Raises a clear `ValueError` unless `path` is, or can be made, a writable folder.

    Nothing is created: the check looks at `path`, or at the nearest folder above it
    that exists, so it can run before any work.

    Args:
        path: the folder.
        argument: the flag or argument that gave it, for the message. Defaults to
            `"output"`.
        flag: name it as a command-line flag (`--output`), as `flag_error` does. Defaults
            to `False`.
    """
    path = os.path.abspath(os.fspath(path))
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    problem = None
    if not os.path.isdir(existing):
        problem = f"{existing} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable by this user"
    if problem:
        shown = f"--{argument.replace('_', '-')}" if flag else argument
        raise ValueError(f"Argument `{shown}` must be a folder this process can write to; "
                         f"{problem}. Received: {argument}={path!r}")


def result_arguments(args):
    """The arguments of `args` that change a result, as a dict (private `_` names left out).

    Args:
        args: the parsed `argparse.Namespace` of a parser given `add_run_arguments` with
            `not_results`.
    """
    skip = getattr(args, "_not_results", None) or ALWAYS_NOT_RESULTS
    return {k: v for k, v in vars(args).items() if k not in skip and not k.startswith("_")}


def check_rerun(output, args, remove=("report.json",)):
    """Applies the rerun rule to the run folder `output`, before any work.

    Without a previous `args.json` in `output` this does nothing. With one, and with
    `args.overwrite`, it deletes that `args.json` and the files and folders named in
    `remove` (what the previous run wrote; anything else in `output`, such as a cache,
    stays). Otherwise it compares the result-changing arguments with the recorded ones.

    Args:
        output: the run folder, a path.
        args: the parsed `argparse.Namespace` of a parser given `add_run_arguments` with
            `not_results`.
        remove: names inside `output` that `--overwrite` deletes besides `args.json`.
            Defaults to `("report.json",)`.

    Raises:
        ValueError: a result-changing argument differs from the recorded one (each is named
            with its old and new value), or the recorded `args.json` cannot be read.
    """
    output = os.fspath(output)
    saved = os.path.join(output, "args.json")
    if not os.path.exists(saved):
        return
    if args.overwrite:
        for name in (*remove, "args.json"):
            path = os.path.join(output, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
        print(f"overwrite: deleted the previous run's results in {output}")
        return
    previous = _read_args(saved)
    current = json.loads(json.dumps(result_arguments(args)))
    skip = args._not_results or ALWAYS_NOT_RESULTS
    names = [*current, *(k for k in previous
                         if k not in current and k not in skip and not k.startswith("_"))]
    differ = [f"--{k.replace('_', '-')} {_shown(previous, k)} -> {_shown(current, k)}"
              for k in names if previous.get(k, _ABSENT) != current.get(k, _ABSENT)]
    if differ:
        raise ValueError(
            f"Argument `--output` holds a run with other arguments ({saved}): "
            f"{'; '.join(differ)}. Rerun with its arguments (to repeat or resume it), pass "
            f"--overwrite to start over, or choose another --output. Received: output={output!r}"
        )


def _shown(values, name):
    return repr(values[name]) if name in values else "(absent)"


def _read_args(path):
    problem = None
    try:
        if os.path.getsize(path) > MAX_ARGS_BYTES:
            problem = f"is over {MAX_ARGS_BYTES} bytes"
        else:
            with open(path, encoding="utf-8") as f:
                previous = json.load(f)
            if not isinstance(previous, dict):
                problem = "does not hold a JSON object"
    except (OSError, ValueError) as error:
        problem = f"cannot be read ({type(error).__name__}: {str(error)[:200]})"
    if problem:
        raise ValueError(
            f"Argument `--output` holds a run whose {path} {problem}; pass --overwrite to "
            f"start over, or choose another --output. Received: output={os.path.dirname(path)!r}"
        )
    return previous

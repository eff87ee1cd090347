"""The recipe under test, loaded from `recipes/` (the recipes are scripts, not a package)."""

import importlib.util
import pathlib
import sys

import pytest

RECIPES = pathlib.Path(__file__).resolve().parents[2] / "recipes"
# `python recipes/NAME.py` puts recipes/ on sys.path, where the recipes find `_light`.
if str(RECIPES) not in sys.path:
    sys.path.insert(0, str(RECIPES))


def load_recipe(name):
    """Imports `recipes/<name>.py` as a module named `<name>_recipe`."""
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recipe(request):
    """The recipe that this test file is named after: `test_NAME.py` tests `recipes/NAME.py`.

    `test_NAME_recipe.py` tests `recipes/NAME.py` too, for names that a top-level test file
    already takes (`test_finetune.py` tests `kfound.finetune`).
    """
    name = pathlib.Path(request.module.__file__).stem.removeprefix("test_")
    return load_recipe(name.removesuffix("_recipe"))


@pytest.fixture(scope="session")
def build_index():
    """`recipes/build_index.py`, which defines the standard report and checks it."""
    return load_recipe("build_index")


_REFUSALS = """
import json, sys
sys.modules["keras"] = sys.modules["tensorflow"] = None  # importing either one fails
sys.path.insert(0, {recipes!r})  # as `python recipes/NAME.py` does
import importlib.util
spec = importlib.util.spec_from_file_location("recipe", {path!r})
recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe)
results = []
for argv in {cases!r}:
    try:
        recipe.main(argv)
        results.append(["returned", ""])
    except SystemExit as exit:
        results.append(["SystemExit", str(exit.code)])
    except Exception as error:
        results.append([type(error).__name__, str(error)])
print(json.dumps(results))
"""


def assert_flags_refused(name, cases, tmp_path):
    """Checks that `recipes/<name>.py` refuses each bad flag at once, before importing Keras.

    Runs the recipe's `main` on every case in one fresh process in which importing Keras or
    TensorFlow fails, so a recipe that imported either before checking its flags would
    raise an `ImportError` instead. `--help` must work there too.

    Args:
        name: the recipe.
        cases: `(argv, dest)` pairs: arguments with one bad flag, and that flag's `dest`,
            which the `ValueError` must name (as `--dest-with-dashes` and `Received: dest=`).
        tmp_path: each case runs with its own `--output` under it, which must stay absent.
    """
    import json
    import os
    import subprocess

    outputs = [tmp_path / f"case{i}" for i in range(len(cases))]
    argvs = [[*argv, "--output", str(out)] for (argv, _), out in zip(cases, outputs, strict=True)]
    code = _REFUSALS.format(recipes=str(RECIPES), path=str(RECIPES / f"{name}.py"),
                            cases=[["--help"], *argvs])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONWARNINGS": "error"})
    assert result.returncode == 0, result.stderr
    (help_kind, help_code), *refused = json.loads(result.stdout.splitlines()[-1])
    assert (help_kind, help_code) == ("SystemExit", "0")
    for (argv, dest), (kind, message), output in zip(cases, refused, outputs, strict=True):
        assert kind == "ValueError", (argv, kind, message)
        assert f"Argument `--{dest.replace('_', '-')}`" in message, (argv, message)
        assert f"Received: {dest}=" in message, (argv, message)
        assert not output.exists(), (argv, "the output folder was created")

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


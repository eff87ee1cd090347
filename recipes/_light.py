"""kfound's standard-library modules, for the recipes, loaded without `import kfound`.

`import kfound` registers kfound's layers, which imports Keras and, under the TensorFlow
backend, TensorFlow: seconds. A recipe parses and checks its flags with `run_arguments`
first, so that a bad flag is reported at once, and imports Keras and the rest of kfound
only in the functions that use them. `python recipes/NAME.py` puts this folder on
`sys.path`, which is how a recipe finds this module.
"""

import importlib.util
import pathlib


def light_module(name):
    """`kfound/<name>.py`, loaded by its path without running `kfound/__init__.py`.

    Args:
        name: a kfound module that imports only the standard library.

    Returns:
        The module, loaded once per process.
    """
    package = importlib.util.find_spec("kfound")  # finds kfound without importing it
    if package is None:
        raise ModuleNotFoundError("No module named 'kfound'", name="kfound")
    path = pathlib.Path(package.submodule_search_locations[0]) / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"kfound_{name}_light", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


io_utils = light_module("io_utils")  # atomic writes
run_arguments = light_module("run_arguments")  # --seed, --output, --smoke, --overwrite; flag rules

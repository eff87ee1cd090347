"""Runs a distributed search on this machine: a chief and N workers on 127.0.0.1.

```
python tuning/launch.py --workers 2 -- --tuner random --space tuning/spaces/mlp.yaml --smoke
```

Everything after `--` is passed to `tuning/search.py`. The chief serves KerasTuner's oracle
over gRPC and writes the results; each worker trains trials. A worker that dies is
restarted and retries its trial. For several machines, run `tuning/search.py` yourself
with `--role chief|worker --oracle HOST:PORT` (see README.md).
"""

import importlib.util
import pathlib
import sys


def _launcher():
    """`kfound.tuning.launch`, loaded by its path without running `kfound/__init__.py`.

    The launcher only starts processes and needs nothing but the standard library. `import
    kfound` registers kfound's Keras classes, which imports Keras (and under the TensorFlow
    backend, TensorFlow): seconds that the chief and every worker would wait for.
    """
    package = importlib.util.find_spec("kfound")  # finds kfound without importing it
    path = pathlib.Path(package.submodule_search_locations[0]) / "tuning" / "launch.py"
    spec = importlib.util.spec_from_file_location("kfound_tuning_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(_launcher().main())

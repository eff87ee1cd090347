"""Runs a distributed search on this machine: a chief and N workers on 127.0.0.1.

```
python tuning/launch.py --workers 2 -- --tuner random --space tuning/spaces/mlp.yaml --smoke
```

Everything after `--` is passed to `tuning/search.py`. The chief serves KerasTuner's oracle
over gRPC and writes the results; each worker trains trials. A worker that dies is
restarted and retries its trial. For several machines, run `tuning/search.py` yourself
with `--role chief|worker --oracle HOST:PORT` (see README.md).
"""

import sys

from kfound.tuning.launch import main

if __name__ == "__main__":
    sys.exit(main())

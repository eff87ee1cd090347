"""Hyperparameter search with KerasTuner: grid, random, bayesian, hyperband, lipo.

Runs a search described by a space file and writes its results to
`saved_models/search-<space>-<tuner>/` (`trials.json`, `best.json`, `best_model.keras`,
`search.png`, and TensorBoard's HParams dashboard in `tensorboard/`: `tensorboard --logdir
<output>/tensorboard`). Run the same command again to resume a stopped or killed search.
`--prune median` stops hopeless trials early (every tuner but hyperband).

```
python tuning/search.py --tuner lipo --space tuning/spaces/mlp.yaml --max-trials 20
python tuning/search.py --tuner grid --space tuning/spaces/mlp_grid.json --smoke
python tuning/search.py --tuner random --space tuning/spaces/finetune.yaml --smoke
python tuning/search.py --space tuning/spaces/mlp_lipo.yaml --epochs 20 --prune median
```

`tuning/spaces/finetune.yaml` tunes head-only vs full fine-tuning (`kfound.finetune`) on
the offline embedded task; `tfds:NAME` and `folder:PATH` datasets work the same way.

A `--smoke` search trains each trial one epoch on a slice of digits: seconds per trial.
The logic lives in `kfound.tuning.search`; see `--help` for every flag.
"""

from kfound.tuning.search import cli

if __name__ == "__main__":
    cli()

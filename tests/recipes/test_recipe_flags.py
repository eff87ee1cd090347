"""Every recipe checks its flags before it imports Keras: a table of bad flags per recipe.

A bad flag must be a `ValueError` that names it, at once: before Keras (and, under the
TensorFlow backend, TensorFlow) is imported, and before the `--output` folder is made.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.recipes.conftest import RECIPES, load_recipe

# For each recipe, `(argv, dest)`: arguments with one bad flag, and that flag's `dest`.
REFUSED = {
    "activations": [
        (["--depth", "0"], "depth"),
        (["--width", "-1"], "width"),
        (["--learning-rate", "-1"], "learning_rate"),
        (["--epochs", "0"], "epochs"),
        (["--shock-learning-rates", "0.5", "0"], "shock_learning_rates"),
        (["--shock-learning-rates", "1.0", "1.0"], "shock_learning_rates"),
        (["--shock-epochs", "0"], "shock_epochs"),
        (["--recovery-epochs", "0"], "recovery_epochs"),
        (["--leaky-slope", "nan"], "leaky_slope"),
        (["--seeds", "0"], "seeds"),
        (["--probe-size", "0"], "probe_size"),
        (["--timing-width", "0"], "timing_width"),
        (["--timing-repeats", "0"], "timing_repeats"),
        (["--sparse-threshold", "-0.1"], "sparse_threshold"),
        (["--dead-threshold", "1"], "dead_threshold"),
        (["--time-margin", "inf"], "time_margin"),
        (["--seed", "-1"], "seed"),
        (["--seed", str(2**32 - 1), "--seeds", "2"], "seed"),
    ],
    "augmentation": [
        (["--per-class", "0"], "per_class"),
        (["--per-class", "10", "151"], "per_class"),
        (["--per-class", "10", "10"], "per_class"),
        (["--majority", "500"], "majority"),
        (["--minority", "0"], "minority"),
        (["--steps", "0"], "steps"),
        (["--seeds", "0"], "seeds"),
        (["--seed", "-1"], "seed"),
    ],
    "backprop_by_hand": [
        (["--learning-rate", "0"], "learning_rate"),
        (["--learning-rate", "nan"], "learning_rate"),
        (["--seed", "-1"], "seed"),
    ],
    "batch_size_tradeoff": [
        (["--target", "0"], "target"),
        (["--target", "1.5"], "target"),
        (["--max-epochs", "0"], "max_epochs"),
        (["--repeats", "0"], "repeats"),
        (["--seed", "-1"], "seed"),
        (["--seed", "4294967295", "--repeats", "2"], "seed"),
    ],
    "conv_output_size": [
        (["--seed", "-1"], "seed"),
    ],
    "cross_entropy_vs_quadratic": [
        (["--learning-rates", "0"], "learning_rates"),
        (["--learning-rates", "0.15", "0.15"], "learning_rates"),
        (["--steps", "0"], "steps"),
        (["--target-output", "1"], "target_output"),
        (["--tolerance", "inf"], "tolerance"),
        (["--seed", "-1"], "seed"),
    ],
    "depth_vs_width": [
        (["--ks", "1", "13"], "ks"),
        (["--ks", "2", "2"], "ks"),
        (["--ks", "3"], "ks"),
        (["--deep-width", "0"], "deep_width"),
        (["--max-width", "1"], "max_width"),
        (["--steps", "0"], "steps"),
        (["--learning-rate", "inf"], "learning_rate"),
        (["--target", "-1"], "target"),
        (["--growth-slope", "0"], "growth_slope"),
        (["--seeds", "0"], "seeds"),
        (["--seed", "-1"], "seed"),
    ],
    "dropout_rate": [
        (["--rates", "0.0", "1.0"], "rates"),
        (["--rates", "0.5", "0.5"], "rates"),
        (["--rates", "0.0"], "rates"),
        (["--max-norm", "0"], "max_norm"),
        (["--train-size", "9"], "train_size"),
        (["--train-size", "1338"], "train_size"),
        (["--width", "0"], "width"),
        (["--epochs", "0"], "epochs"),
        (["--learning-rate", "nan"], "learning_rate"),
        (["--seeds", "0"], "seeds"),
        (["--seed", "-1"], "seed"),
    ],
    "finetune": [
        (["--epochs", "0"], "epochs"),
        (["--learning-rate", "nan"], "learning_rate"),
        (["--image-size", "0"], "image_size"),
        (["--seed", "-1"], "seed"),
    ],
    "finetune_learning_curve": [
        (["--per-class", "5", "446"], "per_class"),
        (["--per-class", "5", "5"], "per_class"),
        (["--seeds", "0"], "seeds"),
        (["--epochs", "0"], "epochs"),
        (["--fine-tune-epochs", "-1"], "fine_tune_epochs"),
        (["--learning-rate", "0"], "learning_rate"),
        (["--margin", "-0.1"], "margin"),
        (["--seed", "-1"], "seed"),
    ],
    "initialization": [
        (["--depth", "0"], "depth"),
        (["--width", "-3"], "width"),
        (["--connections", "0"], "connections"),
        (["--width", "8", "--connections", "9"], "connections"),
        (["--epochs", "0"], "epochs"),
        (["--learning-rate", "nan"], "learning_rate"),
        (["--seeds", "0"], "seeds"),
        (["--target-accuracy", "1.5"], "target_accuracy"),
        (["--preserve-factor", "1"], "preserve_factor"),
        (["--vanish-factor", "inf"], "vanish_factor"),
        (["--seed", "-1"], "seed"),
    ],
    "input_normalization": [
        (["--epochs", "0"], "epochs"),
        (["--seeds", "0"], "seeds"),
        (["--steps", "0"], "steps"),
        (["--lr-fraction", "nan"], "lr_fraction"),
        (["--optimizers", "SGD", "SGD", "--learning-rates", "0.01", "0.01"], "optimizers"),
        (["--learning-rates", "0.01", "0"], "learning_rates"),
        (["--learning-rates", "0.01"], "learning_rates"),
        (["--seed", "-1"], "seed"),
    ],
    "local_conv": [
        (["--train-sizes", "300", "5000"], "train_sizes"),
        (["--train-sizes", "300", "300"], "train_sizes"),
        (["--steps", "0"], "steps"),
        (["--seeds", "0"], "seeds"),
        (["--seed", "-1"], "seed"),
    ],
    "norm_vs_batch_size": [
        (["--batch-sizes", "2", "0"], "batch_sizes"),
        (["--batch-sizes", "4", "4"], "batch_sizes"),
        (["--normalizations", "batch", "batch"], "normalizations"),
        (["--epochs", "0"], "epochs"),
        (["--base-lr", "0"], "base_lr"),
        (["--groups", "0"], "groups"),
        (["--seeds", "0"], "seeds"),
        (["--stable-band", "-0.01"], "stable_band"),
        (["--lrn-epochs", "0"], "lrn_epochs"),
        (["--chance-fraction", "0"], "chance_fraction"),
        (["--seed", "-1"], "seed"),
    ],
    "optimizers": [
        (["--optimizers", "adam", "adamw"], "optimizers"),
        (["--optimizers", "adam", "adam"], "optimizers"),
        (["--learning-rates", "0.1", "0"], "learning_rates"),
        (["--learning-rates", "0.1", "0.1"], "learning_rates"),
        (["--select-epochs", "0"], "select_epochs"),
        (["--epochs", "0"], "epochs"),
        (["--width", "0"], "width"),
        (["--target-accuracy", "2"], "target_accuracy"),
        (["--seed", "-1"], "seed"),
    ],
    "unsupervised_pretraining": [
        (["--labels-per-class", "5", "500"], "labels_per_class"),
        (["--labels-per-class", "5", "5"], "labels_per_class"),
        (["--depth", "0"], "depth"),
        (["--width", "-1"], "width"),
        (["--pretrain-epochs", "0"], "pretrain_epochs"),
        (["--steps", "0"], "steps"),
        (["--seeds", "0"], "seeds"),
        (["--seed", "-1"], "seed"),
    ],
    "vanishing_gradients": [
        (["--depth", "0"], "depth"),
        (["--width", "-3"], "width"),
        (["--epochs", "0"], "epochs"),
        (["--learning-rate", "nan"], "learning_rate"),
        (["--learning-rate", "-1"], "learning_rate"),
        (["--target-accuracy", "1.5"], "target_accuracy"),
        (["--constant", "inf"], "constant"),
        (["--seed", "-1"], "seed"),
    ],
}


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
        tmp_path: each case runs with its own `--output` under it (unless it gives one),
            which must stay absent.
    """
    outputs = [tmp_path / f"case{i}" for i in range(len(cases))]
    argvs = [argv if "--output" in argv else [*argv, "--output", str(out)]
             for (argv, _), out in zip(cases, outputs, strict=True)]
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


@pytest.mark.backend_independent
def test_every_recipe_has_a_table_of_refused_flags():
    recipes = [*load_recipe("build_index").recipe_names(), "finetune"]
    assert sorted(REFUSED) == sorted(recipes)


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_flags_are_refused_before_keras_is_imported(name, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    unwritable = (["--output", str(tmp_path / "file" / "run")], "output")
    assert_flags_refused(name, [*REFUSED[name], unwritable], tmp_path)

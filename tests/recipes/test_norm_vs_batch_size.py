import json
import math

import keras
import numpy as np
import pytest

from kfound import layers
from kfound.data import load_digits


def test_norm_vs_batch_size_smoke(recipe, build_index, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "norm_vs_batch_size.png"):
        assert (tmp_path / name).is_file()
    report = build_index.read_report(tmp_path, "norm_vs_batch_size")
    assert {(r["normalization"], r["batch_size"]) for r in report["rows"]} == {
        (n, b) for n in ("batch", "group", "weight", "lrn", "none") for b in (64,)}
    assert all(r["epoch_time_s"] > 0 for r in report["rows"])
    # The verdict is the one the report's own rows give.
    setup = report["setup"]
    assert recipe.verdict_for(json.loads(json.dumps(report["rows"])), [64], 0.02,
                              setup["validation_size"], report["lrn"]) == (
        report["status"], report["verdict"])
    batch = next(r for r in report["rows"] if r["normalization"] == "batch")
    assert 0.0 <= batch["train_mode_val_error"] <= 1.0
    lrn = report["lrn"]
    assert sorted(lrn["variants"]) == ["lrn", "lrn as constant scaling", "none"]
    assert [len(v["losses"]) for v in lrn["variants"].values()] == [1, 1, 1]
    assert f"verdict: {report['status']}: " in capsys.readouterr().out


def _row(norm, batch_size, error, sd=0.0):
    return {"normalization": norm, "batch_size": batch_size, "val_error": error, "val_sd": sd}


def test_verdict_reads_the_numbers(recipe):
    verdict_for = recipe.verdict_for
    rows = [_row("batch", 2, 0.30), _row("batch", 32, 0.05),
            _row("group", 2, 0.06), _row("group", 32, 0.05)]
    status, verdict = verdict_for(rows, [2, 32], 0.02, 450)
    assert status == "confirmed"
    assert "At batch 2 BatchNorm 30.00% vs GroupNorm 6.00%" in verdict
    assert "25.00% above its best (5.00%)" in verdict
    # Two digits of 450 (0.44 points) is within twice the binomial noise of a 0.44% error.
    rows = [_row("batch", 2, 0.0089), _row("batch", 32, 0.0044),
            _row("group", 2, 0.0133), _row("group", 32, 0.0067)]
    assert verdict_for(rows, [2, 32], 0.02, 450)[0] == "not confirmed"
    rows = [_row("batch", 2, 0.30), _row("batch", 32, 0.05),
            _row("group", 2, 0.20), _row("group", 32, 0.05)]
    assert verdict_for(rows, [2, 32], 0.02, 450)[0] == "holds only under conditions"


def test_lrn_with_the_books_constants_is_nearly_a_constant_scaling(recipe):
    _, (x_val, _) = load_digits(images=True, seed=0)
    model = recipe.build_model("lrn", 8, 0.05, seed=0)
    scaling = recipe.lrn_scaling(model, x_val[:64])
    assert len(scaling) == 3
    for block in scaling:
        assert block["p05"] <= block["median"] <= block["p95"]
        assert block["median"] == pytest.approx(2.0 ** -0.75, abs=2e-3)
    # The copy multiplies by k^-beta instead, from the same weights: nearly the same net.
    copy = recipe.as_constant_scaling(model)
    assert not any(isinstance(layer, layers.LRN) for layer in copy.layers)
    assert sum(isinstance(layer, keras.layers.Rescaling) for layer in copy.layers) == 3
    np.testing.assert_allclose(copy.predict(x_val[:64], verbose=0),
                               model.predict(x_val[:64], verbose=0), atol=1e-3)


def test_epochs_at_chance_counts_the_flat_start(recipe):
    chance = math.log(10)
    assert recipe.epochs_at_chance([chance, 0.99 * chance, 0.5, 0.1], 10, 0.95) == 2
    assert recipe.epochs_at_chance([chance, chance], 10, 0.95) == 2
    assert recipe.epochs_at_chance([0.3], 10, 0.95) == 0


def _lrn(lrn_chance, scaled_chance, none_chance, lrn_error, epochs=40):
    def variant(chance, error):
        return {"epochs_at_chance": chance, "val_error": error, "losses": []}

    return {"batch_size": 32, "epochs": epochs, "constant": 2.0 ** -0.75,
            "scaling": {"at_init": [{"median": 0.595}] * 3},
            "variants": {"lrn": variant(lrn_chance, lrn_error),
                         "lrn as constant scaling": variant(scaled_chance, 0.045),
                         "none": variant(none_chance, 0.016)}}


def test_the_lrn_verdict_reads_the_numbers(recipe):
    text = recipe.lrn_verdict(_lrn(8, 7, 1, 0.042))
    assert "by 0.595, 0.595, 0.595 (median" in text
    assert "stays at chance for 8 epochs with LRN, 7 with each LRN replaced" in text
    assert "so the slow start is the constant scaling" in text
    assert "4.20%, 4.50% and 1.60%: slower, not broken" in text
    text = recipe.lrn_verdict(_lrn(40, 3, 1, 0.9))
    assert "the constant alone does not explain it" in text
    assert "LRN has not learned within that budget" in text


def test_the_verdict_adds_batchnorms_training_mode_error(recipe):
    rows = [_row("batch", 2, 0.0089), _row("batch", 32, 0.0044),
            _row("group", 2, 0.0133), _row("group", 32, 0.0067)]
    rows[0]["train_mode_val_error"], rows[1]["train_mode_val_error"] = 0.25, 0.006
    status, verdict = recipe.verdict_for(rows, [2, 32], 0.02, 450, _lrn(8, 7, 1, 0.042))
    assert status == "not confirmed"
    assert ("normalized by batches of 2 as in training, BatchNorm's error is 25.00% "
            "(inference mode 0.89%; at batch 32: 0.60% vs 0.44%)") in verdict
    assert verdict.endswith("slower, not broken.")

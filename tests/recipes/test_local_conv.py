import json

import numpy as np
import pytest


def test_local_conv_smoke_writes_report_plot_and_table(recipe, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "local_conv.png"):
        assert (tmp_path / name).is_file(), name
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["recipe"], report["chapter"], report["plot"]) == (
        "local_conv", "§3.15", "local_conv.png")
    assert report["status"] in {"confirmed", "not confirmed", "holds only under conditions"}
    assert [(r["dataset"], r["layer"]) for r in report["rows"]] == [
        ("aligned", "conv"), ("aligned", "local"), ("shifted", "conv"), ("shifted", "local")]
    params = {r["layer"]: r["params"] for r in report["rows"]}
    assert params == {"conv": 12810, "local": 155370}
    out = capsys.readouterr().out
    assert "verdict:" in out and str(tmp_path) in out


def test_canvases_centre_or_shift_the_digit(recipe):
    digits = np.ones((50, 8, 8, 1), dtype="float32")
    aligned = recipe.on_canvas(digits, shifted=False, seed=0)
    assert aligned.shape == (50, 16, 16, 1)
    assert np.all(aligned[:, 4:12, 4:12] == 1) and aligned.sum() == 50 * 64
    shifted = recipe.on_canvas(digits, shifted=True, seed=0)
    assert np.all(shifted.sum(axis=(1, 2, 3)) == 64)
    assert len({tuple(np.argwhere(s[..., 0])[0]) for s in shifted}) > 10


def test_the_local_initializer_gives_he_variance_per_position(recipe):
    kernel = recipe.local_he_normal(196)((196, 9, 16))
    assert np.std(np.asarray(kernel)) == pytest.approx(np.sqrt(2 / 9), rel=0.1)


def _gaps(size, shifted, aligned, sd=0.01):
    return [{"train_size": size, "dataset": "shifted", "gap": shifted, "gap_sd": sd},
            {"train_size": size, "dataset": "aligned", "gap": aligned, "gap_sd": sd}]


def test_verdict_reads_the_gaps(recipe):
    assert recipe.compare(0.05, 0.01) == "conv better"
    assert recipe.compare(-0.05, 0.01) == "local better"
    assert recipe.compare(0.005, 0.01) == "tie"
    status, text, at_size = recipe.verdict_for(_gaps(300, 0.1, -0.05) + _gaps(1347, 0.1, -0.02))
    assert status == "confirmed" and at_size == {300: "both", 1347: "both"}
    assert "+10.0%" in text
    status, _, at_size = recipe.verdict_for(_gaps(300, 0.1, 0.05) + _gaps(1347, 0.1, -0.02))
    assert status == "holds only under conditions" and at_size == {300: "no", 1347: "both"}
    status, _, at_size = recipe.verdict_for(_gaps(300, 0.1, 0.0))
    assert status == "holds only under conditions" and at_size == {300: "partly"}
    status, _, _ = recipe.verdict_for(_gaps(300, -0.1, -0.05) + _gaps(1347, 0.1, 0.05))
    assert status == "not confirmed"

import json

import numpy as np
import pytest

STATUSES = {"confirmed", "not confirmed", "holds only under conditions"}


def test_activations_smoke_writes_the_report(recipe, tmp_path, capsys):
    report = recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "activations.png"):
        assert (tmp_path / name).is_file()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert {"recipe", "chapter", "claim", "status", "verdict", "plot", "rows"} <= set(saved)
    assert saved["recipe"] == "activations" and saved["plot"] == "activations.png"
    assert saved["status"] in STATUSES
    assert set(saved["statuses"].values()) <= STATUSES
    assert [(r["activation"], r["shock_learning_rate"]) for r in saved["rows"]] == [
        ("relu", 1.0), ("leaky_relu", 1.0)]
    relu = saved["rows"][0]
    # The monitor's dead units on its probe are the recipe's stuck units on more examples:
    # a unit dead on all validation examples is dead on the probe's subset.
    assert relu["monitor_dead"] >= relu["stuck_after_recovery"]
    for row in saved["sparsity"]["trained"]:
        assert 0.0 <= row["dead_fraction"] <= row["zero_fraction"] <= 1.0
    assert sorted(saved["timing"]) == ["relu", "sigmoid", "tanh"]
    assert all(t["median_epoch_seconds"] > 0 for t in saved["timing"].values())
    assert report["verdict"] == saved["verdict"]
    out = capsys.readouterr().out
    assert "verdict:" in out and str(tmp_path) in out


def test_stuck_units_are_nonpositive_on_every_example(recipe):
    import numpy as np

    values = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 2.0], [3.0, -1.0, -2.0], [0.0, 0.0, 1.0]])
    assert recipe.stuck_fraction(values) == pytest.approx(1 / 3)


def _sparse(live, zero, dead=0.0):
    return [{"layer": 0, "zero_fraction": zero, "dead_fraction": dead,
             "live_zero_fraction": live}]


def test_sparse_verdict(recipe):
    assert recipe.sparse_verdict(_sparse(0.6, 0.7), 0.5)[0] == "confirmed"
    assert recipe.sparse_verdict(_sparse(0.4, 0.6, 0.3), 0.5)[0] == "holds only under conditions"
    assert recipe.sparse_verdict(_sparse(0.3, 0.35), 0.5)[0] == "not confirmed"


def _shock(activation, rate, stuck, sd=0.01, accuracy=0.9):
    return {"activation": activation, "shock_learning_rate": rate,
            "stuck_after_recovery": stuck, "stuck_sd": sd, "val_accuracy": accuracy}


def test_dying_verdict(recipe):
    rows = [_shock("relu", 0.5, 0.4), _shock("leaky_relu", 0.5, 0.1),
            _shock("relu", 1.0, 0.6), _shock("leaky_relu", 1.0, 0.2)]
    status, text = recipe.dying_verdict(rows, 0.1)
    assert status == "confirmed" and "40% dead" in text
    rows[3] = _shock("leaky_relu", 1.0, 0.595)  # within the spread: Leaky did not avoid it
    assert recipe.dying_verdict(rows, 0.1)[0] == "holds only under conditions"
    rows[0] = _shock("relu", 0.5, 0.05)  # ReLU did not die
    assert recipe.dying_verdict(rows, 0.1)[0] == "not confirmed"


def _timing(relu, sigmoid, tanh):
    return {a: {"median_epoch_seconds": float(np.median(t)), "epoch_seconds": t}
            for a, t in (("relu", relu), ("sigmoid", sigmoid), ("tanh", tanh))}


def test_speed_verdict_pairs_rounds_and_ignores_differences_inside_the_noise(recipe):
    relu = [1.0, 2.0, 1.0, 3.0]  # the machine's load changes from round to round
    slow, same = [1.2 * t for t in relu], [1.01 * t for t in relu]
    assert recipe.speed_verdict(_timing(relu, slow, [1.3 * t for t in relu]), 0.05)[0] == (
        "confirmed")
    assert recipe.speed_verdict(_timing(relu, slow, same), 0.05)[0] == (
        "holds only under conditions")
    assert recipe.speed_verdict(_timing(relu, same, [0.9 * t for t in relu]), 0.05)[0] == (
        "not confirmed")
    # 2.0x and 0.6x alternately (1.10x on average): inside the noise.
    status, text = recipe.speed_verdict(_timing(relu, slow, [2.0, 1.2, 2.0, 1.8]), 0.05)
    assert status == "holds only under conditions" and "tanh 1.10x (within noise)" in text
    assert recipe.overall_status(["confirmed"] * 3) == "confirmed"
    assert recipe.overall_status(["not confirmed"] * 3) == "not confirmed"
    assert recipe.overall_status(["confirmed", "not confirmed", "confirmed"]) == (
        "holds only under conditions")

import json

import pytest

STATUSES = {"confirmed", "not confirmed", "holds only under conditions"}


def test_optimizers_smoke_writes_the_report(recipe, tmp_path, capsys):
    report = recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "optimizers.png"):
        assert (tmp_path / name).is_file()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert {"recipe", "chapter", "claim", "status", "verdict", "plot", "rows"} <= set(saved)
    assert saved["recipe"] == "optimizers" and saved["status"] in STATUSES
    assert saved["not_in_keras"] == ["AdagradDAOptimizer", "ProximalGradientDescentOptimizer",
                                     "ProximalAdagradOptimizer"]
    (row,) = saved["rows"]
    assert row["optimizer"] == "adam"
    losses = {float(k): v for k, v in row["selection_losses"].items()}
    assert sorted(losses) == [0.01, 0.1]
    assert row["learning_rate"] == min(losses, key=lambda r: losses[r])  # the grid's best
    assert row["at_grid_edge"]  # a two-rate grid has nothing but edges
    assert len(saved["curves"]["adam"]["val_accuracy"]) == 2
    assert report["verdict"] == saved["verdict"]
    out = capsys.readouterr().out
    assert "No Keras 3 equivalent" in out and str(tmp_path) in out


def test_every_optimizer_builds(recipe):
    for name, make in recipe.OPTIMIZERS.items():
        assert float(make(0.01).learning_rate) == pytest.approx(0.01), name
    nesterov = recipe.OPTIMIZERS["nesterov"](0.1)
    assert nesterov.nesterov and nesterov.momentum == 0.9


def test_diverged_selection_runs_lose(recipe):
    assert recipe._finite(float("nan")) is None
    losses = {0.1: 0.5, 1.0: None, 0.01: 0.7}
    assert min(losses, key=lambda r: recipe._loss_key(losses[r])) == 0.1


def _row(name, epochs, rate=0.01):
    return {"optimizer": name, "epochs_to_target": epochs, "learning_rate": rate}


def test_verdict_reads_the_rows(recipe):
    status, text = recipe.verdict_for([_row("adam", 3), _row("sgd", 9)], 0.95)
    assert status == "confirmed" and text.index("adam 3") < text.index("sgd 9")
    status, text = recipe.verdict_for([_row("adam", 3), _row("ftrl", None)], 0.95)
    assert status == "holds only under conditions" and "never: ftrl" in text
    assert recipe.verdict_for([_row("ftrl", None)], 0.95)[0] == "not confirmed"
    edge = {**_row("adadelta", 8, 1.0), "at_grid_edge": True}
    assert "grid's edge (widen it) for: adadelta" in recipe.verdict_for([edge], 0.95)[1]

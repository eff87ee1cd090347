import json

STATUSES = {"confirmed", "not confirmed", "holds only under conditions"}


def test_initialization_smoke_writes_the_report(recipe, tmp_path, capsys):
    # 20 connections fit the default width (64) but not the smoke run's 16: it uses 16.
    report = recipe.main(["--smoke", "--connections", "20", "--output", str(tmp_path)])
    assert json.loads((tmp_path / "args.json").read_text())["connections"] == 16
    for name in ("args.json", "report.json", "initialization.png"):
        assert (tmp_path / name).is_file()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert {"recipe", "chapter", "claim", "status", "verdict", "plot", "rows"} <= set(saved)
    assert saved["recipe"] == "initialization" and saved["status"] in STATUSES
    assert set(saved["statuses"].values()) <= STATUSES
    assert saved["bias_effect"] in {"helps", "hurts", "no measurable effect"}
    ratio = {(r["activation"], r["init"]): r["last_over_first"] for r in saved["std_rows"]}
    assert len(ratio) == 8 and all(len(r["stds"]) == 4 for r in saved["std_rows"])
    # Three layers of 0.01 * randn shrink the ReLU signal by about (0.01 * sqrt(16 / 2))^3.
    assert ratio["relu", "randn_0.01"] < 1e-3
    assert 0.25 < ratio["relu", "he"] < 4.0  # 16 units per layer: a noisy estimate of 1
    assert [(r["init"], r["bias"]) for r in saved["rows"]] == [
        ("randn_0.01", 0.0), ("randn_over_sqrt_n", 0.0), ("he", 0.0), ("sparse", 0.0),
        ("he", 0.01)]
    assert report["verdict"] == saved["verdict"]
    out = capsys.readouterr().out
    assert "verdict:" in out and str(tmp_path) in out


def _std(activation, init, ratio):
    return {"activation": activation, "init": init, "last_over_first": ratio}


def test_scale_verdicts(recipe):
    rows = [_std("relu", "randn_0.01", 1e-9), _std("relu", "randn_over_sqrt_n", 0.9),
            _std("tanh", "randn_over_sqrt_n", 0.8), _std("relu", "he", 1.1),
            _std("relu", "sparse", 1.0)]
    statuses, _ = recipe.scale_verdicts(rows, 2.0, 100.0)
    assert set(statuses.values()) == {"confirmed"}
    assert recipe.overall_status(statuses) == "confirmed"
    rows[1] = _std("relu", "randn_over_sqrt_n", 0.05)  # ReLU halves the variance per layer
    statuses, text = recipe.scale_verdicts(rows, 2.0, 100.0)
    assert statuses["sqrt_n_preserves"] == "holds only under conditions"
    assert recipe.overall_status(statuses) == "holds only under conditions"
    assert "0.05" in text
    rows = [_std("relu", "randn_0.01", 0.5), _std("relu", "randn_over_sqrt_n", 0.05),
            _std("tanh", "randn_over_sqrt_n", 0.1), _std("relu", "he", 1.1),
            _std("relu", "sparse", 5.0)]
    statuses, _ = recipe.scale_verdicts(rows, 2.0, 100.0)
    assert recipe.overall_status(statuses) == "not confirmed"


def _trained(bias, accuracy, sd=0.01):
    return {"init": "he", "bias": bias, "final_val_accuracy": accuracy, "final_sd": sd}


def test_bias_effect(recipe):
    assert recipe.bias_effect([_trained(0.0, 0.90), _trained(0.01, 0.95)])[0] == "helps"
    assert recipe.bias_effect([_trained(0.0, 0.95), _trained(0.01, 0.90)])[0] == "hurts"
    effect, text = recipe.bias_effect([_trained(0.0, 0.95), _trained(0.01, 0.955)])
    assert effect == "no measurable effect" and "95.50%" in text

import argparse
import json


def test_input_normalization_smoke(recipe, build_index, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "input_normalization.png"):
        assert (tmp_path / name).is_file()
    report = build_index.read_report(tmp_path, "input_normalization")
    assert {r["features"] for r in report["rows"]} == {"raw", "min-max", "standardized", "log"}
    paths = report["path"]
    assert len(paths["raw"]["weights"]) == 6  # the start and five steps
    # Alcohol and magnesium differ 17-fold in scale: the raw problem is badly conditioned.
    assert paths["raw"]["condition_number"] > 100
    assert paths["standardized"]["condition_number"] < 3
    # The verdict is the one the report's own numbers give.
    args = argparse.Namespace(**json.loads((tmp_path / "args.json").read_text()))
    assert recipe.verdict_for(report["rows"], paths, args) == (
        report["status"], report["verdict"])
    assert f"verdict: {report['status']}: " in capsys.readouterr().out


def _rows(losses):
    return [{"optimizer": optimizer, "features": features, "final_loss": loss}
            for optimizer, by_features in losses.items()
            for features, loss in zip(("raw", "min-max", "standardized", "log"), by_features,
                                      strict=True)]


def test_verdict_reads_the_numbers(recipe):
    args = argparse.Namespace(optimizers=["sgd", "adam"], steps=60)
    paths = {"raw": {"condition_number": 356.0, "steps_to_1pct": None},
             "standardized": {"condition_number": 1.56, "steps_to_1pct": 10}}
    rows = _rows({"sgd": (1.0, 0.3, 0.05, 0.3), "adam": (0.2, 0.06, 0.01, 0.3)})
    status, verdict = recipe.verdict_for(rows, paths, args)
    assert status == "confirmed"
    assert "sgd: final loss raw 1.000 vs min-max 0.300 vs standardized 0.050" in verdict
    assert "condition number 356 raw vs 1.56 standardized" in verdict
    assert "steps to 1% excess loss more than 60 vs 10" in verdict
    rows = _rows({"sgd": (1.0, 0.3, 0.05, 0.3), "adam": (0.01, 0.06, 0.2, 0.3)})
    assert recipe.verdict_for(rows, paths, args)[0] == "holds only under conditions"
    rows = _rows({"sgd": (0.01, 0.3, 0.05, 0.3), "adam": (0.01, 0.06, 0.2, 0.3)})
    assert recipe.verdict_for(rows, paths, args)[0] == "not confirmed"
    # A run that diverged has no final loss and counts as worse than any.
    rows = _rows({"sgd": (1.0, 0.3, 0.05, 0.3), "adam": (0.2, 0.06, 0.01, 0.3)})
    del rows[0]["final_loss"]
    status, verdict = recipe.verdict_for(rows, paths, args)
    assert status == "confirmed" and "raw diverged" in verdict

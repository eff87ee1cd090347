import json


def test_dropout_rate_smoke(recipe, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "dropout_rate.png"):
        assert (tmp_path / name).is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(r["rate"], r["max_norm"]) for r in report["rows"]] == [
        (0.0, None), (0.5, None), (0.0, 3.0), (0.5, 3.0)]
    assert all(0.0 <= r["val_error"] <= 1.0 for r in report["rows"])
    statuses = {"confirmed", "not confirmed", "holds only under conditions"}
    assert report["half_is_best"] in statuses
    assert report["max_norm_helps"] in statuses
    assert "verdict:" in capsys.readouterr().out


def _row(rate, norm, val, sd=0.01):
    return {"rate": rate, "max_norm": norm, "train_error": 0.0, "val_error": val, "val_sd": sd}


def test_verdicts_read_the_numbers(recipe):
    verdict_for = recipe.verdict_for
    rows = [_row(0.0, None, 0.10), _row(0.3, None, 0.08), _row(0.5, None, 0.07),
            _row(0.5, 3.0, 0.03)]
    _, half, norm = verdict_for(rows)
    assert (half, norm) == ("confirmed", "confirmed")
    rows = [_row(0.0, None, 0.10), _row(0.3, None, 0.065), _row(0.5, None, 0.07),
            _row(0.3, 3.0, 0.064)]
    _, half, norm = verdict_for(rows)
    assert (half, norm) == ("holds only under conditions", "holds only under conditions")
    rows = [_row(0.0, None, 0.10), _row(0.2, None, 0.04), _row(0.5, None, 0.09),
            _row(0.5, 3.0, 0.09)]
    _, half, norm = verdict_for(rows)
    assert (half, norm) == ("not confirmed", "not confirmed")

import json


def test_dropout_rate_smoke(recipe, build_index, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "dropout_rate.png"):
        assert (tmp_path / name).is_file()
    report = build_index.read_report(tmp_path, "dropout_rate")
    assert [(r["rate"], r["max_norm"]) for r in report["rows"]] == [
        (0.0, None), (0.5, None), (0.0, 3.0), (0.5, 3.0)]
    assert all(0.0 <= r["val_error"] <= 1.0 for r in report["rows"])
    # The verdicts are the ones the report's own rows give.
    verdict, half, norm = recipe.verdict_for(json.loads(json.dumps(report["rows"])))
    assert (verdict, half, norm) == (
        report["verdict"], report["half_is_best"], report["max_norm_helps"])
    assert report["status"] == recipe.overall_status(half, norm)
    assert f"verdict: {report['status']}: " in capsys.readouterr().out


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
    first, half, norm = verdict_for(rows)
    assert (half, norm) == ("not confirmed", "not confirmed")
    assert "0.5 gives 9.00% +- 1.00%, no dropout 10.00%;" in first
    first, _, _ = verdict_for(rows[1:])  # --rates without 0: no "no dropout" figure
    assert "0.5 gives 9.00% +- 1.00%;" in first and "no dropout" not in first


def test_one_status_for_the_two_parts(recipe):
    status = recipe.overall_status
    assert status("confirmed", "confirmed") == "confirmed"
    assert status("confirmed", "not run") == "confirmed"
    assert status("not confirmed", "not confirmed") == "not confirmed"
    assert status("confirmed", "not confirmed") == "holds only under conditions"
    assert status("not confirmed", "holds only under conditions") == (
        "holds only under conditions")

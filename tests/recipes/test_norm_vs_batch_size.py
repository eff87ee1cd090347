import json


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
                              setup["validation_size"]) == (report["status"], report["verdict"])
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

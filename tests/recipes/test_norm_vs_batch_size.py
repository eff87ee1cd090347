import json


def test_norm_vs_batch_size_smoke(recipe, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "norm_vs_batch_size.png"):
        assert (tmp_path / name).is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    assert {(r["normalization"], r["batch_size"]) for r in report["rows"]} == {
        (n, b) for n in ("batch", "group", "weight", "lrn", "none") for b in (64,)}
    assert all(r["epoch_time_s"] > 0 for r in report["rows"])
    assert report["verdict"].split(":")[0] in {
        "confirmed", "not confirmed", "holds only under conditions"}
    assert "verdict:" in capsys.readouterr().out


def _row(norm, batch_size, error, sd=0.0):
    return {"normalization": norm, "batch_size": batch_size, "val_error": error, "val_sd": sd}


def test_verdict_reads_the_numbers(recipe):
    verdict_for = recipe.verdict_for
    rows = [_row("batch", 2, 0.30), _row("batch", 32, 0.05),
            _row("group", 2, 0.06), _row("group", 32, 0.05)]
    assert verdict_for(rows, [2, 32], 0.02, 450).startswith("confirmed")
    # Two digits of 450 (0.44 points) is within twice the binomial noise of a 0.44% error.
    rows = [_row("batch", 2, 0.0089), _row("batch", 32, 0.0044),
            _row("group", 2, 0.0133), _row("group", 32, 0.0067)]
    assert verdict_for(rows, [2, 32], 0.02, 450).startswith("not confirmed")
    rows = [_row("batch", 2, 0.30), _row("batch", 32, 0.05),
            _row("group", 2, 0.20), _row("group", 32, 0.05)]
    assert verdict_for(rows, [2, 32], 0.02, 450).startswith("holds only under conditions")

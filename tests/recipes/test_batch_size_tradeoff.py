import json


def test_batch_size_tradeoff_smoke(recipe, build_index, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "batch_size_tradeoff.png"):
        assert (tmp_path / name).is_file()
    report = build_index.read_report(tmp_path, "batch_size_tradeoff")
    assert {"setup", "rows", "runs", "optimal_batch_size"} <= set(report)
    assert [r["batch_size"] for r in report["rows"]] == [32, 1347]
    assert all(r["epoch_time_s"] > 0 for r in report["rows"])
    # The verdict is the one its own rows give, and the reason is in it.
    rows = json.loads(json.dumps(report["rows"]))
    assert recipe.verdict_for(rows) == (
        report["status"], report["verdict"], report["optimal_batch_size"])
    assert f"verdict: {report['status']}: {report['verdict']}" in capsys.readouterr().out


def _rows(points):
    return [{"batch_size": b, "epoch_time_s": t, "epochs_to_target": e,
             "time_to_target_s": None if e is None else t * e} for b, t, e in points]


def test_verdict_finds_an_interior_optimum(recipe):
    rows = _rows([(1, 4.0, 2), (8, 1.0, 3), (64, 0.2, 20), (512, 0.1, 80)])
    status, verdict, best = recipe.verdict_for(rows)
    assert (status, best) == ("confirmed", 8)
    assert "smallest (3.00 s) at batch size 8 (between 1 and 512)" in verdict
    assert "falls in 3 of 3 doublings" in verdict and "rise or stay in 3 of 3" in verdict


def test_an_optimum_at_either_edge_is_not_confirmed(recipe):
    rows = _rows([(1, 4.0, 2), (8, 1.0, 3), (64, 0.2, 20), (512, 0.1, 80)])
    rows[0]["time_to_target_s"] = 0.5
    status, verdict, best = recipe.verdict_for(rows)
    assert (status, best) == ("not confirmed", 1)
    assert "at the edge of 1 and 512" in verdict
    rows = _rows([(1, 4.0, 2), (8, 1.0, 3), (64, 0.2, 4), (512, 0.01, 5)])
    status, _, best = recipe.verdict_for(rows)
    assert (status, best) == ("not confirmed", 512)


def test_too_few_batch_sizes_reaching_the_target_is_not_confirmed(recipe):
    rows = _rows([(1, 4.0, 2), (8, 1.0, None), (64, 0.2, None), (512, 0.1, 80)])
    status, verdict, best = recipe.verdict_for(rows)
    assert (status, best) == ("not confirmed", None)
    assert "only 2 batch sizes reached the target" in verdict


def test_the_model_learns_after_the_warm_up(recipe):
    # The warm-up once zeroed Adam's learning rate with the moments, so nothing trained.
    from kfound.data import load_digits

    data = load_digits(images=False, seed=0)
    result = recipe.train_to_target(data, 64, 0.9, 30, seed=0)
    assert result["epochs_to_target"] is not None
    assert result["best_val_accuracy"] >= 0.9

import json


def test_batch_size_tradeoff_smoke(recipe, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "batch_size_tradeoff.png"):
        assert (tmp_path / name).is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"claim", "setup", "rows", "runs", "optimal_batch_size", "verdict"} <= set(report)
    assert [r["batch_size"] for r in report["rows"]] == [32, 1347]
    assert all(r["epoch_time_s"] > 0 for r in report["rows"])
    assert report["verdict"].split(":")[0] in {
        "confirmed", "not confirmed", "holds only under conditions"}
    assert "verdict:" in capsys.readouterr().out


def test_verdict_finds_an_interior_optimum(recipe):
    rows = [
        {"batch_size": b, "epoch_time_s": t, "epochs_to_target": e, "time_to_target_s": t * e}
        for b, t, e in [(1, 4.0, 2), (8, 1.0, 3), (64, 0.2, 20), (512, 0.1, 80)]
    ]
    verdict, best = recipe.verdict_for(rows)
    assert best == 8
    assert verdict.startswith("confirmed")
    rows[0]["time_to_target_s"] = 0.5
    verdict, best = recipe.verdict_for(rows)
    assert best == 1
    assert verdict.startswith("not confirmed")


def test_the_model_learns_after_the_warm_up(recipe):
    # The warm-up once zeroed Adam's learning rate with the moments, so nothing trained.
    from kfound.data import load_digits

    data = load_digits(images=False, seed=0)
    result = recipe.train_to_target(data, 64, 0.9, 30, seed=0)
    assert result["epochs_to_target"] is not None
    assert result["best_val_accuracy"] >= 0.9

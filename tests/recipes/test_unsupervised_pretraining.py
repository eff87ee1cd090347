import json

import numpy as np


def test_unsupervised_pretraining_smoke_writes_report_plot_and_table(recipe, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "unsupervised_pretraining.png"):
        assert (tmp_path / name).is_file(), name
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["recipe"], report["chapter"], report["plot"]) == (
        "unsupervised_pretraining", "§3.7.1", "unsupervised_pretraining.png")
    assert report["status"] in {"confirmed", "not confirmed", "holds only under conditions"}
    assert [(c["net"], c["per_class"]) for c in report["rows"]] == [
        ("sigmoid", 2), ("relu_he", 2)]
    assert all(len(losses) == 2 for losses in report["reconstruction_loss"]["sigmoid"])
    out = capsys.readouterr().out
    assert "verdict:" in out and str(tmp_path) in out


def test_pretrained_weights_reach_the_classifier(recipe):
    import argparse

    args = argparse.Namespace(depth=2, width=8, pretrain_epochs=1, smoke=True)
    x = np.random.default_rng(0).random((64, 64)).astype("float32")
    weights, losses = recipe.pretrain("sigmoid", x, args, seed=0)
    assert [w[0].shape for w in weights] == [(64, 8), (8, 8)] and len(losses) == 2
    model = recipe.build_classifier("sigmoid", args, 1, weights)
    np.testing.assert_array_equal(model.get_layer("hidden_1").get_weights()[0], weights[1][0])
    fresh = recipe.build_classifier("sigmoid", args, 1)
    assert np.max(np.abs(fresh.get_layer("hidden_0").get_weights()[0])) <= 1 / 8


def _cell(net, per_class, gain, sd=0.01):
    effect = "helps" if gain > sd else ("hurts" if gain < -sd else "no clear effect")
    return {"net": net, "per_class": per_class, "random_error": 0.3,
            "pretrained_error": 0.3 - gain, "effect": effect}


def test_verdict_reads_the_cells(recipe):
    both = [_cell("sigmoid", 5, 0.1), _cell("relu_he", 5, 0.05), _cell("relu_he", 100, 0.0)]
    assert recipe.verdict_for(both)[0] == "confirmed"
    sigmoid_only = [_cell("sigmoid", 5, 0.1), _cell("relu_he", 5, -0.02)]
    status, text = recipe.verdict_for(sigmoid_only)
    assert status == "holds only under conditions" and "helps in: sigmoid 5/class." in text
    assert recipe.verdict_for([_cell("sigmoid", 5, 0.0), _cell("relu_he", 5, -0.1)])[0] == (
        "not confirmed")

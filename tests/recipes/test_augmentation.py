import json

import numpy as np

from kfound import theory


def test_augmentation_smoke_writes_report_plot_and_table(recipe, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "augmentation.png"):
        assert (tmp_path / name).is_file(), name
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["recipe"] == "augmentation" and report["chapter"] == "§3.13"
    assert report["plot"] == "augmentation.png"
    statuses = {"confirmed", "not confirmed", "holds only under conditions"}
    assert {report["status"], report["augmentation_status"],
            report["label_shuffle_status"]} <= statuses
    assert [r["augmentation"] for r in report["rows"]] == ["none", "pca_lighting"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in report["rows"])
    out = capsys.readouterr().out
    assert "verdict:" in out and "label_shuffle" in out and str(tmp_path) in out


def test_label_shuffle_sees_every_class_equally_often(recipe):
    y = np.array([0] * 20 + [1] * 3 + [2] * 7)
    order = recipe.label_shuffle_order(y, np.random.default_rng(0))
    assert np.bincount(y[order]).tolist() == [20, 20, 20]
    assert set(order[y[order] == 1]) == {20, 21, 22}


def test_the_imbalanced_split_keeps_the_counts(recipe):
    y = np.repeat(np.arange(3), 10)
    train, test = recipe.split(y, [5, 2, 1], seed=0)
    assert np.bincount(y[train]).tolist() == [5, 2, 1]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(30))


def _row(name, gain, gain_sd=0.01, per_class=10):
    return {"per_class": per_class, "augmentation": name, "accuracy": 0.5 + gain, "sd": 0.01,
            "gain": gain, "gain_sd": gain_sd,
            "effect": "-" if name == "none" else theory.classify_gain(gain, gain_sd)}


def test_verdicts_read_the_numbers(recipe):
    helping = [_row("none", 0.0), _row("flip", -0.2), _row("shift", 0.05), _row("noise", 0.03)]
    assert recipe.augmentation_verdict(helping)[0] == "confirmed"
    mixed = [_row("none", 0.0), _row("shift", 0.05), _row("noise", 0.0)]
    status, text = recipe.augmentation_verdict(mixed)
    assert status == "holds only under conditions" and "1 of 2" in text and "shift" in text
    # Only the smallest training size counts for the claim.
    later = mixed + [_row("none", 0.0, per_class=40), _row("noise", 0.1, per_class=40)]
    assert recipe.augmentation_verdict(later)[0] == "holds only under conditions"
    neither = [_row("none", 0.0), _row("shift", -0.05), _row("flip", 0.1)]
    assert recipe.augmentation_verdict(neither)[0] == "not confirmed"
    assert recipe.label_shuffle_verdict(0.60, 0.70, 0.02)[0] == "confirmed"
    assert recipe.label_shuffle_verdict(0.60, 0.61, 0.02)[0] == "not confirmed"
    assert recipe.label_shuffle_verdict(0.60, 0.50, 0.02)[0] == "not confirmed"
    assert recipe.overall_status("confirmed", "confirmed") == "confirmed"
    assert recipe.overall_status("confirmed", "not confirmed") == "holds only under conditions"
    assert recipe.overall_status("not confirmed", "not confirmed") == "not confirmed"

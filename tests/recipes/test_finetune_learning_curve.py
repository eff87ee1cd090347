import json

import pytest


def test_finetune_learning_curve_smoke(recipe, build_index, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "finetune_learning_curve.png"):
        assert (tmp_path / name).is_file()
    report = build_index.read_report(tmp_path, "finetune_learning_curve")
    assert [(r["per_class"], r["state"]) for r in report["rows"]] == [
        (4, "head"), (4, "full"), (4, "scratch")]
    assert all(0.0 <= a <= 1.0 for r in report["rows"] for a in r["accuracies"])
    assert report["setup"]["test_examples"] > 400
    # The comparison and the verdict are the ones the report's own rows give.
    rows = json.loads(json.dumps(report["rows"]))
    comparison = recipe.compare(rows, [4], report["setup"]["seeds"], 0.01)
    assert comparison == report["full_vs_head"]
    assert recipe.verdict_for(rows, comparison, 0.01) == (report["status"], report["verdict"])
    assert f"verdict: {report['status']}: " in capsys.readouterr().out


def _rows(curves):
    """`curves`: {size: {state: [accuracy per seed]}}."""
    return [{"per_class": size, "state": state, "val_accuracy": sum(v) / len(v),
             "accuracies": v} for size, states in curves.items() for state, v in states.items()]


def _curve(full_at_50, full_at_100):
    return {
        5: {"head": [0.86, 0.89], "full": [0.83, 0.85], "scratch": [0.70, 0.66]},
        50: {"head": [0.90, 0.91], "full": full_at_50, "scratch": [0.85, 0.86]},
        100: {"head": [0.92, 0.92], "full": full_at_100, "scratch": [0.90, 0.90]},
    }


def test_full_overtaking_the_head_at_larger_sizes_holds_only_under_conditions(recipe):
    rows = _rows(_curve([0.93, 0.94], [0.95, 0.96]))
    comparison = recipe.compare(rows, [5, 50, 100], [0, 1], 0.01)
    assert [c["full_vs_head"] for c in comparison] == ["behind", "ahead", "ahead"]
    assert comparison[1]["full_minus_head"] == pytest.approx(0.03)
    status, verdict = recipe.verdict_for(rows, comparison, 0.01)
    assert status == "holds only under conditions"
    assert "overtakes the head from 50 images per class" in verdict
    assert "it trails at [5]" in verdict
    assert "0.875/0.840/0.680 at 5 images per class" in verdict
    assert "worth +0.195 at 5 and +0.020 at 100" in verdict


def test_a_gain_on_some_seeds_or_below_the_margin_is_a_tie(recipe):
    # Full wins on one seed of two at 50, and by less than the margin at 100.
    rows = _rows(_curve([0.95, 0.90], [0.925, 0.925]))
    comparison = recipe.compare(rows, [5, 50, 100], [0, 1], 0.01)
    assert [c["full_vs_head"] for c in comparison] == ["behind", "tie", "tie"]
    status, verdict = recipe.verdict_for(rows, comparison, 0.01)
    assert status == "not confirmed"
    assert "ahead of the head at no size" in verdict


def test_full_ahead_everywhere_is_confirmed_and_ahead_in_between_is_not_overtaking(recipe):
    curve = _curve([0.93, 0.94], [0.95, 0.96])
    curve[5]["full"] = [0.90, 0.92]
    rows = _rows(curve)
    comparison = recipe.compare(rows, [5, 50, 100], [0, 1], 0.01)
    assert recipe.verdict_for(rows, comparison, 0.01)[0] == "confirmed"
    curve[100]["full"] = [0.90, 0.91]
    rows = _rows(curve)
    comparison = recipe.compare(rows, [5, 50, 100], [0, 1], 0.01)
    status, verdict = recipe.verdict_for(rows, comparison, 0.01)
    assert status == "holds only under conditions"
    assert "ahead of the head only at [5, 50] images per class" in verdict


def test_the_per_class_limit_leaves_a_test_image_in_every_class(recipe):
    import numpy as np

    from kfound import data as kdata

    for seed in (0, 1337, 1338, 1339):
        (_, y_train), (_, y_test), _ = kdata.embedded_digits("target", train_per_class=1,
                                                             seed=seed)
        smallest = int(np.bincount(np.concatenate([y_train, y_test])).min())
        assert recipe.MAX_PER_CLASS == smallest - 1, seed

import json

import pytest

STATUSES = {"confirmed", "not confirmed", "holds only under conditions"}


def test_cross_entropy_vs_quadratic_reproduces_the_numbers(recipe, tmp_path, capsys):
    report = recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "cross_entropy_vs_quadratic.png"):
        assert (tmp_path / name).is_file()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["recipe"] == "cross_entropy_vs_quadratic"
    assert saved["plot"] == "cross_entropy_vs_quadratic.png"
    assert saved["status"] == "confirmed"
    # sigma(4) = 0.98201379; the quadratic gradient carries sigma'(4) = 0.01766271.
    grads = saved["initial_gradients_saturated"]
    assert grads["cross_entropy"]["w"] == pytest.approx(0.982013790, abs=1e-9)
    assert grads["quadratic"]["w"] == pytest.approx(0.017345021, abs=1e-9)
    rows = {(r["start"], r["cost"]): r for r in saved["rows"]}
    assert rows["saturated", "quadratic"]["initial_output"] == pytest.approx(0.98201379, abs=1e-7)
    assert rows["unsaturated", "quadratic"]["initial_output"] == pytest.approx(0.81757448, abs=1e-7)
    # 40 steps at learning rate 0.15: the saturated quadratic neuron has barely moved.
    assert rows["saturated", "quadratic"]["steps_to_target"] is None
    assert rows["saturated", "quadratic"]["final_output"] == pytest.approx(0.977446, abs=1e-5)
    assert rows["saturated", "cross_entropy"]["steps_to_target"] == 17
    assert rows["saturated", "cross_entropy"]["final_output"] == pytest.approx(0.134151, abs=1e-5)
    assert rows["unsaturated", "quadratic"]["steps_to_target"] == 36
    assert rows["unsaturated", "cross_entropy"]["steps_to_target"] == 8
    assert all(r["keras_vs_book_max_difference"] < 1e-6 for r in saved["rows"])
    assert all(r["max_abs_error"] < 1e-6 for r in saved["gradient_check"])
    softmax = saved["softmax_example"]
    assert softmax["softmax"] == pytest.approx([0.87887824, 0.11894324, 0.00217852], abs=1e-7)
    assert softmax["gradient_autodiff"] == pytest.approx(
        [-0.12112176, 0.11894324, 0.00217852], abs=1e-6)
    assert softmax["predicted_class"] == 0
    assert not softmax["book_figure_matches_logits"]
    assert report["verdict"] == saved["verdict"]
    out = capsys.readouterr().out
    assert "verdict: confirmed" in out and str(tmp_path) in out


def _row(rate, cost, steps):
    return {"start": "saturated", "cost": cost, "learning_rate": rate, "steps_to_target": steps}


def test_verdict_reads_the_measurements(recipe):
    matching = [{"max_abs_error": 1e-8}]
    rows = [_row(0.15, "quadratic", None), _row(0.15, "cross_entropy", 17),
            _row(0.5, "quadratic", 80), _row(0.5, "cross_entropy", 5)]
    status, verdict = recipe.verdict_for(rows, matching, 1e-5)
    assert status == "confirmed" and "never" in verdict and "17" in verdict
    rows[3]["steps_to_target"] = 90
    assert recipe.verdict_for(rows, matching, 1e-5)[0] == "holds only under conditions"
    rows[1]["steps_to_target"] = None
    assert recipe.verdict_for(rows, matching, 1e-5)[0] == "not confirmed"
    rows = [_row(0.15, "quadratic", None), _row(0.15, "cross_entropy", 17)]
    status, verdict = recipe.verdict_for(rows, [{"max_abs_error": 1e-3}], 1e-5)
    assert status == "not confirmed" and "do NOT match" in verdict
    assert status in STATUSES

import argparse
import json

import pytest

VARIANTS = ("sigmoid", "tanh", "relu_he", "relu_he_bn", "constant")
VERDICTS = (
    "sigmoid_diagnosed_vanishing", "relu_he_not_vanishing", "tanh_faster_than_sigmoid",
    "constant_diagnosed_symmetric",
)


def test_vanishing_gradients_smoke_writes_the_report_and_plots(recipe, build_index, tmp_path,
                                                              capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    expected = ["args.json", "report.json", "accuracy.png"]
    expected += [f"{kind}_{v}.png" for v in VARIANTS for kind in ("gradients", "activations")]
    for name in expected:
        assert (tmp_path / name).is_file(), name
    report = build_index.read_report(tmp_path, "vanishing_gradients")
    assert sorted(report["variants"]) == sorted(VARIANTS)
    for result in report["variants"].values():
        assert {"first_last_grad_ratio", "final_val_accuracy", "epochs_to_target",
                "diagnoses", "findings"} <= set(result)
        assert 0.0 <= result["final_val_accuracy"] <= 1.0
    assert sorted(report["verdicts"]) == sorted(VERDICTS)
    args = argparse.Namespace(**json.loads((tmp_path / "args.json").read_text()))
    assert recipe.verdict_for(report["variants"], args) == (report["status"], report["verdict"])
    out = capsys.readouterr().out
    assert "first/last grad" in out and "relu_he_bn" in out
    assert f"verdict: {report['status']}: " in out


def test_verdicts_read_the_measurements(recipe):
    verdicts = recipe.verdicts
    results = {
        "sigmoid": {"diagnoses": ["vanishing"], "epochs_to_target": None},
        "tanh": {"diagnoses": [], "epochs_to_target": 4},
        "relu_he": {"diagnoses": ["exploding"], "epochs_to_target": 9},
        "constant": {"diagnoses": ["symmetric"], "epochs_to_target": None},
    }
    assert all(verdicts(results).values())
    results["tanh"]["epochs_to_target"] = None  # neither reached the target: not faster
    results["relu_he"]["diagnoses"] = ["vanishing"]
    assert verdicts(results) == {
        "sigmoid_diagnosed_vanishing": True, "relu_he_not_vanishing": False,
        "tanh_faster_than_sigmoid": False, "constant_diagnosed_symmetric": True,
    }


@pytest.mark.slow
def test_vanishing_gradients_verdicts_hold_on_digits(recipe, tmp_path):
    report = recipe.main(["--output", str(tmp_path)])
    assert report["verdicts"] == dict.fromkeys(VERDICTS, True)


def test_the_status_counts_the_verdicts(recipe):
    args = argparse.Namespace(depth=8, epochs=40, target_accuracy=0.9)

    def result(diagnoses, epochs, ratio=1.0):
        return {"diagnoses": diagnoses, "epochs_to_target": epochs,
                "first_last_grad_ratio": ratio}

    results = {"sigmoid": result(["vanishing"], None, 2.1e-5), "tanh": result([], 4),
               "relu_he": result([], 9, 2.7), "relu_he_bn": result([], 19),
               "constant": result(["symmetric"], None)}
    status, verdict = recipe.verdict_for(results, args)
    assert status == "confirmed"
    assert "gradient ratio is 2.1e-05 (diagnosed: vanishing)" in verdict
    assert "tanh in epoch 4, sigmoid not in 40 epochs" in verdict
    results["constant"]["diagnoses"] = []
    assert recipe.verdict_for(results, args)[0] == "holds only under conditions"
    results["sigmoid"]["diagnoses"] = []
    results["relu_he"]["diagnoses"] = ["vanishing"]
    results["tanh"]["epochs_to_target"] = None
    assert recipe.verdict_for(results, args)[0] == "not confirmed"

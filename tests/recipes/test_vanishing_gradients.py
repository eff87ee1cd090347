import json

import pytest

VARIANTS = ("sigmoid", "tanh", "relu_he", "relu_he_bn", "constant")
VERDICTS = (
    "sigmoid_diagnosed_vanishing", "relu_he_not_vanishing", "tanh_faster_than_sigmoid",
    "constant_diagnosed_symmetric",
)



def test_vanishing_gradients_smoke_writes_the_report_and_plots(recipe, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    expected = ["args.json", "report.json", "accuracy.png"]
    expected += [f"{kind}_{v}.png" for v in VARIANTS for kind in ("gradients", "activations")]
    for name in expected:
        assert (tmp_path / name).is_file(), name
    report = json.loads((tmp_path / "report.json").read_text())
    assert sorted(report["variants"]) == sorted(VARIANTS)
    for result in report["variants"].values():
        assert {"first_last_grad_ratio", "final_val_accuracy", "epochs_to_target",
                "diagnoses", "findings"} <= set(result)
        assert 0.0 <= result["final_val_accuracy"] <= 1.0
    assert sorted(report["verdicts"]) == sorted(VERDICTS)
    out = capsys.readouterr().out
    assert "first/last grad" in out and "relu_he_bn" in out


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

import keras
import pytest


def test_backprop_by_hand_reproduces_the_books_numbers(recipe, build_index, tmp_path, capsys):
    report = recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "gradients.png"):
        assert (tmp_path / name).is_file()
    saved = build_index.read_report(tmp_path, "backprop_by_hand")
    assert saved["status"] == "confirmed"
    assert "E_total = 0.298371109" in saved["verdict"]
    assert saved["errors"]["E_total"] == pytest.approx(0.298371109, abs=5e-10)
    assert saved["gradients_by_hand"]["w5"] == pytest.approx(0.082167041, abs=5e-10)
    assert saved["weights_after_step_by_hand"]["w5"] == pytest.approx(0.35891648, abs=5e-9)
    assert saved["weights_after_step_by_hand"]["w1"] == pytest.approx(0.149780716, abs=5e-10)
    tolerance = recipe.TORCH_TOLERANCE if keras.backend.backend() == "torch" else 1e-9
    assert saved["max_gradient_difference"] < tolerance
    assert saved["max_step_difference"] < tolerance
    assert all(row["matches"] for row in saved["book_check"])
    assert report["error_after_step"] == pytest.approx(0.291027774, abs=5e-10)
    assert "verdict: confirmed" in capsys.readouterr().out

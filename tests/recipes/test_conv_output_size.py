import json

import pytest


def test_conv_output_size_matches_keras_and_the_books_examples(recipe, build_index, tmp_path,
                                                               capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "conv_output_size.png"):
        assert (tmp_path / name).is_file()
    report = build_index.read_report(tmp_path, "conv_output_size")
    assert report["configurations"] > 50
    assert report["matches"] == report["configurations"]
    assert report["non_integer_cases"] > 0
    assert report["status"] == "holds only under conditions"
    assert f"{report['non_integer_cases']} of them need that floor" in report["verdict"]
    examples = {row["example"]: row for row in report["book_examples"]}
    assert examples["5x5, 3x3, stride 1"]["keras"] == "3x3"
    assert examples["5x5, 3x3, stride 2"]["keras"] == "2x2"
    assert examples["7x7x3, P=1, stride 2 (literal)"]["keras"] == "4x4x2"
    assert examples["5x5x3, P=1, stride 2 (the figure)"]["keras"] == "3x3x2"
    assert examples["7x7x3 already padded, P=0, stride 2"]["keras"] == "3x3x2"
    assert {row["parameters"] for row in report["book_examples"][2:]} == {56}
    same = {(r["W1"], r["S"]): (r["before"], r["after"], r["W2"])
            for r in report["keras_same_padding"]}
    assert same[(6, 2)] == (0, 1, 3)
    assert same[(7, 2)] == (1, 1, 4)
    assert "verdict: holds only under conditions" in capsys.readouterr().out


def test_a_rerun_into_the_same_output_follows_the_rerun_rule(recipe, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    report = (tmp_path / "report.json").read_text()
    # The same arguments compute the same results again (the recipe is deterministic).
    recipe.main(["--smoke", "--output", str(tmp_path)])
    assert (tmp_path / "report.json").read_text() == report
    capsys.readouterr()
    # A result-changing argument that differs is refused before any work.
    with pytest.raises(ValueError, match=r"--seed 1337 -> 7; --smoke True -> False\. .*"
                                         r"pass --overwrite to start over"):
        recipe.main(["--seed", "7", "--output", str(tmp_path)])
    assert "grid configurations" not in capsys.readouterr().out
    assert json.loads((tmp_path / "args.json").read_text())["seed"] == 1337
    recipe.main(["--smoke", "--seed", "7", "--overwrite", "--output", str(tmp_path)])
    assert json.loads((tmp_path / "args.json").read_text())["seed"] == 7
    assert json.loads((tmp_path / "report.json").read_text())["recipe"] == "conv_output_size"

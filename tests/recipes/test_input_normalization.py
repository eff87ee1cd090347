import json


def test_input_normalization_smoke(recipe, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "input_normalization.png"):
        assert (tmp_path / name).is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    assert {r["features"] for r in report["rows"]} == {"raw", "min-max", "standardized", "log"}
    paths = report["path"]
    assert len(paths["raw"]["weights"]) == 6  # the start and five steps
    # Alcohol and magnesium differ 17-fold in scale: the raw problem is badly conditioned.
    assert paths["raw"]["condition_number"] > 100
    assert paths["standardized"]["condition_number"] < 3
    assert report["verdict"].split(":")[0] in {
        "confirmed", "not confirmed", "holds only under conditions"}
    assert "verdict:" in capsys.readouterr().out

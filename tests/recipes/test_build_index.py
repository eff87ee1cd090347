import json
import os
import pathlib
import subprocess
import sys

import pytest

# It reads and writes report files: no backend is involved.
pytestmark = pytest.mark.backend_independent

RECIPES = pathlib.Path(__file__).resolve().parents[2] / "recipes"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Read from the folder, not from the generator, so that a generator that skips a recipe fails.
INDEXED = sorted(p.stem for p in RECIPES.glob("*.py")
                 if p.stem not in ("build_index", "finetune") and not p.stem.startswith("_"))
# Recipes whose full run has not been committed yet (it did not fit on the shared 2-core
# machine the day the index was added). A name leaves this set when its report is
# committed; the test fails if a listed recipe has a report or an unlisted one has none.
AWAITING_FULL_RUN = set()


def _generated_part(recipe):
    text = (RECIPES / "README.md").read_text(encoding="utf-8")
    return text.split(recipe.BEGIN)[1].split(recipe.END)[0]


def test_the_generator_lists_every_recipe_but_itself_and_the_fine_tuning_tool(recipe):
    assert recipe.recipe_names() == INDEXED
    assert len(INDEXED) >= 8


def _row(recipe, name):
    rows = [line for line in _generated_part(recipe).splitlines()
            if line.startswith(f"| [`{name}.py`]({name}.py) |")]
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("name", INDEXED)
def test_every_recipe_has_a_committed_report_a_plot_and_a_row(recipe, name):
    folder = RECIPES / "results" / name
    if name in AWAITING_FULL_RUN:
        assert not (folder / "report.json").exists(), f"remove {name} from AWAITING_FULL_RUN"
        assert f"**{recipe.PENDING}**" in _row(recipe, name)
        return
    report = recipe.read_report(folder, name)
    assert (folder / report["plot"]).read_bytes().startswith(PNG_MAGIC)
    # The committed run was a full one, not a smoke test.
    assert json.loads((folder / "args.json").read_text())["smoke"] is False
    row = _row(recipe, name)
    assert f'<img src="results/{name}/{report["plot"]}"' in row
    assert f"**{report['status']}**: " in row


def test_the_readme_is_what_the_generator_writes_from_the_committed_reports(recipe):
    readme = (RECIPES / "README.md").read_text(encoding="utf-8")
    assert readme == recipe.generated_readme(), (
        "recipes/README.md is out of date: run `python recipes/build_index.py`")


def test_the_fine_tuning_tool_is_described_outside_the_table(recipe):
    readme = (RECIPES / "README.md").read_text(encoding="utf-8")
    assert "[`finetune.py`](finetune.py)" not in _generated_part(recipe)
    assert "[`finetune.py`](finetune.py)" in readme.split(recipe.END)[1]


def _report(name, **overrides):
    return {"recipe": name, "chapter": "§3.2.5", "claim": "a claim", "status": "confirmed",
            "verdict": "Measured 1.0 | 2.0.", "plot": f"{name}.png", **overrides}


def _write_run(folder, report, extra=()):
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "args.json").write_text(json.dumps({"smoke": False}))
    (folder / report["plot"]).write_bytes(PNG_MAGIC)
    for name in extra:
        (folder / name).write_text("not copied")


def test_collect_copies_the_report_its_args_and_its_plot(recipe, tmp_path):
    _write_run(tmp_path / "runs" / "a", _report("a"), extra=["model.keras"])
    _write_run(tmp_path / "runs" / "b", _report("b", chapter="§3.10", status="not confirmed"))
    (tmp_path / "results" / "a").mkdir(parents=True)
    (tmp_path / "results" / "a" / "old.png").write_bytes(PNG_MAGIC)
    recipe.collect(tmp_path / "runs", ["a", "b"], tmp_path / "results")
    assert sorted(p.name for p in (tmp_path / "results" / "a").iterdir()) == [
        "a.png", "args.json", "report.json"]
    reports = [recipe.read_report(tmp_path / "results" / n, n) for n in ("b", "a")]
    table = recipe.render_table(reports).splitlines()
    # Ordered by chapter, numerically (3.2 before 3.10), with the pipe escaped.
    assert table[2].startswith("| [`a.py`](a.py) | §3.2.5 | a claim | **confirmed**: "
                               "Measured 1.0 \\| 2.0. | ")
    assert table[3].startswith("| [`b.py`](b.py) | §3.10 |")
    pending = recipe.render_table(reports, pending=["c"]).splitlines()
    assert pending[4].startswith("| [`c.py`](c.py) | | | **no full run committed yet**: run "
                                 "`python recipes/c.py`")


def test_collect_checks_every_run_before_copying_any(recipe, tmp_path):
    _write_run(tmp_path / "runs" / "a", _report("a"))
    _write_run(tmp_path / "runs" / "b", _report("b", status="mostly"))
    with pytest.raises(ValueError, match=r"must be one of .*Received: status='mostly'"):
        recipe.collect(tmp_path / "runs", ["a", "b"], tmp_path / "results")
    with pytest.raises(ValueError, match=r"`c` has no report.*Received: path="):
        recipe.collect(tmp_path / "runs", ["a", "c"], tmp_path / "results")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("overrides, match", [
    ({"verdict": None}, r"lacks the standard keys \['verdict'\]"),
    ({"chapter": ""}, r"lacks the standard keys \['chapter'\]"),
    ({"recipe": "other"}, r"must name its recipe `a`. Received: recipe='other'"),
    ({"plot": "../a.png"}, r"a PNG's file name.*Received: plot='../a.png'"),
    ({"plot": "a.svg"}, r"a PNG's file name.*Received: plot='a.svg'"),
])
def test_a_report_without_the_standard_keys_is_a_clear_error(recipe, overrides, match):
    with pytest.raises(ValueError, match=match):
        recipe.check_report(_report("a", **overrides), "a")


def test_a_readme_without_the_markers_is_a_clear_error(recipe):
    with pytest.raises(ValueError, match="must hold the markers"):
        recipe.render_readme("# Recipes\n", "| table |")
    text = f"intro\n{recipe.BEGIN}\nold\n{recipe.END}\noutro\n"
    assert recipe.render_readme(text, "new") == f"intro\n{recipe.BEGIN}\nnew\n{recipe.END}\noutro\n"


def test_recipes_needs_collect_and_known_names(recipe):
    with pytest.raises(ValueError, match=r"with --collect.*Received: recipes=\['dropout_rate'\]"):
        recipe.main(["--recipes", "dropout_rate"])
    with pytest.raises(ValueError, match=r"Received: recipes=\['nope'\]"):
        recipe.main(["--collect", "saved_models", "--recipes", "nope"])


def test_check_exits_1_when_the_readme_is_stale(recipe, monkeypatch, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text((RECIPES / "README.md").read_text(encoding="utf-8") + "edited\n")
    monkeypatch.setattr(recipe, "README", readme)
    monkeypatch.setattr(recipe, "generated_readme", lambda names: "generated\n")
    assert recipe.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    readme.write_text("generated\n")
    assert recipe.main(["--check"]) == 0


@pytest.mark.parametrize("name", [*INDEXED, "finetune"])
def test_every_recipe_takes_overwrite_and_its_help_says_so(name, capsys):
    from tests.recipes.conftest import load_recipe

    with pytest.raises(SystemExit):
        load_recipe(name).main(["--help"])
    assert "--overwrite" in capsys.readouterr().out


def test_the_index_imports_neither_keras_nor_tensorflow():
    # "A few seconds": kfound's `__init__` would import Keras and, through it, TensorFlow.
    code = (
        "import runpy, sys\n"
        "sys.modules['tensorflow'] = sys.modules['keras'] = None  # importing them fails\n"
        f"sys.path.insert(0, {str(RECIPES)!r})  # as `python recipes/build_index.py` does\n"
        f"sys.argv = ['build_index.py', '--list']\n"
        "try:\n"
        f"    runpy.run_path({str(RECIPES / 'build_index.py')!r}, run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code, sorted(m for m in sys.modules if m.startswith('kfound')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONWARNINGS": "error"})
    assert result.stdout.splitlines() == [*INDEXED, "exit 0 []"], (
        result.stderr)

import argparse
import json

import numpy as np
import pytest


def test_depth_vs_width_smoke_writes_report_plot_and_table(recipe, tmp_path, capsys):
    recipe.main(["--smoke", "--output", str(tmp_path)])
    for name in ("args.json", "report.json", "depth_vs_width.png"):
        assert (tmp_path / name).is_file(), name
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["recipe"], report["chapter"], report["plot"]) == (
        "depth_vs_width", "§3.1.4, §3.2.6", "depth_vs_width.png")
    assert report["status"] in {"confirmed", "not confirmed", "holds only under conditions"}
    assert {(r["k"], r["network"]) for r in report["rows"]} == {
        (k, n) for k in (1, 2) for n in ("deep", "shallow_equal", "shallow_2", "shallow_4")}
    assert all(r["max_abs_error"] < 1e-5 for r in report["exact"])
    out = capsys.readouterr().out
    assert "verdict:" in out and str(tmp_path) in out


def test_sawtooth_has_2_to_the_k_pieces(recipe):
    x = (np.arange(2**5 + 1) / 2**5)
    np.testing.assert_allclose(recipe.sawtooth(x, 5), np.arange(33) % 2)
    assert recipe.sawtooth(0.3, 1) == pytest.approx(0.6)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_the_exact_networks_compute_the_sawtooth(recipe, k):
    x = np.linspace(0, 1, 257)
    for model, params in ((recipe.exact_deep(k), 6 * k + 1),
                          (recipe.exact_shallow(k), 3 * 2**k + 1)):
        assert model.count_params() == params
        predicted = model.predict(x[:, None], verbose=0)[:, 0]
        np.testing.assert_allclose(predicted, recipe.sawtooth(x, k), atol=1e-5)


def test_every_kink_starts_at_a_training_point(recipe):
    # With Keras's zero biases every first-layer kink sits at x = 0, the edge of the data, and
    # every net starts linear on [0, 1]: a critical point for the sawtooth.
    args = argparse.Namespace(deep_width=4, max_width=8, learning_rate=1e-3, smoke=True)
    x = np.random.default_rng(0).random(64).astype("float32")
    model, _ = recipe.build_branches(3, args, 0, x)
    for name in ("shallow_equal", "shallow_2", "shallow_8"):
        kernel, bias = model.get_layer(f"{name}_hidden").get_weights()
        kinks = -bias / kernel[0]
        assert np.abs(kinks[:, None] - x).min(axis=1).max() < 1e-5, name
    h = x[:, None]
    for i in range(3):
        kernel, bias = model.get_layer(f"deep_{i}").get_weights()
        z = h @ kernel + bias
        assert np.abs(z).min(axis=0).max() < 1e-5  # each unit's kink is at a training point
        h = np.maximum(z, 0)


def test_equal_parameter_counts(recipe):
    for k in (1, 4, 6):
        deep = recipe.deep_params(k, 4)
        assert abs(3 * recipe.equal_shallow_width(k, 4) + 1 - deep) <= 1
    assert recipe.deep_params(3, 4) == 8 + 2 * 20 + 5
    assert recipe.shallow_widths(16) == [2, 4, 8, 16]


def test_smallest_width_and_slope(recipe):
    assert recipe.smallest_width({2: 0.5, 4: 0.01, 8: 0.001}, 0.05, 8) == (4, True)
    assert recipe.smallest_width({2: 0.5, 4: 0.4}, 0.05, 4) == (8, False)
    assert recipe.growth_slope([1, 2, 3], [2, 4, 8]) == pytest.approx(1.0)


def _widths(widths, reached=None):
    reached = reached or [True] * len(widths)
    return [{"k": k, "min_width": w, "reached": r}
            for k, (w, r) in enumerate(zip(widths, reached, strict=True), 1)]


def _deep(deep, shallow, sd=0.01):
    return [{"k": 6, "deep": deep, "deep_sd": sd, "shallow_equal": shallow,
             "shallow_equal_sd": sd}]


def test_verdict_reads_the_numbers(recipe):
    verdict_for = recipe.verdict_for
    status, text, width, deep = verdict_for(_widths([2, 4, 8, 16]), _deep(0.01, 0.5), 0.5, 0.05)
    assert (status, width, deep) == ("confirmed", True, True) and "slope 1.00" in text
    status, _, width, deep = verdict_for(_widths([2, 4, 8, 16]), _deep(0.5, 0.5), 0.5, 0.05)
    assert (status, width, deep) == ("holds only under conditions", True, False)
    status, _, width, deep = verdict_for(_widths([4, 4, 4, 8]), _deep(0.6, 0.5), 0.5, 0.05)
    assert (status, width, deep) == ("not confirmed", False, False)


def test_a_sweep_or_a_deep_net_that_fits_nothing_proves_nothing(recipe):
    # Only k=1 reached the target: the censored widths must not fake a slope.
    rows = _widths([16, 512, 512, 512], reached=[True, False, False, False])
    status, text, width, deep = recipe.verdict_for(rows, _deep(1.001, 1.003, sd=0.0), 0.5, 0.05)
    assert (status, width, deep) == ("not confirmed", False, False)
    assert "over the 1 k reached" in text

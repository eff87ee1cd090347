import numpy as np

from kfound.callbacks.monitor import RowLayout


def test_row_layout_builds_rows_and_slices_them_back():
    layout = RowLayout(("a", "b"), scalars=("loss",))
    rows = [
        layout.row(3, 0, (0.5,), (np.array([1.0, 2.0]), np.array([3.0, 4.0]))),
        layout.row(7, 1, (0.25,), (np.array([5.0, 6.0]), np.array([7.0, 8.0]))),
    ]
    assert layout.scalar("loss") == 2
    assert layout.block("b", 2) == slice(5, 7)
    history = layout.history(rows, ["d1", "d2"])
    assert history["layers"] == ["d1", "d2"]
    np.testing.assert_array_equal(history["step"], [3, 7])
    np.testing.assert_array_equal(history["epoch"], [0, 1])
    np.testing.assert_array_equal(history["loss"], [0.5, 0.25])
    np.testing.assert_array_equal(history["a"], [[1, 2], [5, 6]])
    np.testing.assert_array_equal(history["b"], [[3, 4], [7, 8]])


def test_row_layout_of_no_rows_gives_empty_arrays():
    history = RowLayout(("a",)).history([], ["d1", "d2", "d3"])
    assert history["step"].shape == (0,) and history["a"].shape == (0, 3)

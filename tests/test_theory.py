import keras
import numpy as np
import pytest

from kfound import theory

NET = theory.BOOK_NETWORK


@pytest.mark.backend_independent
def test_forward_pass_and_error_match_the_book():
    v = theory.forward_2_2_2(NET["inputs"], NET["weights"], NET["b1"], NET["b2"])
    assert v["net_h1"] == pytest.approx(0.3775, abs=1e-12)
    assert v["out_h1"] == pytest.approx(0.593269992, abs=5e-10)
    assert v["out_h2"] == pytest.approx(0.596884378, abs=5e-10)
    assert v["net_o1"] == pytest.approx(1.105905967, abs=5e-10)
    assert v["out_o1"] == pytest.approx(0.75136507, abs=5e-9)
    assert v["out_o2"] == pytest.approx(0.772928465, abs=5e-10)
    per_output, total = theory.squared_error(NET["targets"], [v["out_o1"], v["out_o2"]])
    np.testing.assert_allclose(per_output, [0.274811083, 0.023560026], atol=5e-10)
    assert total == pytest.approx(0.298371109, abs=5e-10)


@pytest.mark.backend_independent
def test_gradients_match_finite_differences():
    grads = theory.backprop_2_2_2(NET["inputs"], NET["targets"], NET["weights"], 0.35, 0.60)

    def error(weights, b1=0.35, b2=0.60):
        v = theory.forward_2_2_2(NET["inputs"], weights, b1, b2)
        return theory.squared_error(NET["targets"], [v["out_o1"], v["out_o2"]])[1]

    h = 1e-6
    for k in range(8):
        up, down = list(NET["weights"]), list(NET["weights"])
        up[k] += h
        down[k] -= h
        numeric = (error(up) - error(down)) / (2 * h)
        assert grads[f"w{k + 1}"] == pytest.approx(numeric, abs=1e-9)
    numeric_b1 = (error(NET["weights"], b1=0.35 + h) - error(NET["weights"], b1=0.35 - h)) / (2 * h)
    assert grads["b1"] == pytest.approx(numeric_b1, abs=1e-9)


@pytest.mark.backend_independent
def test_one_step_gives_the_classic_weights():
    grads = theory.backprop_2_2_2(NET["inputs"], NET["targets"], NET["weights"], 0.35, 0.60)
    assert grads["w5"] == pytest.approx(0.082167041, abs=5e-10)
    weights = {f"w{k}": w for k, w in enumerate(NET["weights"], start=1)}
    stepped = theory.gradient_step(weights, grads, 0.5)
    expected = [0.149780716, 0.19956143, 0.24975114, 0.29950229,
                0.35891648, 0.408666186, 0.511301270, 0.561370121]
    np.testing.assert_allclose(list(stepped.values()), expected, atol=5e-9)


@pytest.mark.backend_independent
def test_float64_precision_is_restored_on_every_exit():
    floatx = keras.config.floatx()
    with pytest.raises(RuntimeError, match="inside"):
        with theory.float64_precision():
            assert keras.config.floatx() == "float64"
            assert keras.ops.convert_to_numpy(keras.ops.ones(2) / 3).dtype == np.float64
            raise RuntimeError("inside")
    assert keras.config.floatx() == floatx
    assert keras.ops.convert_to_numpy(keras.ops.ones(2) / 3).dtype == np.float32


def test_dense_kernel_layout_round_trips():
    hidden, output = theory.dense_kernels_2_2_2(NET["weights"])
    assert hidden[1, 0] == 0.20  # w2: input i2 -> unit h1
    restored = theory.weights_from_dense_kernels(hidden, output)
    assert list(restored.values()) == list(NET["weights"])


def test_backend_gradients_match_the_chain_rule():
    x = np.array([NET["inputs"]])
    y = np.array([NET["targets"]])
    with theory.float64_precision():
        model = theory.book_network_model()
        loss, (hk, hb, ok, ob) = theory.backend_gradients(
            model, theory.half_sum_squared_error, x, y
        )
    # float64 throughout except under torch, where Keras's ops.matmul computes a float64
    # Dense in float32.
    tol = 1e-6 if keras.backend.backend() == "torch" else 1e-12
    assert loss == pytest.approx(0.298371109, abs=max(tol, 5e-10))
    grads = theory.backprop_2_2_2(NET["inputs"], NET["targets"], NET["weights"], 0.35, 0.60)
    autodiff = theory.weights_from_dense_kernels(hk, ok)
    for name, value in autodiff.items():
        assert value == pytest.approx(grads[name], abs=tol)
    assert float(hb.sum()) == pytest.approx(grads["b1"], abs=tol)
    assert float(ob.sum()) == pytest.approx(grads["b2"], abs=tol)


@pytest.mark.parametrize(
    "w1, f, s, p, expected",
    [(5, 3, 1, 0, 3), (5, 3, 2, 0, 2), (5, 3, 2, 1, 3), (7, 3, 2, 1, 4), (7, 3, 2, 0, 3),
     (8, 3, 3, 0, 2), (227, 11, 4, 0, 55), (1, 1, 1, 0, 1)],
)
@pytest.mark.backend_independent
def test_conv_output_size(w1, f, s, p, expected):
    assert theory.conv_output_size(w1, f, stride=s, padding=p) == expected


@pytest.mark.parametrize(
    "w1, f, s, padding, pads, out",
    [(5, 3, 1, "same", (1, 1), 5), (5, 3, 2, "same", (1, 1), 3), (6, 3, 2, "same", (0, 1), 3),
     (4, 2, 2, "same", (0, 0), 2), (5, 4, 1, "same", (1, 2), 5), (7, 3, 2, "valid", (0, 0), 3),
     (1, 3, 1, "same", (1, 1), 1)],
)
@pytest.mark.backend_independent
def test_keras_padding_in_the_formula_terms(w1, f, s, padding, pads, out):
    assert theory.keras_padding(w1, f, s, padding) == pads
    assert theory.keras_output_size(w1, f, s, padding) == out


@pytest.mark.backend_independent
def test_conv_parameter_count_is_the_books_56():
    assert theory.conv_parameter_count(3, in_channels=3, filters=2) == 56
    assert theory.conv_parameter_count(3, 3, 2, use_bias=False) == 54


@pytest.mark.backend_independent
def test_epochs_and_time_to_target():
    assert theory.epochs_to_target([0.5, 0.96, 0.99], 0.95) == 2
    assert theory.epochs_to_target([0.5, 0.6], 0.95) is None
    assert theory.epochs_to_target([3.0, 0.4], 0.5, higher_is_better=False) == 2
    assert theory.time_to_target([1.0, 2.0, 4.0], 2) == 3.0
    assert theory.time_to_target([1.0], None) is None


@pytest.mark.backend_independent
def test_gradient_descent_limit_of_a_scaled_problem():
    x = np.array([[1.0, 0.0], [0.0, 10.0], [-1.0, 0.0], [0.0, -10.0]])
    limit, condition = theory.gradient_descent_limit(x)
    assert limit == pytest.approx(2.0 / 100.0)  # H = 2 / 4 * x.T @ x = diag(1, 100)
    assert condition == pytest.approx(100.0)
    assert theory.mean_and_spread([1.0, 3.0]) == (2.0, 1.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: theory.conv_output_size(0, 3), r"`input_size`.*Received: input_size=0"),
        (lambda: theory.conv_output_size(5, 3, stride=0), r"`stride`.*Received: stride=0"),
        (lambda: theory.conv_output_size(5, 3, padding=-1), r"`padding`.*Received: padding=-1"),
        (lambda: theory.conv_output_size(3, 5), r"`kernel_size` must fit.*Received: kernel_size=5"),
        (lambda: theory.conv_output_size(5.0, 3), r"`input_size`.*Received: input_size=5.0"),
        (lambda: theory.keras_padding(5, 3, 1, "full"), r"`padding`.*Received: padding='full'"),
        (lambda: theory.keras_output_size(2, 3, 1, "valid"), r"Received: kernel_size=3"),
        (lambda: theory.forward_2_2_2([1.0], NET["weights"], 0, 0), r"`inputs`.*Received: inputs="),
        (lambda: theory.gradient_step({}, {}, 0.0), r"Received: learning_rate=0.0"),
        (lambda: theory.time_to_target([1.0], 2), r"Received: epochs=2"),
        (lambda: theory.least_squares_hessian([1.0]), r"Received: x.shape=\(1,\)"),
        (lambda: theory.mean_and_spread([]), r"Received: values=\[\]"),
    ],
)
@pytest.mark.backend_independent
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.backend_independent
def test_backend_gradients_rejects_other_backends(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    with pytest.raises(ValueError, match=r"Received: backend='numpy'"):
        theory.backend_gradients(theory.book_network_model(), theory.half_sum_squared_error,
                                 np.zeros((1, 2)), np.zeros((1, 2)))


def test_classify_gain_against_the_seed_spread():
    assert theory.classify_gain(0.05, 0.01) == "helps"
    assert theory.classify_gain(-0.05, 0.01) == "hurts"
    assert theory.classify_gain(0.005, 0.01) == "no clear effect"
    # At exactly one spread, or with no gain and no spread (one seed), nothing is clear.
    assert theory.classify_gain(0.01, 0.01) == theory.classify_gain(-0.01, 0.01) == (
        "no clear effect")
    assert theory.classify_gain(0.0, 0.0) == "no clear effect"
    assert theory.classify_gain(1e-9, 0.0) == "helps"
    # The thresholds are arguments.
    assert theory.classify_gain(0.05, 0.01, spreads=5) == "no clear effect"
    assert theory.classify_gain(-0.05, 0.01, spreads=4) == "hurts"
    assert theory.classify_gain(0.05, 0.0, min_gain=0.1) == "no clear effect"
    assert theory.classify_gain(-0.2, 0.0, min_gain=0.1) == "hurts"


@pytest.mark.parametrize("gain", [-0.2, -0.01, -1e-9, 0.0, 1e-9, 0.01, 0.2])
@pytest.mark.parametrize("spread", [0.0, 0.01, 0.1])
def test_classify_gain_gives_the_recipes_earlier_rule(gain, spread):
    # The rule augmentation and unsupervised_pretraining each wrote before sharing this one.
    earlier = ("helps" if gain > spread and gain > 0 else
               "hurts" if gain < -spread and gain < 0 else "no clear effect")
    assert theory.classify_gain(gain, spread) == earlier

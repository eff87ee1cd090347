"""The built-in mlp and cnn hypermodels."""

import keras
import keras_tuner as kt
import numpy as np
import pytest

from kfound.initializers import SparseInitializer
from kfound.layers import LRN, GroupNorm, WeightNorm
from kfound.tuning import hypermodels, space

SPACE = space.parse_space({
    "model": "mlp", "dataset": "digits",
    "hyperparameters": {
        "layers": {"type": "int", "min": 1, "max": 3, "default": 3},
        "units": {"type": "choice", "values": [8, 16], "default": 16},
        "normalization": {"type": "choice", "values": ["none", "batch"], "default": "batch"},
        "dropout": {"type": "float", "min": 0.0, "max": 0.5, "default": 0.25},
        "initializer": {"type": "choice", "values": ["he_normal", "glorot_uniform"]},
        "optimizer": {"type": "choice", "values": ["sgd", "adam"]},
        "learning_rate": {"type": "float", "min": 1e-3, "max": 1e-1, "default": 0.05},
        "batch_size": {"type": "choice", "values": [50, 100], "default": 50},
        "epochs": {"type": "int", "min": 1, "max": 3, "default": 2},
        "use_bias": {"type": "bool", "default": False},
    },
})


def _hp(model_space):
    hp = kt.HyperParameters()
    model_space.declare(hp)
    return hp


def test_mlp_uses_the_trial_values():
    hypermodel = hypermodels.MLPHyperModel((8, 8, 1), 10, space=SPACE)
    model = hypermodel.build(_hp(SPACE))
    dense = [la for la in model.layers if isinstance(la, keras.layers.Dense)]
    assert [la.units for la in dense] == [16, 16, 16, 10]
    assert not dense[0].use_bias
    assert isinstance(dense[0].kernel_initializer, keras.initializers.HeNormal)
    assert sum(isinstance(la, keras.layers.BatchNormalization) for la in model.layers) == 3
    assert sum(isinstance(la, keras.layers.Dropout) for la in model.layers) == 3
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert np.isclose(float(model.optimizer.learning_rate), 0.05)
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"


def test_untuned_hyperparameters_keep_the_defaults():
    hypermodel = hypermodels.CNNHyperModel((8, 8, 1), 10)
    model = hypermodel.build(kt.HyperParameters())
    convs = [la for la in model.layers if isinstance(la, keras.layers.Conv2D)]
    assert len(convs) == hypermodels.ClassifierHyperModel.DEFAULTS["layers"]
    assert isinstance(model.optimizer, keras.optimizers.Adam)


def test_cnn_stops_pooling_at_one_pixel():
    cnn_space = space.parse_space({"model": "cnn", "dataset": "digits", "hyperparameters": {
        "layers": {"type": "int", "min": 1, "max": 5, "default": 5}}})
    model = hypermodels.CNNHyperModel((8, 8, 1), 10, space=cnn_space).build(_hp(cnn_space))
    assert sum(isinstance(la, keras.layers.MaxPooling2D) for la in model.layers) == 3
    assert model.output_shape == (None, 10)


def test_fit_tunes_batch_size_and_epochs():
    x = np.random.default_rng(0).random((200, 8, 8, 1)).astype("float32")
    y = np.arange(200) % 10
    hypermodel = hypermodels.MLPHyperModel((8, 8, 1), 10, space=SPACE)
    hp = _hp(SPACE)
    history = hypermodel.fit(hp, hypermodel.build(hp), x, y, verbose=0)
    assert len(history.history["loss"]) == 2
    # Hyperband passes the epochs of its round; they take precedence.
    history = hypermodel.fit(hp, hypermodel.build(hp), x, y, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    capped = hypermodels.MLPHyperModel((8, 8, 1), 10, space=SPACE, max_epochs=1)
    history = capped.fit(hp, capped.build(hp), x, y, verbose=0)
    assert len(history.history["loss"]) == 1


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("normalization, layer", [
    ("batch", keras.layers.BatchNormalization), ("group", GroupNorm), ("lrn", LRN),
    ("weight", WeightNorm)])
def test_normalizations_and_the_sparse_initializer_use_kfound(model, normalization, layer,
                                                              tmp_path):
    model_space = space.parse_space({"model": model, "dataset": "digits", "hyperparameters": {
        "normalization": {"type": "choice", "values": [normalization]},
        "initializer": {"type": "choice", "values": ["sparse"]},
        "units": {"type": "choice", "values": [12]},
    }})
    hypermodel = hypermodels.hypermodel_class(model)((8, 8, 1), 10, space=model_space)
    built = hypermodel.build(_hp(model_space))
    norms = [la for la in built.layers if isinstance(la, layer)]
    assert len(norms) == 2
    if normalization == "group":
        assert norms[0].groups == 12  # group_count(12, 32)
    # WeightNorm wraps the Dense or Conv2D layer; the kernel is the wrapped layer's.
    unwrapped = [la.layer if isinstance(la, WeightNorm) else la for la in built.layers]
    kernels = [la for la in unwrapped if isinstance(la, (keras.layers.Dense,
                                                         keras.layers.Conv2D))][:2]
    assert all(isinstance(k.kernel_initializer, SparseInitializer) for k in kernels)
    # The first layer of the cnn sees 3x3x1 inputs: the connections are capped at 9.
    nonzero = (keras.ops.convert_to_numpy(kernels[0].kernel) != 0).reshape(-1, 12).sum(0)
    assert set(nonzero.tolist()) == {9 if model == "cnn" else 15}
    # Trained one epoch (WeightNorm's data-dependent initialization included), saved and
    # reloaded through `import kfound` alone, it predicts what it predicted.
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    built.fit(x, np.arange(16) % 10, epochs=1, batch_size=8, verbose=0)
    built.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), built.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_bad_num_classes():
    with pytest.raises(ValueError, match=r"`num_classes` must be an integer >= 2. "
                                         r"Received: num_classes=1"):
        hypermodels.MLPHyperModel((64,), 1)

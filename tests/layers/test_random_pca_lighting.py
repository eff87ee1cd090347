import keras
import numpy as np
import pytest
from layer_test_utils import run_layer_test
from sklearn.datasets import load_sample_images

from kfound.layers import RandomPCALighting, fit_pca_lighting
from kfound.layers.random_pca_lighting import IMAGENET_EIGENVALUES, IMAGENET_EIGENVECTORS

BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def photos():
    """scikit-learn's two bundled photos (china.jpg, flower.jpg): (2, 427, 640, 3) uint8."""
    return np.stack(load_sample_images().images)


def _shifts(layer, images, **call_kwargs):
    """The per-image RGB shift the layer added, checking that it is constant per image."""
    output = keras.ops.convert_to_numpy(layer(images, **call_kwargs)).astype("float64")
    difference = (output - images.astype("float64")).reshape(images.shape[0], -1, 3)
    np.testing.assert_allclose(
        difference, np.broadcast_to(difference[:, :1, :], difference.shape), atol=1e-3
    )
    return difference[:, 0, :]


@pytest.mark.parametrize(
    "init_kwargs, input_shape, input_dtype",
    [
        ({"seed": 1}, (2, 6, 5, 3), "float32"),
        ({"stddev": 0.5, "value_range": (0, 1), "seed": 2}, (5, 4, 3), "float32"),
        ({}, (3, 4, 4, 3), "uint8"),
    ],
)
def test_run_layer_test_inference_is_identity(init_kwargs, input_shape, input_dtype, tmp_path):
    run_layer_test(
        RandomPCALighting,
        init_kwargs,
        input_shape,
        input_dtype=input_dtype,
        call_kwargs={"training": False},
        expected_num_trainable_weights=0,
        reference_fn=lambda layer, x: x.astype("float32"),
        rtol=0,
        atol=0,
        tmp_path=tmp_path,
    )


def test_shift_lies_in_the_span_of_the_components_and_has_the_right_scale():
    # A rank-2 basis: any shift outside span(v1, v2) would show along v3.
    rotation, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    eigenvalues = np.array([0.3, 0.05, 0.0])
    layer = RandomPCALighting(
        stddev=0.2, eigenvalues=eigenvalues, eigenvectors=rotation, value_range=(0, 1), seed=3
    )
    images = np.full((4000, 2, 2, 3), 0.5, "float32")
    shifts = _shifts(layer, images)
    coordinates = shifts @ rotation  # alpha_k * lambda_k along each eigenvector.
    np.testing.assert_allclose(coordinates[:, 2], 0.0, atol=1e-6)
    alphas = coordinates[:, :2] / eigenvalues[:2]
    # 4000 draws: the sample std is within ~3% of 0.2, the mean within ~0.01.
    np.testing.assert_allclose(alphas.std(axis=0), [0.2, 0.2], rtol=0.05)
    np.testing.assert_allclose(alphas.mean(axis=0), [0.0, 0.0], atol=0.015)
    assert abs(np.corrcoef(alphas.T)[0, 1]) < 0.05  # Independent draws per component.


def test_default_imagenet_shift_scales_with_value_range():
    images = np.zeros((2000, 1, 1, 3), "float32")
    vectors = np.array(IMAGENET_EIGENVECTORS)
    for value_range in [(0, 255), (0, 1), (-1, 1)]:
        shifts = _shifts(RandomPCALighting(value_range=value_range, seed=4), images)
        alphas = np.linalg.solve(vectors, shifts.T).T / np.array(IMAGENET_EIGENVALUES)
        alphas /= value_range[1] - value_range[0]
        np.testing.assert_allclose(alphas.std(axis=0), [0.1] * 3, rtol=0.08)
    # In [0, 255], the largest component moves a pixel by 0.1 * 0.2175 * 255 = 5.5 levels.
    shifts = _shifts(RandomPCALighting(seed=5), images)
    assert 4.5 < np.sqrt(np.mean(np.sum(shifts**2, axis=1))) < 6.5


def test_training_draws_fresh_shifts_and_int_seed_reproduces():
    images = np.zeros((3, 4, 4, 3), "float32")
    layer = RandomPCALighting(seed=7)
    first, second = _shifts(layer, images), _shifts(layer, images)
    assert not np.allclose(first, second)
    assert np.all(np.abs(first[0] - first[1]) > 0)  # One shift per image.
    np.testing.assert_allclose(_shifts(RandomPCALighting(seed=7), images), first, atol=1e-6)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(RandomPCALighting(stddev=0.0)(images)), images
    )


def test_model_predict_is_identity_and_fit_augments_under_jit():
    layer = RandomPCALighting(seed=8)
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(layer(inputs)))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).uniform(0, 255, (8, 4, 4, 3)).astype("float32")
    probe = keras.Model(inputs, layer.output)
    np.testing.assert_array_equal(probe.predict(images, verbose=0), images)

    state = keras.ops.convert_to_numpy(layer.generator.state)
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    history = model.fit(images, np.zeros((8, 1)), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    # Two compiled training steps each drew from the seed generator.
    assert not np.array_equal(keras.ops.convert_to_numpy(layer.generator.state), state)


@pytest.mark.parametrize("batched", [True, False])
def test_works_in_tf_data_pipeline(batched):
    # On every backend: under JAX and torch the layer computes with TensorFlow ops there.
    import tensorflow as tf

    images = np.random.default_rng(1).integers(0, 256, (6, 5, 5, 3)).astype("uint8")

    def run(layer, training=True):
        dataset = tf.data.Dataset.from_tensor_slices(images)
        if batched:
            dataset = dataset.batch(3)
        dataset = dataset.map(lambda x: layer(x, training=training))
        assert dataset.element_spec.dtype == tf.float32
        return np.concatenate([np.reshape(x, (-1, 5, 5, 3)) for x in dataset.as_numpy_iterator()])

    outputs = run(RandomPCALighting(seed=9))
    shifts = (outputs - images.astype("float32")).reshape(6, -1, 3)
    np.testing.assert_allclose(shifts, np.broadcast_to(shifts[:, :1, :], shifts.shape), atol=1e-4)
    assert np.all(np.abs(shifts[:, 0, :]) > 0)
    assert len({tuple(np.round(s[0], 4)) for s in shifts}) == 6
    # The shift lies in the span of the scaled components.
    basis = (np.array(IMAGENET_EIGENVECTORS) * np.array(IMAGENET_EIGENVALUES)).T * 255.0
    alpha = np.linalg.solve(basis.T, shifts[:, 0, :].T)
    assert np.all(np.abs(alpha) < 1.0)  # stddev 0.1: |alpha| < 10 standard deviations
    np.testing.assert_array_equal(run(RandomPCALighting(seed=9)), outputs)  # seeded
    np.testing.assert_array_equal(run(RandomPCALighting(seed=9), training=False), images)
    with pytest.raises(ValueError, match=r"channels-last RGB.*Received: input_shape"):
        tf.data.Dataset.from_tensors(np.zeros((2, 2, 4), "float32")).map(RandomPCALighting())


@pytest.mark.backend_independent
def test_fit_pca_lighting_matches_eigh_on_real_photos(photos):
    eigenvalues, eigenvectors = fit_pca_lighting(photos, batch_size=1, verbose=0)
    pixels = photos.reshape(-1, 3).astype("float64") / 255.0
    expected_values, expected_vectors = np.linalg.eigh(np.cov(pixels, rowvar=False))
    np.testing.assert_allclose(eigenvalues, expected_values[::-1], rtol=1e-10)
    assert np.all(np.diff(eigenvalues) < 0)
    # Same eigenvectors up to sign; ours are signed so the largest entry is positive.
    np.testing.assert_allclose(
        np.abs(eigenvectors.T @ expected_vectors[:, ::-1]), np.eye(3), atol=1e-9
    )
    assert np.all(eigenvectors[np.argmax(np.abs(eigenvectors), axis=0), range(3)] > 0)
    # Natural photos: the first component is the brightness direction, all channels alike.
    assert np.all(eigenvectors[:, 0] > 0.4)


def test_fit_pca_lighting_accepts_datasets_and_value_ranges(photos):
    import tensorflow as tf

    expected_values, expected_vectors = fit_pca_lighting(photos, verbose=0)
    labels = np.arange(len(photos))
    sources = {
        "pairs": tf.data.Dataset.from_tensor_slices((photos, labels)),
        "batched": tf.data.Dataset.from_tensor_slices(photos).batch(2),
        "dicts": tf.data.Dataset.from_tensor_slices({"image": photos, "label": labels}),
        "list of images": list(photos),
        "scaled to [0, 1]": photos.astype("float32") / 255.0,
    }
    for name, source in sources.items():
        value_range = (0, 1) if name == "scaled to [0, 1]" else (0, 255)
        values, vectors = fit_pca_lighting(source, value_range=value_range, verbose=0)
        np.testing.assert_allclose(values, expected_values, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(vectors, expected_vectors, atol=1e-6, err_msg=name)
    # The fitted values plug straight into the layer.
    layer = RandomPCALighting(eigenvalues=expected_values, eigenvectors=expected_vectors)
    assert layer(photos[:, :8, :8]).shape == (2, 8, 8, 3)


@pytest.mark.backend_independent
def test_fit_pca_lighting_shows_progress(photos, capsys):
    fit_pca_lighting(photos, batch_size=1, verbose=1)
    assert "2/2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"stddev": -0.1},
         r"`stddev` must be a finite non-negative number\. Received: stddev=-0\.1$"),
        ({"stddev": "0.1"}, r"Received: stddev='0\.1'$"),
        ({"stddev": float("inf")}, r"Received: stddev=inf$"),
        ({"eigenvalues": [1.0, 2.0]}, r"`eigenvalues` must be .* shape \(3,\)\. "
         r"Received: eigenvalues=\[1\.0, 2\.0\]$"),
        ({"eigenvalues": [0.2, -0.1, 0.0]}, r"must be non-negative .* "
         r"Received: eigenvalues=\[0\.2, -0\.1, 0\.0\]$"),
        ({"eigenvalues": [0.2, float("nan"), 0.0]}, r"finite .* Received: eigenvalues="),
        ({"eigenvectors": np.eye(2)}, r"`eigenvectors` must be .* shape \(3, 3\)\. "
         r"Received: eigenvectors="),
        ({"eigenvectors": "abc"}, r"Received: eigenvectors='abc'$"),
        ({"value_range": (255, 0)}, r"low < high\. Received: value_range=\(255, 0\)$"),
        ({"value_range": 255}, r"Received: value_range=255$"),
        ({"seed": "1"}, r"`seed` must be an integer\. Received: seed='1'$"),
    ],
)
@pytest.mark.backend_independent
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomPCALighting(**kwargs)


@pytest.mark.parametrize(
    "input_shape",
    [(2, 8, 8, 1), (2, 8, 8, 4), (2, 3, 8, 8), (8, 3), (2, 1, 8, 8, 3)],
)
def test_build_errors(input_shape):
    match = r"channels-last RGB images .* Received: input_shape=" + (
        r"\(" + ", ".join(map(str, input_shape)) + r",?\)$"
    )
    with pytest.raises(ValueError, match=match):
        RandomPCALighting().build(input_shape)


@pytest.mark.parametrize(
    "images, kwargs, error, match",
    [
        (
            np.zeros((2, 4, 4, 1)),
            {},
            ValueError,
            r"RGB images .* Received: element_shape=\(2, 4, 4, 1\)$",
        ),
        (np.zeros((1, 1, 3)), {}, ValueError, r"at least 2 pixels .* Received: num_pixels=1$"),
        (
            np.zeros((2, 4, 4, 3)),
            {"value_range": (1, 1)},
            ValueError,
            r"Received: value_range=\(1, 1\)$",
        ),
        (np.zeros((2, 4, 4, 3)), {"batch_size": 0}, ValueError, r"Received: batch_size=0$"),
        (3.0, {}, TypeError, r"NumPy array, a tf\.data\.Dataset .* Received: images=float$"),
        (
            [{"img": np.zeros((2, 2, 3))}],
            {},
            ValueError,
            r"'image' key .* Received: keys=\['img'\]$",
        ),
    ],
)
@pytest.mark.backend_independent
def test_fit_pca_lighting_errors(images, kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_pca_lighting(images, verbose=0, **kwargs)


def test_fit_pca_lighting_rejects_infinite_dataset():
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors(np.zeros((2, 2, 3))).repeat()
    with pytest.raises(ValueError, match=r"infinite dataset; .* Received: images=<infinite"):
        fit_pca_lighting(dataset, verbose=0)

import keras
import numpy as np
import pytest

from kfound.layers import BackbonePreprocessing


@pytest.mark.parametrize("backbone, module", [
    ("MobileNet", keras.applications.mobilenet),
    ("ResNet50", keras.applications.resnet),
    ("EfficientNetB0", keras.applications.efficientnet),
])
def test_preprocessing_is_the_backbones_own(backbone, module):
    images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    layer = BackbonePreprocessing(backbone)
    expected = module.preprocess_input(images.copy())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(images)), expected, rtol=1e-5,
                               atol=1e-4)
    clone = BackbonePreprocessing.from_config(layer.get_config())
    assert clone.backbone == backbone

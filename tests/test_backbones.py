import keras
import numpy as np
import pytest
from finetune_test_utils import (
    SHARED_MOBILENET,
    with_top_weights_file,
)

from kfound import backbones, finetune


def test_backbone_names_cover_keras_applications():
    names = backbones.backbone_names()
    assert names[0] == "SmallConvNet"
    for name in ("MobileNet", "MobileNetV2", "MobileNetV3Small", "ResNet50", "EfficientNetB0",
                 "VGG16"):
        assert name in names


def test_unfreeze_from_name_index_and_fraction():
    backbone = backbones.small_conv_net(16)
    n = len(backbone.layers)
    assert backbones.unfreeze_index(backbone, None) == 0
    assert backbones.unfreeze_index(backbone, "block1_conv0") == [
        layer.name for layer in backbone.layers].index("block1_conv0")
    assert backbones.unfreeze_index(backbone, 3) == 3
    assert backbones.unfreeze_index(backbone, -1) == n - 1
    assert backbones.unfreeze_index(backbone, 0.5) == n // 2


def test_pretrained_small_backbone_is_cached(tmp_path):
    messages = []
    path = backbones.pretrain_small_backbone(tmp_path, image_size=8, epochs=1, log=messages.append)
    assert backbones.pretrain_small_backbone(tmp_path, image_size=8, epochs=1,
                                            log=messages.append) == path
    assert "reusing" in messages[-1]
    backbone = backbones.build_backbone("SmallConvNet", weights=path, image_size=8)
    source = keras.saving.load_model(path)
    for a, b in zip(backbone.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_shared_imagenet_weights_file_without_top(shared_weights_dir):
    path = str(shared_weights_dir / SHARED_MOBILENET)
    backbone = backbones.build_backbone("MobileNet", weights=path, image_size=32, alpha=0.25)
    variance = backbone.get_layer("conv1_bn").moving_variance.numpy()
    assert not np.allclose(variance, 1.0)  # trained statistics, not the initial ones
    classifier = finetune.Classifier(backbone, "MobileNet", 3)
    assert classifier.model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 3)


def test_weights_file_with_top_loads_the_body(tmp_path):
    network, path = with_top_weights_file(tmp_path)
    backbone = backbones.build_backbone("MobileNet", weights=path, image_size=32, alpha=0.25)
    for name in ("conv1", "conv_pw_13_bn"):
        for a, b in zip(backbone.get_layer(name).get_weights(),
                        network.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    assert "conv_preds" not in [layer.name for layer in backbone.layers]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "ResNet51"}, r"`backbone` must be one of SmallConvNet, ConvNeXtBase.*"
                               r"MobileNetV2.*Received: backbone='ResNet51'"),
        ({"name": "MobileNet", "image_size": 16},
         r"`image_size` is below the minimum.*32x32.*Received: image_size=16"),
        ({"name": "InceptionV3", "image_size": 64}, r"75x75.*Received: image_size=64"),
        ({"name": "SmallConvNet", "image_size": 4},
         r"at least 8 for backbone SmallConvNet\. Received: image_size=4"),
        ({"name": "ResNet50", "alpha": 0.5}, r"MobileNet family only.*Received: alpha=0.5"),
        ({"name": "SmallConvNet", "weights": "imagenet"},
         r"no ImageNet weights.*Received: weights='imagenet'"),
        ({"name": "MobileNet", "weights": "/no/such/file.h5"},
         r"existing weights file\. Received: weights='/no/such/file.h5'"),
    ],
)
def test_bad_backbones_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        backbones.build_backbone(**kwargs)


def test_mismatched_weights_file_is_a_clear_error(tmp_path):
    _, path = with_top_weights_file(tmp_path)
    with pytest.raises(ValueError, match=r"neither without nor with its classification top.*"
                                         r"Received: weights='.*mobilenet_top\.weights\.h5'"):
        backbones.build_backbone("MobileNet", weights=path, image_size=32, alpha=0.5)
    small = str(tmp_path / "small.keras")
    backbones.small_conv_net(8).save(small)
    with pytest.raises(ValueError, match=r"matches backbone MobileNetV2.*neither.*Received: "
                                         r"weights='.*small\.keras'"):
        backbones.build_backbone("MobileNetV2", weights=small, image_size=32)
    dense = str(tmp_path / "dense.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(dense)
    with pytest.raises(ValueError, match=r"does not match backbone SmallConvNet at image size "
                                         r"16.*Received: weights='.*dense\.keras'"):
        backbones.build_backbone("SmallConvNet", weights=dense, image_size=16)


def test_mismatched_shared_weights_file(shared_weights_dir):
    path = str(shared_weights_dir / SHARED_MOBILENET)
    with pytest.raises(ValueError, match=r"matches backbone MobileNetV2.*Received: weights="):
        backbones.build_backbone("MobileNetV2", weights=path, image_size=32, alpha=0.35)


@pytest.mark.parametrize("value, match", [
    ("no_such_layer", r"must name a layer of small_conv_net.*Received: unfreeze_from="),
    (1.5, r"fraction of depth must be in \[0, 1\)\. Received: unfreeze_from=1.5"),
    (999, r"index below \d+.*Received: unfreeze_from=999"),
])
def test_bad_unfreeze_from(value, match):
    with pytest.raises(ValueError, match=match):
        backbones.unfreeze_index(backbones.small_conv_net(16), value)

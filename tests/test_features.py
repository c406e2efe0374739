"""The frozen VGG19 feature extractor."""

import numpy as np
import pytest
import tensorflow as tf

from stylecore.features import DEFAULT_STYLE_LAYERS, FeatureExtractor


def test_extractor_shapes_any_size(extractor):
    image = tf.zeros([1, 48, 40, 3])
    content, style = extractor(image)
    assert [tuple(f.shape) for f in content] == [(1, 3, 2, 512)]  # block5_conv2 at 1/16 scale
    assert [f.shape[-1] for f in style] == [64, 128, 256, 512, 512]
    assert tuple(style[0].shape) == (1, 48, 40, 64)


def test_extractor_uses_given_weights(random_weights):
    extractor = FeatureExtractor(random_weights, content_layers=("block1_conv1",), style_layers=())
    image = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype(np.float32)
    (features,), _ = extractor(tf.constant(image))
    kernel, bias = random_weights.layers["block1_conv1"]
    expected = tf.nn.relu(tf.nn.conv2d(image, kernel, strides=1, padding="SAME") + bias)
    np.testing.assert_allclose(features.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_unknown_layer_lists_valid_layers(random_weights):
    with pytest.raises(ValueError, match="unknown VGG19 layer block6_conv1; valid layers: block1_conv1"):
        FeatureExtractor(random_weights, content_layers=("block6_conv1",), style_layers=DEFAULT_STYLE_LAYERS)


def test_bfloat16_extractor_close_to_float32(random_weights, extractor):
    mixed = FeatureExtractor(random_weights, precision="bfloat16")
    image = tf.constant(np.random.default_rng(1).uniform(-100, 100, size=(1, 32, 32, 3)).astype(np.float32))
    (content_32,), style_32 = extractor(image)
    (content_16,), style_16 = mixed(image)

    assert content_16.dtype == tf.bfloat16
    assert content_32.dtype == tf.float32
    assert mixed.model.layers[1].compute_dtype == "bfloat16"
    for low, high in zip([content_16, *style_16], [content_32, *style_32]):
        low = tf.cast(low, tf.float32)
        scale = float(tf.reduce_max(tf.abs(high))) or 1.0
        # bfloat16 keeps 8 significant bits, about 2 decimal digits.
        assert float(tf.reduce_max(tf.abs(low - high))) / scale < 0.05


def test_unknown_precision_rejected(random_weights):
    with pytest.raises(ValueError, match="valid precisions: float32, bfloat16, auto"):
        FeatureExtractor(random_weights, precision="fp8")


def test_auto_precision_resolves_to_a_real_one(random_weights):
    assert FeatureExtractor(random_weights, content_layers=("block1_conv1",), style_layers=(),
                            precision="auto").precision in ("float32", "bfloat16")

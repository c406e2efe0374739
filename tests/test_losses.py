"""Gram matrix, content, style, total variation and total losses against hand-computed and NumPy values."""

import numpy as np
import pytest
import tensorflow as tf

from stylecore import losses

# 3 x 4 positions, 2 channels, holding 1…24 in row-major order: channel 0 contains the odd numbers.
RAMP_FEATURES = np.arange(1, 25, dtype=np.float32).reshape(3, 4, 2)
# FᵀF / 12 for those features, e.g. (1² + 3² + … + 23²) / 12 = 2300 / 12.
RAMP_GRAM = np.array([[191.6667, 203.6667], [203.6667, 216.6667]])


def numpy_gram(features):
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    return flat.T @ flat / flat.shape[0]


def test_gram_matrix_hand_computed_example():
    gram = losses.gram_matrix(RAMP_FEATURES).numpy()

    assert gram.shape == (2, 2)
    np.testing.assert_allclose(gram, RAMP_GRAM, atol=1e-4)


def test_gram_matrix_positions_by_channels_form():
    gram = losses.gram_matrix(RAMP_FEATURES.reshape(12, 2)).numpy()

    np.testing.assert_allclose(gram, RAMP_GRAM, atol=1e-4)


def test_gram_matrix_batched_form_per_image():
    batch = np.stack([RAMP_FEATURES, 2 * RAMP_FEATURES])

    gram = losses.gram_matrix(batch).numpy()

    assert gram.shape == (2, 2, 2)
    np.testing.assert_allclose(gram[0], RAMP_GRAM, atol=1e-4)
    np.testing.assert_allclose(gram[1], 4 * RAMP_GRAM, rtol=1e-5)


def test_gram_matrix_rejects_rank_one():
    with pytest.raises(ValueError, match="got rank 1"):
        losses.gram_matrix(np.ones(5, np.float32))


def test_gram_matrix_analytic_gradient():
    # d/dF of Σ (U ⊙ G) with G = FᵀF / N is F (U + Uᵀ) / N, per image.
    rng = np.random.default_rng(4)
    features = tf.constant(rng.normal(size=(2, 3, 4, 5)).astype(np.float32))
    upstream = rng.normal(size=(2, 5, 5)).astype(np.float32)

    with tf.GradientTape() as tape:
        tape.watch(features)
        weighted = tf.reduce_sum(losses.gram_matrix(features) * upstream)
    gradient = tape.gradient(weighted, features).numpy()

    flat = features.numpy().reshape(2, 12, 5).astype(np.float64)
    expected = flat @ (upstream + upstream.transpose(0, 2, 1)) / 12
    np.testing.assert_allclose(gradient.reshape(2, 12, 5), expected, rtol=1e-4, atol=1e-5)


def test_gram_matrix_bfloat16_features():
    rng = np.random.default_rng(5)
    wide = tf.constant(rng.uniform(0, 4, size=(6, 7, 8)).astype(np.float32))
    narrow = tf.cast(wide, tf.bfloat16)

    with tf.GradientTape() as tape:
        tape.watch(narrow)
        gram = losses.gram_matrix(narrow)
        loss = tf.reduce_sum(tf.square(gram))
    gradient = tape.gradient(loss, narrow)

    assert gram.dtype == tf.float32
    assert gradient.dtype == tf.bfloat16
    # The product itself is exact for bfloat16 inputs; only float32 summation order differs.
    np.testing.assert_allclose(gram.numpy(), numpy_gram(tf.cast(narrow, tf.float32).numpy()), rtol=1e-5)
    with tf.GradientTape() as tape:
        widened = tf.cast(narrow, tf.float32)
        tape.watch(widened)
        reference = tape.gradient(tf.reduce_sum(tf.square(losses.gram_matrix(widened))), widened)
    relative = tf.norm(tf.cast(gradient, tf.float32) - reference) / tf.norm(reference)
    assert float(relative) < 1e-2  # bfloat16 keeps about 3 significant digits


def test_content_loss_is_mean_squared_difference():
    rng = np.random.default_rng(1)
    generated, target = rng.normal(size=(2, 2, 3, 4, 5)).astype(np.float32)

    batched = losses.content_loss(generated, target).numpy()
    single = losses.content_loss(generated[0], target[0]).numpy()

    np.testing.assert_allclose(batched, np.mean((generated - target) ** 2, axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(single, np.mean((generated[0] - target[0]) ** 2), rtol=1e-5)


def test_style_loss_is_mean_squared_gram_difference():
    rng = np.random.default_rng(2)
    generated = rng.normal(size=(2, 4, 3, 6)).astype(np.float32)
    target_gram = numpy_gram(rng.normal(size=(4, 3, 6)))

    batched = losses.style_loss(generated, target_gram.astype(np.float32)).numpy()

    expected = [np.mean((numpy_gram(image) - target_gram) ** 2) for image in generated]
    np.testing.assert_allclose(batched, expected, rtol=1e-5)


def test_total_variation_hand_computed_example():
    # Vertical differences 2, 1, 4 give a mean square of 21 / 3 = 7; horizontal 1, 2, 0, 5 give 30 / 4 = 7.5.
    image = np.array([[0, 1, 3], [2, 2, 7]], np.float32)[..., np.newaxis]

    assert losses.total_variation_loss(image).numpy() == pytest.approx(14.5)


def test_total_variation_batched_and_constant():
    image = np.array([[0, 1, 3], [2, 2, 7]], np.float32)[..., np.newaxis]
    batch = np.stack([image, np.full_like(image, 9.0), 3 * image])

    values = losses.total_variation_loss(batch).numpy()

    np.testing.assert_allclose(values, [14.5, 0.0, 9 * 14.5], rtol=1e-6)


def make_layers(seed):
    """Random features of one content layer and five style layers, B = 1, with their targets."""
    rng = np.random.default_rng(seed)
    content_features = [rng.normal(size=(1, 4, 4, 3)).astype(np.float32)]
    content_targets = [rng.normal(size=(1, 4, 4, 3)).astype(np.float32)]
    style_features = [rng.normal(size=(1, 5 - i, 5 - i, 2 + i)).astype(np.float32) for i in range(5)]
    style_grams = [numpy_gram(rng.normal(size=(3, 3, 2 + i))).astype(np.float32)[np.newaxis] for i in range(5)]
    return content_features, style_features, content_targets, style_grams


def test_total_loss_default_weighting():
    content_features, style_features, content_targets, style_grams = make_layers(3)

    total, style, content, tv = (t.numpy()[0] for t in
                                 losses.total_loss(content_features, style_features, content_targets, style_grams))

    style_parts = [np.mean((numpy_gram(f[0]) - g[0]) ** 2) for f, g in zip(style_features, style_grams)]
    expected_style = 1e-2 * np.dot([1, 2, 3, 4, 5], style_parts)
    expected_content = 1e3 * np.mean((content_features[0] - content_targets[0]) ** 2)
    assert style == pytest.approx(expected_style, rel=1e-5)
    assert content == pytest.approx(expected_content, rel=1e-5)
    assert tv == 0.0
    assert total == pytest.approx(expected_style + expected_content, rel=1e-5)


def test_total_loss_adds_weighted_total_variation():
    layers = make_layers(4)
    image = np.array([[0, 1, 3], [2, 2, 7]], np.float32)[np.newaxis, ..., np.newaxis]

    total, style, content, tv = (t.numpy()[0] for t in losses.total_loss(*layers, tv_weight=0.5, image=image))

    assert tv == pytest.approx(0.5 * 14.5)
    assert total == pytest.approx(style + content + tv, rel=1e-6)


def test_total_loss_requires_image_for_tv():
    with pytest.raises(ValueError, match="tv_weight is 0.5, so total_loss needs the image"):
        losses.total_loss(*make_layers(5), tv_weight=0.5)


def test_total_loss_rejects_layer_weight_count():
    with pytest.raises(ValueError, match="3 style layer weights for 5 style layers"):
        losses.total_loss(*make_layers(6), style_layer_weights=(1.0, 1.0, 1.0))


def test_total_loss_gradient_flows_through_tv():
    layers = make_layers(7)
    image = tf.Variable(np.array([[0, 1, 3], [2, 2, 7]], np.float32)[np.newaxis, ..., np.newaxis])

    with tf.GradientTape() as tape:
        total, _, _, _ = losses.total_loss(*layers, tv_weight=1.0, image=image)
    gradient = tape.gradient(total, image)

    assert gradient is not None
    assert np.any(gradient.numpy() != 0)

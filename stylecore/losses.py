"""Content, style and total losses of Gatys et al., "A Neural Algorithm of Artistic Style" (2015).

Activations are float32 tensors, B x H x W x C (or H x W x C); Gram
matrices are C x C (or B x C x C).
"""

import tensorflow as tf

DEFAULT_CONTENT_WEIGHT = 1e3
DEFAULT_STYLE_WEIGHT = 1e-2
# Departure from the paper, which weights every style layer equally: deeper
# layers count more here, 1, 2, 3, ... for the first, second, third style layer.
DEFAULT_STYLE_LAYER_WEIGHTS = (1.0, 2.0, 3.0, 4.0, 5.0)


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """Return FᵀF divided by the number of positions, per image.

    Accepts H x W x C, B x H x W x C, or N x C (N positions). Departure from
    the paper, which leaves the Gram matrix unnormalized: dividing by the
    number of positions makes the style loss independent of the image size.
    """
    features = tf.convert_to_tensor(features, tf.float32)
    rank = features.shape.rank
    if rank == 2:
        flat = features[tf.newaxis]
    elif rank == 3:
        flat = tf.reshape(features, [1, -1, tf.shape(features)[-1]])
    elif rank == 4:
        flat = tf.reshape(features, [tf.shape(features)[0], -1, tf.shape(features)[-1]])
    else:
        raise ValueError(f"gram_matrix expects N x C, H x W x C or B x H x W x C features, got rank {rank}")

    positions = tf.cast(tf.shape(flat)[1], tf.float32)
    gram = tf.matmul(flat, flat, transpose_a=True) / positions
    return gram if rank == 4 else gram[0]


def content_loss(generated_features: tf.Tensor, target_features: tf.Tensor) -> tf.Tensor:
    """Mean squared difference of two activations, per image when batched (B x H x W x C gives B values)."""
    squared = tf.square(generated_features - target_features)
    if squared.shape.rank == 4:
        return tf.reduce_mean(squared, axis=[1, 2, 3])
    return tf.reduce_mean(squared)


def style_loss(generated_features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """Mean squared difference between the Gram matrix of `generated_features` and `target_gram`.

    Departure from the paper's 1 / (4 N² M²) factor: the mean over the C x C
    entries of size-normalized Gram matrices.
    """
    squared = tf.square(gram_matrix(generated_features) - target_gram)
    if squared.shape.rank == 3:
        return tf.reduce_mean(squared, axis=[1, 2])
    return tf.reduce_mean(squared)


def total_loss(
    content_features,
    style_features,
    content_targets,
    style_grams,
    content_weight=DEFAULT_CONTENT_WEIGHT,
    style_weight=DEFAULT_STYLE_WEIGHT,
    style_layer_weights=DEFAULT_STYLE_LAYER_WEIGHTS,
):
    """Return (total, style, content) losses.

    total = style_weight · Σₗ wₗ · style_loss(layer l) + content_weight · mean over content layers of content_loss.
    The style and content parts are returned already weighted, so that
    total = style + content.
    """
    if len(style_layer_weights) != len(style_features):
        raise ValueError(f"{len(style_layer_weights)} style layer weights for {len(style_features)} style layers")

    style = tf.add_n([w * style_loss(f, g) for w, f, g in zip(style_layer_weights, style_features, style_grams)])
    content = tf.add_n([content_loss(f, t) for f, t in zip(content_features, content_targets)])
    content = content / len(content_features)

    style = style_weight * style
    content = content_weight * content
    return style + content, style, content

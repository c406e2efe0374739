"""Content, style, total variation and total losses of Gatys et al., "A Neural Algorithm of Artistic Style" (2015).

Activations are B x H x W x C (or H x W x C) tensors in float32, or in
bfloat16 as a bfloat16 FeatureExtractor returns them; every loss and Gram
matrix is float32. Gram matrices are C x C (or B x C x C). The total variation loss reads the
optimized image itself, in VGG19 input space (pixel values on the 0-255
scale, mean subtracted).
"""

import tensorflow as tf

DEFAULT_CONTENT_WEIGHT = 1e3
DEFAULT_STYLE_WEIGHT = 1e-2
# Off by default, as in the paper, which has no smoothness term.
DEFAULT_TV_WEIGHT = 0.0
# Departure from the paper, which weights every style layer equally: deeper
# layers count more here, 1, 2, 3, ... for the first, second, third style layer.
DEFAULT_STYLE_LAYER_WEIGHTS = (1.0, 2.0, 3.0, 4.0, 5.0)


def default_style_layer_weights(count: int) -> tuple[float, ...]:
    """Return the default weights of `count` style layers: 1, 2, ..., count, as for the five default layers."""
    return tuple(float(i) for i in range(1, count + 1))


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """Return FᵀF divided by the number of positions, per image, as float32.

    Accepts H x W x C, B x H x W x C, or N x C (N positions), in float32 or
    in bfloat16 as a bfloat16 FeatureExtractor returns them. Departure from
    the paper, which leaves the Gram matrix unnormalized: dividing by the
    number of positions makes the style loss independent of the image size.
    """
    features = tf.convert_to_tensor(features)
    if features.dtype != tf.bfloat16:
        features = tf.cast(features, tf.float32)
    rank = features.shape.rank
    if rank == 2:
        flat = features[tf.newaxis]
    elif rank == 3:
        flat = tf.reshape(features, [1, -1, tf.shape(features)[-1]])
    elif rank == 4:
        flat = tf.reshape(features, [tf.shape(features)[0], -1, tf.shape(features)[-1]])
    else:
        raise ValueError(f"gram_matrix expects N x C, H x W x C or B x H x W x C features, got rank {rank}")

    gram = _batched_gram(flat)
    return gram if rank == 4 else gram[0]


@tf.custom_gradient
def _batched_gram(flat):
    """B x N x C features to B x C x C float32 Gram matrices, with a gradient that costs one product, not two.

    The product is computed in float32. Its gradient, F (dG + dGᵀ) / N, is
    computed in the features' own dtype: for bfloat16 features that is what
    the layer below receives anyway, and it halves the cost on hardware with
    bfloat16 arithmetic. Left to autodiff, the gradient takes one product per
    factor, each over the N positions.
    """
    positions = tf.cast(tf.shape(flat)[1], tf.float32)
    wide = tf.cast(flat, tf.float32)
    gram = tf.matmul(wide, wide, transpose_a=True) / positions

    def gradient(upstream):
        symmetric = (upstream + tf.linalg.matrix_transpose(upstream)) / positions
        return tf.matmul(flat, tf.cast(symmetric, flat.dtype))

    return gram, gradient


def content_loss(generated_features: tf.Tensor, target_features: tf.Tensor) -> tf.Tensor:
    """Mean squared difference of two activations, per image when batched (B x H x W x C gives B values)."""
    squared = tf.square(tf.cast(generated_features, tf.float32) - tf.cast(target_features, tf.float32))
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


def total_variation_loss(image: tf.Tensor) -> tf.Tensor:
    """Return the mean squared difference between vertical neighbours plus that between horizontal neighbours.

    Accepts H x W x C, or B x H x W x C, which gives B values. Departure from
    the paper, which has no smoothness term: squared rather than absolute
    differences, so the gradient is smooth at flat regions, and averaged
    rather than summed, so the loss does not grow with the image size. For
    pixel values on the 0-255 scale it is in squared pixel values.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    rank = image.shape.rank
    if rank not in (3, 4):
        raise ValueError(f"total_variation_loss expects H x W x C or B x H x W x C images, got rank {rank}")

    batched = image if rank == 4 else image[tf.newaxis]
    vertical = tf.square(batched[:, 1:, :, :] - batched[:, :-1, :, :])
    horizontal = tf.square(batched[:, :, 1:, :] - batched[:, :, :-1, :])
    loss = tf.reduce_mean(vertical, axis=[1, 2, 3]) + tf.reduce_mean(horizontal, axis=[1, 2, 3])
    return loss if rank == 4 else loss[0]


def total_loss(
    content_features,
    style_features,
    content_targets,
    style_grams,
    content_weight=DEFAULT_CONTENT_WEIGHT,
    style_weight=DEFAULT_STYLE_WEIGHT,
    style_layer_weights=DEFAULT_STYLE_LAYER_WEIGHTS,
    tv_weight=DEFAULT_TV_WEIGHT,
    image=None,
):
    """Return (total, style, content, total variation) losses, per image when batched.

    total = style_weight · Σₗ wₗ · style_loss(layer l)
          + content_weight · mean over content layers of content_loss
          + tv_weight · total_variation_loss(image).
    The parts are returned already weighted, so that total = style + content + tv.
    `image` is the optimized image the features were computed from; it is
    required when `tv_weight` is not 0.
    """
    if len(style_layer_weights) != len(style_features):
        raise ValueError(f"{len(style_layer_weights)} style layer weights for {len(style_features)} style layers")
    if tv_weight != 0 and image is None:
        raise ValueError(f"tv_weight is {tv_weight}, so total_loss needs the image; pass image= or set tv_weight to 0")

    style = tf.add_n([w * style_loss(f, g) for w, f, g in zip(style_layer_weights, style_features, style_grams)])
    content = tf.add_n([content_loss(f, t) for f, t in zip(content_features, content_targets)])
    content = content / len(content_features)
    # Skipped at weight 0, where it would only add a pass over the image and its gradient.
    tv = total_variation_loss(image) if image is not None and tv_weight != 0 else tf.zeros_like(content)

    style = style_weight * style
    content = content_weight * content
    tv = tv_weight * tv
    return style + content + tv, style, content, tv

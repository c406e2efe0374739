"""The optimization loop: make an image whose VGG19 features keep the content and whose Gram matrices match the style.

The optimized image is held as a TF variable in VGG19 input space
(1 x H x W x 3 float32, BGR, ImageNet mean subtracted) and clipped to the
valid 0-255 pixel range after every step. Iteration i records the losses of
the image before the i-th update, so iteration 0 is the initial image.
"""

import dataclasses
import statistics
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from stylecore import losses
from stylecore.features import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, FeatureExtractor
from stylecore.images import IMAGENET_MEAN_BGR, deprocess, preprocess
from stylecore.optim import Optimizer


@dataclasses.dataclass(frozen=True)
class TransferSettings:
    """Loss and loop settings of one stylization. The CLI and the manifest read their defaults from here."""

    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] = losses.DEFAULT_STYLE_LAYER_WEIGHTS
    content_weight: float = losses.DEFAULT_CONTENT_WEIGHT
    style_weight: float = losses.DEFAULT_STYLE_WEIGHT
    iterations: int = 100  # optimizer steps
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class IterationRecord:
    """Losses of the image before one update, and seconds since the loop started."""

    iteration: int
    total_loss: float
    style_loss: float
    content_loss: float
    elapsed_s: float


@dataclasses.dataclass(frozen=True)
class StylizeResult:
    """The best image by total loss and the run's history."""

    image: np.ndarray  # uint8 RGB, H x W x 3
    history: list[IterationRecord]
    best_loss: float
    best_iteration: int
    final_loss: float
    iterations: int  # updates run
    status: str  # "succeeded", or "diverged" when the loss became NaN or infinite
    seconds_per_iteration: float  # median, excluding iteration 0, which includes tracing


def stylize(
    extractor: FeatureExtractor,
    content_rgb: np.ndarray,
    style_rgb: np.ndarray,
    optimizer: Optimizer,
    settings: TransferSettings = TransferSettings(),
    callback: Callable[[IterationRecord], None] | None = None,
) -> StylizeResult:
    """Optimize an image starting from the content image.

    Args:
        extractor: VGG19 with `settings`' content and style layers.
        content_rgb, style_rgb: RGB, H x W x 3, values 0-255; sizes may differ.
        optimizer: a fresh optimizer; `stylize` builds its state.
        callback: called with each iteration's record, from this thread.
    """
    tf.random.set_seed(settings.seed)
    content = tf.constant(preprocess(content_rgb))
    style = tf.constant(preprocess(style_rgb))

    content_targets, _ = extractor(content)
    _, style_features = extractor(style)
    style_grams = [losses.gram_matrix(f) for f in style_features]

    image = tf.Variable(content, name="stylized_image")
    best_image = tf.Variable(content, trainable=False)
    best_loss = tf.Variable(np.inf, dtype=tf.float32, trainable=False)
    optimizer.build(image)
    step = _make_step(extractor, optimizer, settings, image, best_image, best_loss, content_targets, style_grams)

    history = []
    status = "succeeded"
    start = time.perf_counter()
    for iteration in range(settings.iterations):
        total, style_part, content_part = (float(t) for t in step())
        record = IterationRecord(iteration, total, style_part, content_part, time.perf_counter() - start)
        history.append(record)
        if callback is not None:
            callback(record)
        if not np.isfinite(total):
            status = "diverged"
            break

    return _result(history, best_image, status)


def _make_step(extractor, optimizer, settings, image, best_image, best_loss, content_targets, style_grams):
    # Valid pixel range 0-255 in BGR, mean-subtracted space.
    low = tf.constant(-IMAGENET_MEAN_BGR)
    high = tf.constant(255.0 - IMAGENET_MEAN_BGR)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            content_features, style_features = extractor(image)
            total, style_part, content_part = losses.total_loss(
                content_features, style_features, content_targets, style_grams,
                settings.content_weight, settings.style_weight, settings.style_layer_weights,
            )
            # The losses are per image (shape [1]); the loop optimizes one image.
            total, style_part, content_part = (tf.reduce_sum(t) for t in (total, style_part, content_part))
        gradient = tape.gradient(total, image)

        improved = total < best_loss
        best_loss.assign(tf.where(improved, total, best_loss))
        best_image.assign(tf.where(improved, image, best_image))

        optimizer.apply_gradient(gradient, image)
        image.assign(tf.clip_by_value(image, low, high))
        return total, style_part, content_part

    return step


def _result(history, best_image, status):
    finite = [r for r in history if np.isfinite(r.total_loss)]
    best = min(finite, key=lambda r: r.total_loss) if finite else None
    steps = [b.elapsed_s - a.elapsed_s for a, b in zip(history, history[1:])]
    return StylizeResult(
        image=deprocess(best_image.numpy()),
        history=history,
        best_loss=best.total_loss if best else float("nan"),
        best_iteration=best.iteration if best else -1,
        final_loss=history[-1].total_loss if history else float("nan"),
        iterations=len(history),
        status=status,
        seconds_per_iteration=statistics.median(steps) if steps else float("nan"),
    )

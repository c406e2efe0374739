"""The optimization loop: make an image whose VGG19 features keep the content and whose Gram matrices match the style.

The optimized image is held as a TF variable in VGG19 input space
(1 x H x W x 3 float32, BGR, ImageNet mean subtracted) and clipped to the
valid 0-255 pixel range after every step. Iteration i records the losses of
the image before the i-th update, so iteration 0 is the initial image.

A run ends with one of three statuses: "succeeded" after `iterations`
updates, "timed_out" when `time_budget_s` ran out first, or "diverged" when
a loss became NaN or infinite. Every status returns the best image seen.
"""

import dataclasses
import statistics
import time
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from stylecore import losses
from stylecore.features import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, FeatureExtractor
from stylecore.images import IMAGENET_MEAN_BGR, deprocess, preprocess
from stylecore.optim import Optimizer

INIT_MODES = ("content", "noise", "style")


@dataclasses.dataclass(frozen=True)
class TransferSettings:
    """Loss and loop settings of one stylization. The CLI and the manifest read their defaults from here."""

    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] = losses.DEFAULT_STYLE_LAYER_WEIGHTS
    content_weight: float = losses.DEFAULT_CONTENT_WEIGHT
    style_weight: float = losses.DEFAULT_STYLE_WEIGHT
    tv_weight: float = losses.DEFAULT_TV_WEIGHT
    iterations: int = 100  # maximum optimizer steps
    time_budget_s: float | None = None  # wall-clock limit of the loop, including tracing; None means no limit
    # Starting image: the content image, seeded uniform noise in 0-255, or the style image stretched to the
    # content size. Departure from Gatys et al. (2015), who start from white noise ("noise" here).
    init: str = "content"
    seed: int = 0  # seeds TF and the "noise" start

    def __post_init__(self):
        problems = []
        if self.init not in INIT_MODES:
            problems.append(f"init must be one of {', '.join(INIT_MODES)}, got {self.init!r}")
        if self.iterations < 1:
            problems.append(f"iterations must be at least 1, got {self.iterations!r}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            problems.append(f"time_budget_s must be positive or None for no limit, got {self.time_budget_s!r}")
        if self.tv_weight < 0:
            problems.append(f"tv_weight must be at least 0, got {self.tv_weight!r}")
        if problems:
            raise ValueError("invalid transfer settings: " + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class IterationRecord:
    """Weighted losses of the image before one update, and seconds since the loop started."""

    iteration: int
    total_loss: float
    style_loss: float
    content_loss: float
    tv_loss: float
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
    status: str  # "succeeded", "timed_out" or "diverged"
    seconds_per_iteration: float  # median, excluding iteration 0, which includes tracing


class _Targets(NamedTuple):
    content_features: list[tf.Tensor]  # activations of the content image at the content layers
    style_grams: list[tf.Tensor]  # Gram matrices of the style image at the style layers


def stylize(
    extractor: FeatureExtractor,
    content_rgb: np.ndarray,
    style_rgb: np.ndarray,
    optimizer: Optimizer,
    settings: TransferSettings = TransferSettings(),
    callback: Callable[[IterationRecord], None] | None = None,
) -> StylizeResult:
    """Optimize an image from the start `settings.init` selects until the iteration or time budget runs out.

    Args:
        extractor: VGG19 with `settings`' content and style layers.
        content_rgb, style_rgb: RGB, H x W x 3, values 0-255; sizes may differ.
            The result has the content image's size.
        optimizer: a fresh optimizer; `stylize` builds its state.
        callback: called with each iteration's record, from this thread.
    """
    tf.random.set_seed(settings.seed)
    targets = _build_targets(extractor, content_rgb, style_rgb)

    initial = tf.constant(_initial_image(content_rgb, style_rgb, settings))
    image = tf.Variable(initial, name="stylized_image")
    best_image = tf.Variable(initial, trainable=False)
    best_loss = tf.Variable(np.inf, dtype=tf.float32, trainable=False)
    optimizer.build(image)

    step = _make_step(extractor, optimizer, settings, targets, image, best_image, best_loss)
    history, status = _run_loop(step, settings, callback)
    return _result(history, best_image, status)


def _build_targets(extractor, content_rgb, style_rgb) -> _Targets:
    content_features, _ = extractor(tf.constant(preprocess(content_rgb)))
    _, style_features = extractor(tf.constant(preprocess(style_rgb)))
    return _Targets(content_features, [losses.gram_matrix(f) for f in style_features])


def _initial_image(content_rgb, style_rgb, settings) -> np.ndarray:
    """Return the starting image as VGG19 input (1 x H x W x 3, BGR, mean subtracted), sized like the content."""
    height, width = np.shape(content_rgb)[:2]
    if settings.init == "content":
        rgb = content_rgb
    elif settings.init == "noise":
        rgb = np.random.default_rng(settings.seed).uniform(0.0, 255.0, (height, width, 3))
    else:
        # Stretched to the content size, so the aspect ratio changes when the two differ.
        style = tf.constant(np.asarray(style_rgb, np.float32))
        rgb = tf.image.resize(style, (height, width), method="bilinear", antialias=True).numpy()
    return preprocess(rgb)


def _make_evaluate(extractor, settings, targets):
    def evaluate(x):
        """Return the (total, style, content, tv) losses of image `x` and the gradient of the total."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            content_features, style_features = extractor(x)
            parts = losses.total_loss(
                content_features, style_features, targets.content_features, targets.style_grams,
                settings.content_weight, settings.style_weight, settings.style_layer_weights,
                settings.tv_weight, image=x,
            )
            # The losses are per image (shape [1]); the loop optimizes one image.
            parts = tuple(tf.reduce_sum(part) for part in parts)
        return parts, tape.gradient(parts[0], x)

    return evaluate


def _make_step(extractor, optimizer, settings, targets, image, best_image, best_loss):
    evaluate = _make_evaluate(extractor, settings, targets)

    # Valid pixel range 0-255 in BGR, mean-subtracted space.
    low = tf.constant(-IMAGENET_MEAN_BGR)
    high = tf.constant(255.0 - IMAGENET_MEAN_BGR)

    def project(x):
        return tf.clip_by_value(x, low, high)

    def loss_and_gradient(x):
        parts, gradient = evaluate(x)
        return parts[0], gradient

    @tf.function
    def step():
        parts, gradient = evaluate(tf.convert_to_tensor(image))
        improved = parts[0] < best_loss
        best_loss.assign(tf.where(improved, parts[0], best_loss))
        best_image.assign(tf.where(improved, image, best_image))

        if optimizer.needs_loss_function:
            # NOTE: the next step evaluates the accepted point again to record its loss parts,
            # one forward and backward pass more per iteration than the line search needs.
            optimizer.apply_step(loss_and_gradient, image, parts[0], gradient, project)
        else:
            optimizer.apply_gradient(gradient, image)
            image.assign(project(image))
        return parts

    return step


def _run_loop(step, settings, callback) -> tuple[list[IterationRecord], str]:
    """Run `step` until a budget runs out or the loss is not finite; return the history and the status."""
    history = []
    start = time.perf_counter()
    for iteration in range(settings.iterations):
        total, style_part, content_part, tv_part = (float(t) for t in step())
        record = IterationRecord(iteration, total, style_part, content_part, tv_part, time.perf_counter() - start)
        history.append(record)
        if callback is not None:
            callback(record)

        if not np.isfinite(total):
            return history, "diverged"
        if settings.time_budget_s is not None and record.elapsed_s >= settings.time_budget_s:
            return history, "timed_out"
    return history, "succeeded"


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

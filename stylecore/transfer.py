"""The optimization loop: make an image whose VGG19 features keep the content and whose Gram matrices match the style.

The optimized image is held as a TF variable in VGG19 input space
(B x H x W x 3 float32, BGR, ImageNet mean subtracted) and clipped to the
valid 0-255 pixel range after every step. `stylize` optimizes one image
(B = 1). `stylize_batch` optimizes B images of the same content and style
pair at once, one per optimizer configuration, so one VGG19 pass computes
all B gradients. Iteration i records the losses of the image before the i-th
update, so iteration 0 is the initial image.

With `settings.coarse_sizes`, the loop first optimizes at those smaller
sizes (longer side in pixels, content and style scaled alike), each level
starting from the previous level's best image upscaled, and ends at the
content image's own size. Iterations are numbered across the levels; the
best image and loss come from the last, full-size level.

The loop runs up to `settings.steps_per_call` updates inside one
`tf.function` call and fetches their losses in one transfer. The time budget
and callbacks act once per call, and the first call runs one update.

A run ends with one of three statuses: "succeeded" after `iterations`
updates, "timed_out" when `time_budget_s` ran out first, or "diverged" when
a loss became NaN or infinite or rose above DIVERGENCE_FACTOR times the
starting loss. Every status returns the best image seen.
"""

import dataclasses
import math
import statistics
import time
from typing import Callable, NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from stylecore import losses
from stylecore.features import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, FeatureExtractor
from stylecore.images import IMAGENET_MEAN_BGR, MIN_SIZE_PX, deprocess, preprocess
from stylecore.optim import Optimizer

INIT_MODES = ("content", "noise", "style")
# Clipping to valid pixels keeps the loss finite even for absurd learning
# rates. Adam at 1e6 gives about 100 x the starting loss after one update and
# stays there, so a loss this many times the starting loss also counts as
# diverged. A run that converges never comes near it.
DIVERGENCE_FACTOR = 100.0


class SettingsError(ValueError):
    """Invalid TransferSettings; `problems` lists (field, message) pairs, one per problem."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("invalid transfer settings: " + "; ".join(message for _, message in problems))
        self.problems = problems


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
    # Updates per tf.function call. Larger values save host round trips but let a run overshoot its time
    # budget by up to this many steps and deliver callbacks in bursts. 1 by default because 10 measured no
    # faster on a 2-core CPU, even at 128 px (BENCHMARKS.md). NOTE: untested on a GPU, where it should help.
    steps_per_call: int = 1
    # Coarse to fine: longer sides in pixels of smaller levels run first, increasing and below the full size.
    # Each level starts from the previous level's best image, upscaled. Empty means one level at full size.
    coarse_sizes: tuple[int, ...] = ()
    coarse_iterations: int = 100  # optimizer steps at each coarse size

    def __post_init__(self):
        problems = []  # (field, message)
        if self.init not in INIT_MODES:
            problems.append(("init", f"init must be one of {', '.join(INIT_MODES)}, got {self.init!r}"))
        if self.iterations < 1:
            problems.append(("iterations", f"iterations must be at least 1, got {self.iterations!r}"))
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            problems.append(("time_budget_s",
                             f"time_budget_s must be positive or None for no limit, got {self.time_budget_s!r}"))
        if len(self.style_layer_weights) != len(self.style_layers):
            problems.append(("style_layer_weights", f"{len(self.style_layer_weights)} style_layer_weights for "
                             f"{len(self.style_layers)} style_layers; give one weight per style layer"))
        if self.tv_weight < 0:
            problems.append(("tv_weight", f"tv_weight must be at least 0, got {self.tv_weight!r}"))
        if self.steps_per_call < 1:
            problems.append(("steps_per_call", f"steps_per_call must be at least 1, got {self.steps_per_call!r}"))
        sizes = list(self.coarse_sizes)
        if any(size < MIN_SIZE_PX for size in sizes) or sizes != sorted(set(sizes)):
            problems.append(("coarse_sizes",
                             f"coarse_sizes must be increasing sizes of at least {MIN_SIZE_PX} px, got {sizes!r}"))
        if self.coarse_iterations < 1:
            problems.append(("coarse_iterations",
                             f"coarse_iterations must be at least 1, got {self.coarse_iterations!r}"))
        if problems:
            raise SettingsError(problems)

    @property
    def max_updates(self) -> int:
        """Updates of a run that no budget or divergence ends: the full-size ones plus those of every coarse size."""
        return self.iterations + len(self.coarse_sizes) * self.coarse_iterations


@dataclasses.dataclass(frozen=True)
class IterationRecord:
    """Weighted losses of the image before one update, and seconds since the loop started."""

    iteration: int
    total_loss: float
    style_loss: float
    content_loss: float
    tv_loss: float
    # NOTE: within one tf.function call of several steps, the call's time is spread evenly over its steps.
    elapsed_s: float
    size_px: int  # longer side of the image optimized: a coarse size or the full size


@dataclasses.dataclass(frozen=True)
class StylizeResult:
    """The best image by total loss and the run's history."""

    image: np.ndarray  # uint8 RGB, H x W x 3
    history: list[IterationRecord]
    best_loss: float  # of the full-size level
    best_iteration: int
    final_loss: float
    iterations: int  # updates run, coarse levels included
    status: str  # "succeeded", "timed_out" or "diverged"
    seconds_per_iteration: float  # median at full size, excluding the level's first call, which includes tracing


class _Targets(NamedTuple):
    content_features: list[tf.Tensor]  # activations of the content image at the content layers
    style_grams: list[tf.Tensor]  # Gram matrices of the style image at the style layers


class _State(NamedTuple):
    image: tf.Variable  # B x H x W x 3, VGG19 input space
    best_image: tf.Variable  # B x H x W x 3
    best_loss: tf.Variable  # B, float32
    # B bools, true once an image diverged (see DIVERGENCE_FACTOR). Its updates go on, but its records and best
    # image stop.
    diverged: tf.Variable
    initial_loss: tf.Variable  # B, float32: the loss at iteration 0


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
        callback: called with each iteration's record, from this thread, in
            bursts of up to `settings.steps_per_call` records.
    """
    report = None if callback is None else (lambda index, record: callback(record))
    return _optimize(extractor, content_rgb, style_rgb, optimizer, 1, settings, report)[0]


def stylize_batch(
    extractor: FeatureExtractor,
    content_rgb: np.ndarray,
    style_rgb: np.ndarray,
    optimizers: Sequence[Optimizer],
    settings: TransferSettings = TransferSettings(),
    callback: Callable[[int, IterationRecord], None] | None = None,
) -> list[StylizeResult]:
    """Optimize one image per optimizer as one batch, so each VGG19 pass computes every image's gradient.

    The images share the content and style pair, the settings and the start,
    and differ only in their optimizer's hyperparameters. Each result matches
    what `stylize` returns for that optimizer alone, up to float32 rounding.
    An image whose loss stops being finite is reported "diverged" while the
    others go on.

    Args:
        optimizers: fresh optimizers of one class other than L-BFGS, each
            with scalar hyperparameters; `make_optimizer` builds them.
        callback: called with (index into `optimizers`, record) per image and
            iteration, from this thread.

    Raises:
        ValueError: `optimizers` is empty, mixes classes or includes L-BFGS.
    """
    optimizer = batch_optimizer(optimizers)
    return _optimize(extractor, content_rgb, style_rgb, optimizer, len(optimizers), settings, callback)


def batch_optimizer(optimizers: Sequence[Optimizer]) -> Optimizer:
    """Merge optimizers of one class into one whose hyperparameters are B x 1 x 1 x 1 tensors, one row each."""
    if not optimizers:
        raise ValueError("stylize_batch needs at least one optimizer, got none")
    kind = type(optimizers[0])
    mixed = sorted({type(o).__name__ for o in optimizers if type(o) is not kind})
    if mixed:
        raise ValueError(f"stylize_batch needs optimizers of one class, got {kind.__name__} and {', '.join(mixed)}. "
                         "Run one batch per optimizer.")
    if kind.needs_loss_function:
        raise ValueError(f"stylize_batch does not support {kind.name or kind.__name__} because its line search takes "
                         "one step length for the whole batch. Run it with stylize, one image at a time.")

    merged = {}
    for key in optimizers[0].hyperparameters:
        values = [o.hyperparameters[key] for o in optimizers]
        shapes = [v.shape for v in values if v.shape.rank != 0]
        if shapes:
            raise ValueError(f"stylize_batch needs scalar hyperparameters, got {key} of shape {shapes[0]}. "
                             "Pass one optimizer per configuration.")
        merged[key] = np.reshape(np.array([float(v) for v in values], np.float32), (-1, 1, 1, 1))

    # Skips the subclass constructor because its signature lists scalar defaults. The base class stores the tensors.
    batched = kind.__new__(kind)
    Optimizer.__init__(batched, **merged)
    return batched


def _optimize(extractor, content_rgb, style_rgb, optimizer, batch_size, settings, callback) -> list[StylizeResult]:
    tf.random.set_seed(settings.seed)
    levels = coarse_to_fine_levels(content_rgb, style_rgb, settings)
    start_s = time.perf_counter()
    histories = [[] for _ in range(batch_size)]
    statuses = [[] for _ in range(batch_size)]  # per image, one status per level run
    images = None  # the previous level's best images, VGG19 input space
    done = 0
    out_of_time = False
    for level, (level_content, level_style, iterations) in enumerate(levels):
        if out_of_time and level < len(levels) - 1:
            # Straight to full size: its first call runs even out of time, so the result has the full size.
            continue
        height, width = np.shape(level_content)[:2]
        if images is None:
            initial = np.repeat(_initial_image(level_content, level_style, settings), batch_size, axis=0)
        else:
            initial = _upscale(images, height, width)
        # An image that diverged at a coarser level stays diverged: it is carried along but no longer recorded.
        diverged = ["diverged" in image_statuses for image_statuses in statuses]
        state = _new_state(initial, diverged)
        optimizer.build(state.image)
        targets = _build_targets(extractor, level_content, level_style)
        run_steps = _make_run_steps(_make_step(extractor, optimizer, settings, targets, state), batch_size)
        level_histories, level_statuses, steps = _run_loop(run_steps, batch_size, iterations, settings, start_s, done,
                                                           max(height, width), diverged, callback)
        for history, records in zip(histories, level_histories):
            history += records
        for image_statuses, status in zip(statuses, level_statuses):
            image_statuses.append(status)
        done += steps
        images = state.best_image.numpy()
        out_of_time = "timed_out" in level_statuses

    final_size_px = max(np.shape(content_rgb)[:2])
    return [_result(histories[i], images[i:i + 1], _worst(statuses[i]), final_size_px) for i in range(batch_size)]


def check_coarse_sizes(content_shape, style_shape, settings) -> None:
    """Raise ValueError when a coarse size is not below the content's longer side or makes an image too narrow.

    Content and style are scaled alike, so every level must keep the shorter
    side of both at MIN_SIZE_PX or more, the least VGG19 takes.
    """
    full_px = max(content_shape[:2])
    for size_px in settings.coarse_sizes:
        if size_px >= full_px:
            raise ValueError(f"coarse size {size_px} px is not below the content image's longer side of {full_px} px; "
                             f"give coarse sizes below {full_px} px")
        scale = size_px / full_px
        smallest = min(*_scaled_size(content_shape, scale), *_scaled_size(style_shape, scale))
        if smallest < MIN_SIZE_PX:
            needed_px = math.ceil(MIN_SIZE_PX * full_px / min(*content_shape[:2], *style_shape[:2]))
            fix = (f"use coarse sizes of at least {needed_px} px for these images" if needed_px < full_px
                   else "these images are too narrow for any coarse size, so drop coarse_sizes")
            raise ValueError(f"coarse size {size_px} px scales the content or style image to {smallest} px on one "
                             f"side, below the {MIN_SIZE_PX} px VGG19 needs; {fix}")


def coarse_to_fine_levels(content_rgb, style_rgb, settings) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Return (content, style, iterations) per level: the coarse sizes, content and style scaled alike, then full size.

    Raises:
        ValueError: from `check_coarse_sizes`.
    """
    check_coarse_sizes(np.shape(content_rgb), np.shape(style_rgb), settings)
    full_px = max(np.shape(content_rgb)[:2])
    levels = []
    for size_px in settings.coarse_sizes:
        scale = size_px / full_px
        content = _resize_rgb(content_rgb, _scaled_size(np.shape(content_rgb), scale))
        style = _resize_rgb(style_rgb, _scaled_size(np.shape(style_rgb), scale))
        levels.append((content, style, settings.coarse_iterations))
    return levels + [(content_rgb, style_rgb, settings.iterations)]


def _scaled_size(shape, scale: float) -> tuple[int, int]:
    """Return (height, width) of an image of `shape` (H x W x ...) resized by `scale`, at least 1 x 1."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _resize_rgb(rgb, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB image to (height, width), antialiased, keeping values 0-255 as float32."""
    return tf.image.resize(np.asarray(rgb, np.float32), size, method="bilinear", antialias=True).numpy()


def _upscale(images, height: int, width: int) -> np.ndarray:
    """Resize B x h x w x 3 images in VGG19 input space to height x width, clipped to valid pixels."""
    resized = tf.image.resize(images, (height, width), method="bicubic")
    return tf.clip_by_value(resized, -IMAGENET_MEAN_BGR, 255.0 - IMAGENET_MEAN_BGR).numpy()


def _new_state(initial, diverged) -> _State:
    batch_size = len(initial)
    return _State(
        image=tf.Variable(initial, name="stylized_image"),
        best_image=tf.Variable(initial, trainable=False),
        best_loss=tf.Variable(tf.fill([batch_size], np.inf), trainable=False),
        diverged=tf.Variable(diverged, dtype=tf.bool, trainable=False),
        initial_loss=tf.Variable(tf.fill([batch_size], np.inf), trainable=False),
    )


def _worst(statuses) -> str:
    """Combine one image's statuses over the levels: diverged, else timed_out, else succeeded."""
    statuses = set(statuses)
    for status in ("diverged", "timed_out"):
        if status in statuses:
            return status
    return "succeeded"


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
        rgb = _resize_rgb(style_rgb, (height, width))
    return preprocess(rgb)


def _make_evaluate(extractor, settings, targets):
    def evaluate(x):
        """Return the (total, style, content, tv) losses of each image of `x` (each shape B) and the gradient of the total."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            content_features, style_features = extractor(x)
            parts = losses.total_loss(
                content_features, style_features, targets.content_features, targets.style_grams,
                settings.content_weight, settings.style_weight, settings.style_layer_weights,
                settings.tv_weight, image=x,
            )
            # The images of a batch are independent, so the gradient of the sum is each image's own gradient.
            summed = tf.reduce_sum(parts[0])
        gradient = tape.gradient(summed, x)
        # VGG19's ReLUs can turn NaN pixels into zeros, so an image that is no longer finite gets a NaN loss here.
        finite = tf.reduce_all(tf.math.is_finite(x), axis=[1, 2, 3])
        total = tf.where(finite, parts[0], tf.constant(np.nan, tf.float32))
        return (total, *parts[1:]), gradient

    return evaluate


def _make_step(extractor, optimizer, settings, targets, state):
    """Build one update of every image; the step returns the losses before it, 4 x B (total, style, content, tv)."""
    evaluate = _make_evaluate(extractor, settings, targets)

    # Valid pixel range 0-255 in BGR, mean-subtracted space.
    low = tf.constant(-IMAGENET_MEAN_BGR)
    high = tf.constant(255.0 - IMAGENET_MEAN_BGR)

    def project(x):
        return tf.clip_by_value(x, low, high)

    def loss_and_gradient(x):
        parts, gradient = evaluate(x)
        return tf.reduce_sum(parts[0]), gradient

    def step():
        parts, gradient = evaluate(tf.convert_to_tensor(state.image))
        total = parts[0]
        # A NaN compares false, and an image that diverged earlier keeps the best image from before.
        improved = tf.logical_and(total < state.best_loss, tf.logical_not(state.diverged))
        state.best_loss.assign(tf.where(improved, total, state.best_loss))
        state.best_image.assign(tf.where(improved[:, tf.newaxis, tf.newaxis, tf.newaxis], state.image, state.best_image))
        initial = state.initial_loss.assign(tf.where(tf.math.is_inf(state.initial_loss), total, state.initial_loss))
        diverged = state.diverged.assign(tf.logical_or(state.diverged, _has_diverged(total, initial)))

        if optimizer.needs_loss_function:
            # NOTE: the next step evaluates the accepted point again to record its loss parts,
            # one forward and backward pass more per iteration than the line search needs.
            optimizer.apply_step(loss_and_gradient, state.image, tf.reduce_sum(total), gradient, project)
        else:
            optimizer.apply_gradient(gradient, state.image)
            state.image.assign(project(state.image))
        return tf.stack(parts), tf.reduce_all(diverged)

    return step


def _has_diverged(total, initial_loss):
    """True where the loss is NaN or infinite, or above DIVERGENCE_FACTOR times the loss at iteration 0."""
    return tf.logical_or(tf.logical_not(tf.math.is_finite(total)), total > DIVERGENCE_FACTOR * initial_loss)


def _make_run_steps(step, batch_size):
    @tf.function
    def run_steps(count):
        """Run up to `count` steps, fewer once every image diverged; return their losses, steps x 4 x B."""
        def keep_going(i, all_diverged, records):
            return tf.logical_and(i < count, tf.logical_not(all_diverged))

        def body(i, all_diverged, records):
            parts, all_diverged = step()
            return i + 1, all_diverged, records.write(i, parts)

        records = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[4, batch_size])
        _, _, records = tf.while_loop(keep_going, body, (tf.constant(0), tf.constant(False), records))
        return records.stack()

    return run_steps


def _run_loop(run_steps, batch_size, iterations, settings, start_s, first_iteration, size_px, diverged,
              callback) -> tuple[list[list[IterationRecord]], list[str], int]:
    """Call `run_steps` until a budget runs out or every loss is not finite.

    The time budget counts from `start_s`, the start of the whole run, and
    iterations are numbered from `first_iteration`. Images flagged in
    `diverged` start out diverged. Returns the histories, the statuses and
    the number of steps run.
    """
    histories = [[] for _ in range(batch_size)]
    statuses = ["diverged" if flag else "succeeded" for flag in diverged]
    done = 0
    while done < iterations:
        # The first call runs one step, so iteration 0 carries the tracing time and an early budget check.
        count = 1 if done == 0 else min(settings.steps_per_call, iterations - done)
        call_start_s = time.perf_counter() - start_s
        losses_per_step = run_steps(tf.constant(count)).numpy()
        call_end_s = time.perf_counter() - start_s

        _record_call(losses_per_step, first_iteration + done, size_px, call_start_s, call_end_s, histories, statuses,
                     callback)
        done += len(losses_per_step)
        running = [i for i, status in enumerate(statuses) if status != "diverged"]
        if not running:
            break
        if settings.time_budget_s is not None and call_end_s >= settings.time_budget_s:
            for i in running:
                statuses[i] = "timed_out"
            break
    return histories, statuses, done


def _record_call(losses_per_step, first_iteration, size_px, call_start_s, call_end_s, histories, statuses, callback):
    """Append one call's records to the histories of the images still running and mark those that diverged."""
    steps = len(losses_per_step)
    for offset, parts in enumerate(losses_per_step):
        elapsed_s = call_start_s + (call_end_s - call_start_s) * (offset + 1) / steps
        for index, history in enumerate(histories):
            if statuses[index] == "diverged":
                continue
            total, style_part, content_part, tv_part = (float(v) for v in parts[:, index])
            record = IterationRecord(first_iteration + offset, total, style_part, content_part, tv_part, elapsed_s,
                                     size_px)
            history.append(record)
            if callback is not None:
                callback(index, record)
            if not np.isfinite(total) or total > DIVERGENCE_FACTOR * history[0].total_loss:
                statuses[index] = "diverged"


def _result(history, best_image, status, final_size_px):
    # An image that diverged at a coarse level has no full-size records; its best is then its best at any size.
    final = [r for r in history if r.size_px == final_size_px] or history
    finite = [r for r in final if np.isfinite(r.total_loss)]
    best = min(finite, key=lambda r: r.total_loss) if finite else None
    steps = [b.elapsed_s - a.elapsed_s for a, b in zip(final, final[1:])]
    return StylizeResult(
        image=deprocess(best_image),
        history=history,
        best_loss=best.total_loss if best else float("nan"),
        best_iteration=best.iteration if best else -1,
        final_loss=history[-1].total_loss if history else float("nan"),
        iterations=len(history),
        status=status,
        seconds_per_iteration=statistics.median(steps) if steps else float("nan"),
    )

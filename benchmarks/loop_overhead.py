"""Seconds per iteration of `stylize` against one bare VGG19 forward and input-gradient pass, same process.

    python benchmarks/loop_overhead.py [--sizes 256,512] [--iterations 20] [--repeats 3] [--steps-per-call K]
                                       [--precision auto|float32|bfloat16]

The bare pass is a `tf.function` computing the layers `stylize` uses and the
gradient of the sum of their activations with respect to the input image.
It has the same convolution work as a `stylize` update, without Gram
matrices, losses, optimizer or host round trip. The loss pass adds the
Gram matrices and losses of `stylecore.losses.total_loss`, so the
difference between it and a `stylize` update is the loop's own cost: optimizer,
clipping, best-image bookkeeping and the host round trip. Both are timed in wall seconds (`time.perf_counter`) and in CPU seconds
of this process (`time.process_time`, less disturbed by other processes on a
shared machine), alternating, after a warm-up. Each figure is the median of
`--repeats` measurements.
"""

import argparse
import time

import numpy as np

from _common import add_image_arguments, load_pair, median, print_table


def time_passes(extractor, content_rgb, style_rgb, calls: int = 5) -> tuple[tuple[float, float], tuple[float, float]]:
    """Mean (wall, CPU) seconds of the bare pass and of the loss pass at the content image's size."""
    import tensorflow as tf

    from stylecore import losses
    from stylecore.images import preprocess

    image = tf.constant(preprocess(content_rgb))
    content_targets, _ = extractor(image)
    _, style_features = extractor(tf.constant(preprocess(style_rgb)))
    style_grams = [losses.gram_matrix(f) for f in style_features]

    def make(with_loss: bool):
        @tf.function
        def forward_and_gradient(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                content_features, style_features = extractor(x)
                if with_loss:
                    total = losses.total_loss(content_features, style_features, content_targets, style_grams)[0]
                else:
                    total = tf.add_n([tf.reduce_sum(tf.cast(f, tf.float32)) for f in content_features + style_features])
            return tape.gradient(total, x)

        return forward_and_gradient

    timings = []
    for function in (make(False), make(True)):
        function(image).numpy()  # traces
        start_s, start_cpu_s = time.perf_counter(), time.process_time()
        for _ in range(calls):
            function(image).numpy()
        timings.append(((time.perf_counter() - start_s) / calls, (time.process_time() - start_cpu_s) / calls))
    return timings[0], timings[1]


def time_stylize(extractor, content_rgb, style_rgb, iterations: int, steps_per_call) -> tuple[float, float]:
    """Median (wall, CPU) seconds between consecutive updates of one Adam `stylize` run of 1 + `iterations` updates.

    The clocks are read in the per-record callback, so each interval holds a
    whole update with the loop's host work, while set-up and the first call,
    which traces, stay out.
    """
    from stylecore.optim import Adam
    from stylecore.transfer import TransferSettings, stylize

    extra = {} if steps_per_call is None else {"steps_per_call": steps_per_call}
    clocks = []
    stylize(extractor, content_rgb, style_rgb, Adam(), TransferSettings(iterations=1 + iterations, **extra),
            callback=lambda record: clocks.append((time.perf_counter(), time.process_time())))
    # With several updates per call, records arrive in bursts: spread each call's time over its updates.
    calls = [(a, b) for a, b in zip(clocks, clocks[1:]) if b[0] - a[0] > 1e-3]
    updates = len(clocks) - 1
    per_call = updates / len(calls)
    return (median((b[0] - a[0]) / per_call for a, b in calls), median((b[1] - a[1]) / per_call for a, b in calls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_image_arguments(parser)
    parser.add_argument("--sizes", default="256,512", help="comma-separated longer sides in pixels (default 256,512)")
    parser.add_argument("--iterations", type=int, default=20, help="updates timed per stylize measurement (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (default 3)")
    parser.add_argument("--steps-per-call", type=int, default=None,
                        help="updates per tf.function call (TransferSettings.steps_per_call); default: the library's default")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="VGG19 compute precision, as `stylize one --precision` (default auto)")
    args = parser.parse_args()

    from stylecore.features import FeatureExtractor
    from stylecore.weights import load_weights

    extractor = FeatureExtractor(load_weights(args.weights), precision=args.precision)
    print(f"precision {extractor.precision}")
    rows = []
    for size_px in (int(s) for s in args.sizes.split(",")):
        content_rgb, style_rgb = load_pair(args, size_px)
        time_stylize(extractor, content_rgb, style_rgb, 2, args.steps_per_call)  # warms up the kernels
        bare, loss, step = [], [], []
        for _ in range(args.repeats):  # alternating, so drift in the machine's speed hits all three
            bare_pass, loss_pass = time_passes(extractor, content_rgb, style_rgb)
            bare.append(bare_pass)
            loss.append(loss_pass)
            step.append(time_stylize(extractor, content_rgb, style_rgb, args.iterations, args.steps_per_call))
        bare_s, bare_cpu_s = median(b[0] for b in bare), median(b[1] for b in bare)
        loss_cpu_s = median(x[1] for x in loss)
        step_s, step_cpu_s = median(s[0] for s in step), median(s[1] for s in step)
        height, width = np.shape(content_rgb)[:2]
        rows.append([f"{width} x {height}", bare_s, step_s, step_s / bare_s, bare_cpu_s, loss_cpu_s, step_cpu_s,
                     loss_cpu_s / bare_cpu_s, step_cpu_s / bare_cpu_s])
    print_table(["content px", "bare pass s", "stylize s/update", "wall ratio", "bare pass CPU s", "loss pass CPU s",
                 "stylize CPU s/update", "loss / bare CPU", "update / bare CPU"], rows)


if __name__ == "__main__":
    main()

"""Seconds per iteration of `stylize` against one bare VGG19 forward and input-gradient pass, same process.

    python benchmarks/loop_overhead.py [--sizes 256,512] [--iterations 20] [--repeats 3] [--steps-per-call K]

The bare pass is a `tf.function` computing the layers `stylize` uses and the
gradient of the sum of their activations with respect to the input image.
It has the same convolution work as a `stylize` update, without Gram
matrices, losses, optimizer or host round trip. Both are timed in wall seconds (`time.perf_counter`) and in CPU seconds
of this process (`time.process_time`, less disturbed by other processes on a
shared machine), alternating, after a warm-up. Each figure is the median of
`--repeats` measurements.
"""

import argparse
import time

import numpy as np

from _common import add_image_arguments, load_pair, median, print_table


def time_bare_pass(extractor, content_rgb, calls: int = 5) -> tuple[float, float]:
    """Mean (wall, CPU) seconds of one forward pass plus input gradient at the content image's size."""
    import tensorflow as tf

    from stylecore.images import preprocess

    image = tf.constant(preprocess(content_rgb))

    @tf.function
    def forward_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            content_features, style_features = extractor(x)
            total = tf.add_n([tf.reduce_sum(f) for f in content_features + style_features])
        return tape.gradient(total, x)

    forward_and_gradient(image).numpy()  # traces
    start_s, start_cpu_s = time.perf_counter(), time.process_time()
    for _ in range(calls):
        forward_and_gradient(image).numpy()
    return (time.perf_counter() - start_s) / calls, (time.process_time() - start_cpu_s) / calls


def time_stylize(extractor, content_rgb, style_rgb, iterations: int, steps_per_call) -> tuple[float, float]:
    """(Wall, CPU) seconds per update of Adam `stylize`: a run of 1 + `iterations` minus a run of 1, per update.

    Subtracting the one-iteration run removes the set-up and tracing that every `stylize` call repeats.
    """
    from stylecore.optim import Adam
    from stylecore.transfer import TransferSettings, stylize

    extra = {} if steps_per_call is None else {"steps_per_call": steps_per_call}
    walls_s, cpus_s = [], []
    for total in (1, 1 + iterations):
        start_s, start_cpu_s = time.perf_counter(), time.process_time()
        stylize(extractor, content_rgb, style_rgb, Adam(), TransferSettings(iterations=total, **extra))
        walls_s.append(time.perf_counter() - start_s)
        cpus_s.append(time.process_time() - start_cpu_s)
    return (walls_s[1] - walls_s[0]) / iterations, (cpus_s[1] - cpus_s[0]) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_image_arguments(parser)
    parser.add_argument("--sizes", default="256,512", help="comma-separated longer sides in pixels (default 256,512)")
    parser.add_argument("--iterations", type=int, default=20, help="updates timed per stylize measurement (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (default 3)")
    parser.add_argument("--steps-per-call", type=int, default=None,
                        help="updates per tf.function call (TransferSettings.steps_per_call); default: the library's default")
    args = parser.parse_args()

    from stylecore.features import FeatureExtractor
    from stylecore.weights import load_weights

    extractor = FeatureExtractor(load_weights(args.weights))
    rows = []
    for size_px in (int(s) for s in args.sizes.split(",")):
        content_rgb, style_rgb = load_pair(args, size_px)
        time_stylize(extractor, content_rgb, style_rgb, 1, args.steps_per_call)  # warms up the kernels
        bare, step = [], []
        for _ in range(args.repeats):  # alternating, so drift in the machine's speed hits both
            bare.append(time_bare_pass(extractor, content_rgb))
            step.append(time_stylize(extractor, content_rgb, style_rgb, args.iterations, args.steps_per_call))
        bare_s, bare_cpu_s = median(b[0] for b in bare), median(b[1] for b in bare)
        step_s, step_cpu_s = median(s[0] for s in step), median(s[1] for s in step)
        height, width = np.shape(content_rgb)[:2]
        rows.append([f"{width} x {height}", bare_s, step_s, step_s / bare_s, bare_cpu_s, step_cpu_s, step_cpu_s / bare_cpu_s])
    print_table(["content px", "bare pass s", "stylize s/update", "wall ratio",
                 "bare pass CPU s", "stylize CPU s/update", "CPU ratio"], rows)


if __name__ == "__main__":
    main()

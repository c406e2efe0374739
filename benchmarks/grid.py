"""Throughput of B Adam configurations of one pair as one `stylize_batch` run against B sequential `stylize` runs.

    python benchmarks/grid.py [--batch-sizes 1,4,8] [--size 256] [--iterations 10] [--repeats 3] [--precision auto]
    python benchmarks/grid.py --only batched --batch-sizes 8   # one path, for timing whole processes

Each figure is the median wall time, from `time.perf_counter`, of whole
library calls in one process (targets, tracing and the loop), after one
warm-up of each path. The B configurations differ in learning rate.
"""

import argparse
import time

import numpy as np

from _common import add_image_arguments, load_pair, median, print_table


def learning_rates(batch_size: int) -> list[float]:
    """Spread `batch_size` learning rates evenly over 1-10 pixel values per step."""
    return [float(v) for v in np.linspace(1.0, 10.0, batch_size)]


def time_sequential(extractor, content_rgb, style_rgb, settings, batch_size: int) -> float:
    from stylecore.optim import Adam
    from stylecore.transfer import stylize

    start = time.perf_counter()
    for rate in learning_rates(batch_size):
        stylize(extractor, content_rgb, style_rgb, Adam(learning_rate=rate), settings)
    return time.perf_counter() - start


def time_batched(extractor, content_rgb, style_rgb, settings, batch_size: int) -> float:
    from stylecore.optim import Adam
    from stylecore.transfer import stylize_batch

    start = time.perf_counter()
    stylize_batch(extractor, content_rgb, style_rgb, [Adam(learning_rate=r) for r in learning_rates(batch_size)], settings)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_image_arguments(parser)
    parser.add_argument("--batch-sizes", default="1,4,8", help="comma-separated B values (default 1,4,8)")
    parser.add_argument("--size", type=int, default=256, help="longer side in pixels (default 256)")
    parser.add_argument("--iterations", type=int, default=10, help="updates per run (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed measurements per figure (default 3)")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="VGG19 compute precision (default auto)")
    parser.add_argument("--only", choices=["batched", "sequential"],
                        help="run this path once per batch size, untimed and without warm-up, then exit")
    args = parser.parse_args()

    from stylecore.features import FeatureExtractor
    from stylecore.transfer import TransferSettings
    from stylecore.weights import load_weights

    extractor = FeatureExtractor(load_weights(args.weights), precision=args.precision)
    content_rgb, style_rgb = load_pair(args, args.size)
    settings = TransferSettings(iterations=args.iterations)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.only is not None:
        run = time_batched if args.only == "batched" else time_sequential
        for batch_size in batch_sizes:
            run(extractor, content_rgb, style_rgb, settings, batch_size)
        return

    time_sequential(extractor, content_rgb, style_rgb, settings, 1)  # warms up the kernels
    time_batched(extractor, content_rgb, style_rgb, settings, 2)

    rows = []
    for batch_size in batch_sizes:
        sequential_s, batched_s = [], []
        for _ in range(args.repeats):  # alternating, so drift in the machine's speed hits both
            sequential_s.append(time_sequential(extractor, content_rgb, style_rgb, settings, batch_size))
            batched_s.append(time_batched(extractor, content_rgb, style_rgb, settings, batch_size))
        sequential, batched = median(sequential_s), median(batched_s)
        rows.append([batch_size, sequential, batched, sequential / batched])
    height, width = np.shape(content_rgb)[:2]
    print(f"{width} x {height} px, {args.iterations} Adam updates per configuration, {extractor.precision} VGG19 passes")
    print_table(["B", "sequential s", "batched s", "throughput ratio"], rows)


if __name__ == "__main__":
    main()

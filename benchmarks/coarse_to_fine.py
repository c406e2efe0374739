"""Best full-size loss and wall time of coarse-to-fine schedules against a run at full size only.

    python benchmarks/coarse_to_fine.py [--size 512] [--schedules "100;256:100+30"] [--repeats 2]
                                        [--precision auto|float32|bfloat16] [--learning-rate 5]

A schedule is `N` (N Adam updates at full size) or `S1:N1,S2:N2+N`
(N1 updates at S1 px, then N2 at S2 px, then N at full size). Every
schedule ends at full size with the same loss, so their best losses compare
directly. The last columns give how long the first schedule took to reach
each schedule's best loss. Each figure is the median over `--repeats` runs,
taken in turn after one warm-up run of every size. Wall time is the whole
`stylize` call: targets, tracing at each size and the loop. Writes each
schedule's image to `--save-dir` when given, to compare by eye.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from _common import add_image_arguments, load_pair, median, print_table


def parse_schedule(text: str) -> tuple[tuple[int, ...], int, int]:
    """Return (coarse sizes, coarse iterations, full-size iterations) of `text`. Coarse levels share one count."""
    coarse, _, full = text.rpartition("+")
    levels = [tuple(int(v) for v in level.split(":")) for level in coarse.split(",") if level]
    counts = {count for _, count in levels}
    if len(counts) > 1:
        raise SystemExit(f"invalid schedule {text!r}: give every coarse size the same number of updates")
    return tuple(size for size, _ in levels), counts.pop() if counts else 1, int(full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_image_arguments(parser)
    parser.add_argument("--size", type=int, default=512, help="full size, longer side in pixels (default 512)")
    parser.add_argument("--schedules", default="100;256:100+30",
                        help="semicolon-separated schedules (default '100;256:100+30')")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per schedule (default 2)")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="VGG19 compute precision (default auto)")
    parser.add_argument("--learning-rate", type=float, default=5.0, help="Adam learning rate (default 5)")
    parser.add_argument("--init", default="content", choices=("content", "noise", "style"),
                        help="starting image (default content)")
    parser.add_argument("--save-dir", help="write each schedule's best image here as PNG")
    args = parser.parse_args()

    from stylecore.features import FeatureExtractor
    from stylecore.images import encode_png
    from stylecore.optim import Adam
    from stylecore.transfer import TransferSettings, stylize
    from stylecore.weights import load_weights

    extractor = FeatureExtractor(load_weights(args.weights), precision=args.precision)
    content_rgb, style_rgb = load_pair(args, args.size)
    schedules = [s.strip() for s in args.schedules.split(";")]
    settings = {}
    for text in schedules:
        coarse_sizes, coarse_iterations, iterations = parse_schedule(text)
        settings[text] = TransferSettings(iterations=iterations, coarse_sizes=coarse_sizes,
                                          coarse_iterations=coarse_iterations, init=args.init)
    # Warm-up: one update at every size the schedules use.
    sizes = sorted({size for s in settings.values() for size in s.coarse_sizes})
    stylize(extractor, content_rgb, style_rgb, Adam(), TransferSettings(iterations=2, coarse_sizes=tuple(sizes),
                                                                         coarse_iterations=2))

    timings = {text: [] for text in schedules}
    results = {}
    for _ in range(args.repeats):
        for text in schedules:  # in turn, so drift in the machine's speed hits every schedule
            start = time.perf_counter()
            results[text] = stylize(extractor, content_rgb, style_rgb, Adam(learning_rate=args.learning_rate),
                                    settings[text])
            timings[text].append(time.perf_counter() - start)

    baseline = schedules[0]
    rows = []
    for index, text in enumerate(schedules):
        result = results[text]
        full = [r for r in result.history if r.size_px == max(result.image.shape[:2])]
        reached = next((r for r in results[baseline].history if r.total_loss <= result.best_loss), None)
        rows.append([text, len(result.history) - len(full), len(full), median(timings[text]),
                     median(timings[text]) / median(timings[baseline]), result.best_loss,
                     result.best_loss / results[baseline].best_loss,
                     reached.iteration if reached else "not reached", reached.elapsed_s if reached else "-"])
        if args.save_dir:
            Path(args.save_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.save_dir) / f"schedule_{index}.png").write_bytes(encode_png(result.image))
    height, width = np.shape(content_rgb)[:2]
    print(f"{width} x {height} px, Adam learning rate {args.learning_rate:g}, {args.init} start, "
          f"{extractor.precision} VGG19 passes")
    print_table(["schedule", "coarse updates", "full-size updates", "wall s", "time / first", "best full-size loss",
                 "loss / first", "first schedule reaches it at update", "after s"], rows)


if __name__ == "__main__":
    main()

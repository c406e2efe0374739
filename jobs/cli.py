"""The `stylize` command: `stylize one` for a single image, `stylize run` for a manifest on Ray.

    stylize one CONTENT STYLE -o OUT.png [--image-size PX] [--iterations N] [--optimizer adam] ...
    stylize run MANIFEST [--max-actors N] ...

Every default comes from `stylecore` (TransferSettings, the optimizer
signatures, the image size), so the command and the manifest agree.
"""

import argparse
import dataclasses
import logging
import math
import sys
import typing

from stylecore import optim
from stylecore.features import PRECISIONS
from stylecore.losses import default_style_layer_weights
from stylecore.images import DEFAULT_MAX_SIZE_PX
from stylecore.transfer import TransferSettings
from stylecore.weights import WEIGHT_SOURCES

from jobs.manifest import IMAGE_SIZE_RANGE_PX

logger = logging.getLogger("jobs.cli")

EXIT_BAD_INPUT = 2

SETTING_HELP = {
    "content_layers": "comma-separated VGG19 layers for the content loss",
    "style_layers": "comma-separated VGG19 layers for the style loss",
    "style_layer_weights": "comma-separated weight of each style layer",
    "content_weight": "weight of the content loss",
    "style_weight": "weight of the style loss",
    "tv_weight": "weight of the total-variation loss",
    "iterations": "optimizer steps at full size; coarse sizes add their own",
    "time_budget_s": "stop after this many seconds",
    "init": "initial image: content, noise or style",
    "seed": "random seed for noise initialization and random weights",
    "steps_per_call": "optimizer updates per TensorFlow call; the time budget and progress act once per call",
    "coarse_sizes": "comma-separated longer sides in pixels to optimize at first, smallest first, each starting from "
                    "the previous result upscaled (coarse to fine)",
    "coarse_iterations": "optimizer steps at each coarse size",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="stylize", description="Gatys neural style transfer.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_one_parser(commands)
    run = commands.add_parser("run", help="run a manifest on Ray (same as python -m jobs.stylize)")
    run.add_argument("manifest")
    run.add_argument("rest", nargs=argparse.REMAINDER, help="options of python -m jobs.stylize")

    verify = commands.add_parser("verify", help="check an output folder for missing, duplicate or corrupt results")
    verify.add_argument("output")
    report = commands.add_parser("report", help="rebuild report.html of an output folder from its Parquet files")
    report.add_argument("output")

    args = parser.parse_args(argv)
    if args.command == "run":
        from jobs import stylize

        return stylize.main([args.manifest, *args.rest])
    if args.command == "verify":
        from jobs import verify as verify_module

        return verify_module.main([args.output])
    if args.command == "report":
        from jobs import report as report_module

        return report_module.main([args.output])
    return run_one(args)


def _add_one_parser(commands) -> None:
    one = commands.add_parser("one", help="stylize one content image with one style image")
    one.add_argument("content", help="content image: a path or a file:// URI")
    one.add_argument("style", help="style image: a path or a file:// URI")
    one.add_argument("-o", "--output", required=True,
                     help="where to write the stylized image; the extension picks the format (.png, .jpg, ...)")
    low, high = IMAGE_SIZE_RANGE_PX
    one.add_argument("--image-size", type=_int_in_range(low, high), default=DEFAULT_MAX_SIZE_PX, metavar="PX",
                     help=f"longer side of the result in pixels, {low} to {high} (default {DEFAULT_MAX_SIZE_PX})")
    one.add_argument("--weights", default="auto", help=f"VGG19 weights: {', '.join(WEIGHT_SOURCES)}, or a path or URI of Keras' .h5 file (default auto)")
    one.add_argument("--optimizer", default="adam", choices=list(optim.OPTIMIZERS), help="optimizer (default adam)")
    one.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                     help="compute precision of the VGG19 passes; losses stay float32. auto: bfloat16 where the "
                          "CPU or GPU computes it natively, else float32 (default auto)")

    for field in dataclasses.fields(TransferSettings):
        _add_setting_option(one, field)

    hyperparameters = sorted({key for name in optim.OPTIMIZERS for key in optim.hyperparameter_defaults(name)})
    group = one.add_argument_group("optimizer hyperparameters (defaults depend on --optimizer)")
    for key in hyperparameters:
        defaults = {name: optim.hyperparameter_defaults(name).get(key) for name in optim.OPTIMIZERS}
        shown = ", ".join(f"{name} {value:g}" for name, value in defaults.items() if value is not None)
        group.add_argument(f"--{key.replace('_', '-')}", dest=f"hp_{key}", type=float, default=None, metavar="VALUE",
                           help=f"default: {shown}")


def _add_setting_option(parser, field) -> None:
    flag = f"--{field.name.replace('_', '-')}"
    default = field.default
    base = typing.get_args(field.type)[0] if typing.get_origin(field.type) in (tuple, typing.Union) else field.type
    if typing.get_origin(field.type) is tuple:
        def convert(text, cast=base):
            return tuple(cast(v) for v in text.split(",") if v)

        # argparse names the type in its error: "invalid comma-separated int list value: 'abc'".
        convert.__name__ = f"comma-separated {base.__name__} list"
        default_text = ",".join(str(v) for v in default) or "none"
    else:
        convert = base if base in (int, float, str) else float
        default_text = default
    if field.name == "style_layer_weights":
        # Filled in from the number of style layers when not given.
        default, default_text = None, "1,2,...,n for n style layers"
    parser.add_argument(flag, dest=field.name, type=convert, default=default,
                        help=f"{SETTING_HELP.get(field.name, field.name)} (default: {default_text})")


def _int_in_range(low: int, high: int):
    """Return an argparse type that accepts whole numbers from `low` to `high`."""
    def convert(text):
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low} to {high}")
        return value

    convert.__name__ = "whole number"
    return convert


def run_one(args) -> int:
    """Stylize one pair with a progress bar; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from PIL import Image
    from tqdm import tqdm

    from stylecore.features import FeatureExtractor
    from stylecore.images import ImageError, encode_png, load_image
    from stylecore.transfer import check_coarse_sizes, stylize
    from stylecore.weights import WeightsError, load_weights

    hyperparameters = {k[3:]: v for k, v in vars(args).items() if k.startswith("hp_") and v is not None}
    try:
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TransferSettings)}
        if values["style_layer_weights"] is None:
            values["style_layer_weights"] = default_style_layer_weights(len(values["style_layers"]))
        settings = TransferSettings(**values)
        for key, value in hyperparameters.items():
            message = optim.check_hyperparameter(key, value)
            if message:
                raise ValueError(f"--{key.replace('_', '-')} {message}")
        optimizer = optim.make_optimizer(args.optimizer, **hyperparameters)
        content = load_image(args.content, args.image_size)
        style = load_image(args.style, args.image_size)
        check_coarse_sizes(content.shape, style.shape, settings)
        extractor = FeatureExtractor(load_weights(args.weights, seed=settings.seed),
                                     settings.content_layers, settings.style_layers, precision=args.precision)
    except (ImageError, WeightsError, ValueError) as error:
        print(f"stylize: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT

    with tqdm(total=settings.max_updates, unit="it", desc="stylizing") as bar:
        def report(record):
            if settings.coarse_sizes:
                bar.set_description(f"stylizing at {record.size_px} px", refresh=False)
            bar.set_postfix(loss=f"{record.total_loss:.4g}", refresh=False)
            bar.update(1)

        result = stylize(extractor, content, style, optimizer, settings, callback=report)

    try:
        if args.output.lower().endswith(".png"):
            with open(args.output, "wb") as file:
                file.write(encode_png(result.image))
        else:
            # Pillow picks the format from the extension (.jpg, .webp, .tif, ...).
            Image.fromarray(result.image).save(args.output)
    except (OSError, ValueError) as error:
        print(f"stylize: error: cannot write {args.output}: {getattr(error, 'strerror', None) or error}; "
              "use a .png, .jpg, .webp or .tif file name in an existing folder", file=sys.stderr)
        return EXIT_BAD_INPUT

    height, width = result.image.shape[:2]
    print(f"{result.status}: {args.output} ({width} x {height} px), {result.iterations} iterations, "
          f"best loss {result.best_loss:.4g} at iteration {result.best_iteration}"
          + ("" if math.isnan(result.seconds_per_iteration) else f", {result.seconds_per_iteration:.3f} s/iteration"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

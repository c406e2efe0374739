"""Iterations per second and achieved TFLOP/s of batched Adam stylization per precision and batch size on a GPU.

    python benchmarks/gpu.py [--size 512] [--batch-sizes 1,8] [--precisions fp32,tf32,bf16] [--iterations 50]

Precisions: fp32 turns TF32 off. tf32 turns TF32 matrix units on, which TF
does by default on NVIDIA Ampere and newer. bf16 is the library's
`precision="bfloat16"`: VGG19 layers in bfloat16, Gram matrices, losses and
the optimized image in float32. Without a GPU the script runs at
`--cpu-size` pixels, so it can be checked on any machine, leaves out tf32,
and bf16 too where the CPU lacks bfloat16 arithmetic, and prints what it
skipped.

FLOPs per image and update are an estimate: twice the forward convolution
FLOPs of the VGG19 layers that `stylize` runs (forward pass plus the gradient
with respect to the input), with Gram matrices, losses and the update left
out. Seconds per update come from the wall time of a run of 1 + N updates
minus a run of 1 update, measured with `time.perf_counter`, so tracing and
set-up are excluded.
"""

import argparse
import time

import numpy as np

from _common import add_image_arguments, load_pair, print_table

PRECISIONS = ("fp32", "tf32", "bf16")
GPU_ONLY_PRECISIONS = ("tf32",)


def forward_conv_flops(extractor, height: int, width: int) -> float:
    """Count 2 · k² · C_in · C_out multiply-adds per output position over the convolutions the extractor runs."""
    import keras

    model = extractor.model
    flops = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.MaxPooling2D):
            height, width = height // 2, width // 2
        elif isinstance(layer, keras.layers.Conv2D):
            kernel_height, kernel_width, channels_in, channels_out = layer.kernel.shape
            flops += 2.0 * height * width * kernel_height * kernel_width * channels_in * channels_out
    return flops


def build_extractor(weights, precision: str):
    """Set TF32 for `precision` and build a feature extractor with the matching VGG19 precision."""
    import tensorflow as tf

    from stylecore.features import FeatureExtractor

    tf.config.experimental.enable_tensor_float_32_execution(precision == "tf32")
    return FeatureExtractor(weights, precision="bfloat16" if precision == "bf16" else "float32")


def seconds_per_update(extractor, content_rgb, style_rgb, batch_size: int, iterations: int) -> float:
    from stylecore.optim import Adam
    from stylecore.transfer import TransferSettings, stylize_batch

    optimizers = lambda: [Adam(learning_rate=rate) for rate in np.linspace(1.0, 10.0, batch_size)]
    walls_s = []
    for total in (1, 1 + iterations):
        settings = TransferSettings(iterations=total, steps_per_call=iterations)
        start = time.perf_counter()
        stylize_batch(extractor, content_rgb, style_rgb, optimizers(), settings)
        walls_s.append(time.perf_counter() - start)
    return (walls_s[1] - walls_s[0]) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_image_arguments(parser)
    parser.add_argument("--size", type=int, default=512, help="longer side in pixels on a GPU (default 512)")
    parser.add_argument("--cpu-size", type=int, default=64, help="longer side in pixels without a GPU (default 64)")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated, of fp32, tf32, bf16")
    parser.add_argument("--iterations", type=int, default=50, help="timed updates per figure (default 50)")
    args = parser.parse_args()

    import tensorflow as tf

    from stylecore.weights import load_weights

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    precisions = args.precisions.split(",")
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"unknown precision {', '.join(unknown)}; valid: {', '.join(PRECISIONS)}")
    if not gpus:
        from stylecore.features import resolve_precision

        unsupported = GPU_ONLY_PRECISIONS + (("bf16",) if resolve_precision("auto") != "bfloat16" else ())
        skipped = [p for p in precisions if p in unsupported]
        precisions = [p for p in precisions if p not in unsupported]
        print(f"No GPU found: running on CPU at {args.cpu_size} px; skipped {', '.join(skipped) or 'nothing'}.")
    size_px = args.size if gpus else args.cpu_size
    device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"

    weights = load_weights(args.weights)
    content_rgb, style_rgb = load_pair(args, size_px)
    height, width = np.shape(content_rgb)[:2]
    rows = []
    for precision in precisions:
        extractor = build_extractor(weights, precision)
        flops_per_image = 2.0 * forward_conv_flops(extractor, height, width)
        seconds_per_update(extractor, content_rgb, style_rgb, 1, 2)  # warms up the kernels
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            step_s = seconds_per_update(extractor, content_rgb, style_rgb, batch_size, args.iterations)
            rows.append([precision, batch_size, 1.0 / step_s, batch_size / step_s, flops_per_image * batch_size / step_s / 1e12])
    print(f"{device}, {width} x {height} px, Adam, estimated {flops_per_image / 1e9:.1f} GFLOP per image and update")
    print_table(["precision", "batch", "updates/s", "image updates/s", "TFLOP/s"], rows)


if __name__ == "__main__":
    main()

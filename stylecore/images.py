"""Image loading, VGG19 preprocessing and PNG encoding.

Two tensor layouts cross this module's boundary:

- RGB images: height x width x 3, float32 in 0-255 (from `load_image`) or
  uint8 (from `deprocess`), channels in R, G, B order.
- VGG19 input: 1 x height x width x 3 float32, channels in B, G, R order with
  the ImageNet mean subtracted, the "caffe" convention the Keras VGG19 weights
  were trained with.
"""

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

# ImageNet channel means in B, G, R order, as Keras' `caffe` preprocessing uses.
IMAGENET_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)

DEFAULT_MAX_SIZE_PX = 512


class ImageError(ValueError):
    """An image source that cannot be read or decoded."""


def load_image(source: str | os.PathLike | bytes, max_size: int = DEFAULT_MAX_SIZE_PX) -> np.ndarray:
    """Load an image and resize it so that its longer side is `max_size` pixels.

    Args:
        source: a local path, or the encoded file's bytes.
        max_size: the longer side of the result in pixels. Smaller images are
            scaled up, so every image of a run has the same scale.

    Returns:
        RGB, height x width x 3, float32 in 0-255.

    Raises:
        ImageError: the file is missing or is not a decodable image.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    data = source if isinstance(source, bytes) else _read_file(name)

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as error:
        raise ImageError(f"{name}: not a readable image ({error}); provide a PNG, JPEG, WebP, TIFF or BMP file") from error

    return np.asarray(_resize(rgb, max_size), dtype=np.float32)


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found; check the path") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot read file ({error.strerror})") from error


def _resize(image: Image.Image, max_size: int) -> Image.Image:
    width, height = image.size
    scale = max_size / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """Convert an RGB image (H x W x 3, 0-255) to VGG19 input (1 x H x W x 3, BGR, mean subtracted)."""
    bgr = np.asarray(rgb, dtype=np.float32)[..., ::-1]
    return (bgr - IMAGENET_MEAN_BGR)[np.newaxis]


def deprocess(x) -> np.ndarray:
    """Convert VGG19 input back to a uint8 RGB image, height x width x 3.

    Accepts 1 x H x W x 3 or H x W x 3 in the layout `preprocess` returns, as
    a NumPy array or a tensor. Values outside 0-255 are clipped.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"expected 1 x H x W x 3 or H x W x 3 BGR values, got shape {x.shape}")

    rgb = (x + IMAGENET_MEAN_BGR)[..., ::-1]
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode a uint8 RGB image (H x W x 3) as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()

"""Image loading, VGG19 preprocessing and PNG encoding.

Two tensor layouts cross this module's boundary:

- RGB images: height x width x 3, float32 in 0-255 (from `load_image`) or
  uint8 (from `deprocess`), channels in R, G, B order.
- VGG19 input: 1 x height x width x 3 float32, channels in B, G, R order with
  the ImageNet mean subtracted, the "caffe" convention the Keras VGG19 weights
  were trained with.

`load_image` accepts PNG, JPEG, WebP, TIFF, BMP and GIF files in any pixel mode
Pillow decodes, and turns each into sRGB the same way:

- EXIF orientation is applied, so the array is upright as a viewer shows it.
- Animated GIF, WebP and PNG files and multi-page TIFFs give their first frame.
- 16-bit and 32-bit samples are scaled to 0-255 from their full range (see
  `_scale_to_8_bit`).
- An embedded ICC profile is converted to sRGB with LittleCMS.
- Transparent pixels are composited onto `DEFAULT_BACKGROUND_RGB`.

It raises one `ImageError` line that names the source, the problem and the fix
for missing, empty or unreadable files and for directories. It does the same for
data that is not a supported image, truncated or corrupt data, images over
`MAX_IMAGE_PIXELS`, and aspect ratios so extreme that the shorter side would
fall below `min_size` (default `MIN_SIZE_PX`).
"""

import io
import logging
import os
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

# ImageNet channel means in B, G, R order, as Keras' `caffe` preprocessing uses.
IMAGENET_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)

DEFAULT_MAX_SIZE_PX = 512

# The default content and style layers (up to block5_conv2) sit after four of
# VGG19's five pooling layers, which halve the image each time. A side shorter
# than 2**4 = 16 px leaves them no pixels. Choosing block5_pool needs min_size=32.
MIN_SIZE_PX = 16

# Decoding limit, checked against the header before any pixel is decoded.
# 64 million pixels covers 61-megapixel camera photos and takes about 192 MB as
# 8-bit RGB. Pillow's own limit (`PIL.Image.MAX_IMAGE_PIXELS`, 89,478,485 by
# default) only warns below twice its value, so it is no defence on its own.
MAX_IMAGE_PIXELS = 64_000_000

# Colour that transparent pixels are composited onto: white, as most image
# viewers show transparency on a page.
DEFAULT_BACKGROUND_RGB = (255, 255, 255)

SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
_FORMAT_LIST = "PNG, JPEG, WebP, TIFF, BMP or GIF"

# File signatures, to tell a corrupt header of a supported format from data
# that is not an image at all.
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}

_SRGB_PROFILE = ImageCms.createProfile("sRGB")


class ImageError(ValueError):
    """An image source that cannot be read or decoded, or that is unfit for style transfer."""


def load_image(
    source: str | os.PathLike | bytes,
    max_size: int = DEFAULT_MAX_SIZE_PX,
    *,
    min_size: int = MIN_SIZE_PX,
    max_pixels: int = MAX_IMAGE_PIXELS,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND_RGB,
) -> np.ndarray:
    """Load an image as sRGB and resize it so that its longer side is `max_size` pixels.

    Args:
        source: a local path, a URI that `pyarrow.fs` opens (`file://`,
            `s3://`, `gs://`), or the encoded file's bytes.
        max_size: the longer side of the result in pixels. Smaller images are
            scaled up with the same Lanczos filter, so every image of a run has
            the same scale. A 1 x 1 image becomes a flat max_size x max_size one.
        min_size: the shortest side in pixels the result may have. The default
            is what the default VGG19 layers need (see `MIN_SIZE_PX`).
        max_pixels: the largest width x height accepted, read from the file's
            header before decoding.
        background: the RGB colour, 0-255, that transparent pixels are
            composited onto.

    Returns:
        RGB, height x width x 3, float32 in 0-255.

    Raises:
        ImageError: the source is missing, unreadable, not a supported image,
            truncated or corrupt, over `max_pixels`, or so elongated that its
            shorter side would be under `min_size` pixels.
        ValueError: `max_size` is smaller than `min_size`.
    """
    if max_size < min_size:
        raise ValueError(f"max_size {max_size} px is below min_size {min_size} px. Pass a max_size of at least {min_size}")

    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    data = bytes(source) if isinstance(source, (bytes, bytearray)) else _read_source(name)
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes). Re-export or re-download the image.")

    with _open_image(name, data) as image:
        _check_size(name, image.size, max_size, min_size, max_pixels)
        _verify_checksums(name, image.format, data)
        rgb = _decode_to_rgb(name, image, background)

    return np.asarray(_resize(rgb, max_size), dtype=np.float32)


def _read_source(name: str) -> bytes:
    if "://" in name:
        return _read_uri(name)
    try:
        return Path(name).read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found. Check the path.") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image file. Pass the path of an image file.") from None
    except OSError as error:
        raise ImageError(f"{name}: cannot read the file ({error.strerror}). Check that it exists and is readable.") from error


def _read_uri(uri: str) -> bytes:
    # NOTE: no retry here. pyarrow's S3 client retries itself (3 attempts by
    # default in pyarrow 26) and its GCS client retries until `retry_time_limit`.
    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    except (pa.ArrowException, OSError) as error:
        raise ImageError(f"{uri}: invalid or unsupported URI ({_one_line(error)}). "
                         "Use a local path or a file://, s3:// or gs:// URI.") from error

    try:
        info = filesystem.get_file_info(path)
        if info.type == pyarrow.fs.FileType.NotFound:
            raise ImageError(f"{uri}: file not found. Check the URI.")
        if info.type == pyarrow.fs.FileType.Directory:
            raise ImageError(f"{uri}: is a directory, not an image file. Pass the URI of an image file.")
        with filesystem.open_input_file(path) as stream:
            return stream.read()
    except (pa.ArrowException, OSError) as error:
        raise ImageError(f"{uri}: cannot read the file ({_one_line(error)}). "
                         "Check the URI and the storage credentials.") from error


def _open_image(name: str, data: bytes) -> Image.Image:
    """Open the image and read only its header. `Image.load` decodes the pixels later."""
    try:
        return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as error:
        # Pillow raises this itself above twice its global limit, before `_check_size` can run.
        raise ImageError(f"{name}: image dimensions exceed the decoding limit ({_one_line(error)}). "
                         "Downscale the image before loading it.") from error
    except UnidentifiedImageError as error:
        sniffed = _sniff_format(data)
        if sniffed is None:
            raise ImageError(f"{name}: not a {_FORMAT_LIST} image (format not recognized). "
                             "Convert it to one of these formats.") from error
        raise ImageError(f"{name}: corrupt {sniffed} header (Pillow cannot parse it). "
                         "Re-export or re-download the image.") from error
    except (OSError, EOFError, ValueError, struct.error) as error:
        raise ImageError(f"{name}: truncated or corrupt {_sniff_format(data)} data ({_one_line(error)}). "
                         "Re-export or re-download the image.") from error


def _sniff_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for signature, fmt in _SIGNATURES.items() if data.startswith(signature)), None)


def _check_size(name: str, size: tuple[int, int], max_size: int, min_size: int, max_pixels: int) -> None:
    """Reject images over `max_pixels` and images whose shorter side would end below `min_size`."""
    width, height = size
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width} x {height} = {width * height:,} pixels exceeds max_pixels {max_pixels:,} "
                         "(a possible decompression bomb). Downscale the image or raise max_pixels.")

    resized = _resized_size(width, height, max_size)
    if min(resized) < min_size:
        raise ImageError(f"{name}: aspect ratio {width}:{height} is too extreme. After resizing to {resized[0]} x "
                         f"{resized[1]} px the shorter side is below min_size {min_size} px that the VGG19 layers "
                         "need. Crop the image closer to square or raise max_size.")


def _verify_checksums(name: str, image_format: str, data: bytes) -> None:
    """Check the CRC of every PNG chunk, which Pillow's decoder skips for image data."""
    if image_format != "PNG":
        return
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as probe:
            probe.verify()
    except (OSError, SyntaxError, EOFError) as error:
        raise ImageError(f"{name}: corrupt PNG data ({_one_line(error)}). Re-export or re-download the image.") from error


def _decode_to_rgb(name: str, image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Decode the first frame fully and convert it to upright sRGB without alpha."""
    # NOTE: strict decoding relies on ImageFile.LOAD_TRUNCATED_IMAGES staying
    # False (Pillow's default). This module never sets it.
    try:
        image.load()
        icc_profile = image.info.get("icc_profile")
        # Read before exif_transpose, whose copy loses the TIFF tags.
        integer_full_scale = _integer_full_scale(image)
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, EOFError, ValueError) as error:
        raise ImageError(f"{name}: truncated or corrupt {image.format} data ({_one_line(error)}). "
                         "Re-export or re-download the image.") from error

    image = _scale_to_8_bit(name, image, integer_full_scale)
    color, alpha = _split_alpha(image)
    rgb = _to_srgb(name, color, icc_profile)
    if alpha is None:
        return rgb

    # Straight-alpha "over" compositing: alpha * colour + (1 - alpha) * background.
    return Image.composite(rgb, Image.new("RGB", rgb.size, background), alpha)


def _scale_to_8_bit(name: str, image: Image.Image, integer_full_scale: float) -> Image.Image:
    """Convert high-bit-depth, 1-bit and palette images to an 8-bit mode with or without alpha.

    Integer samples are scaled from their type's full range: 16-bit to 65535,
    32-bit TIFF to 2**31 - 1 (signed) or 2**32 - 1 (unsigned), with negative
    values clipped to 0. Float samples are read as 0.0-1.0 when none exceeds
    1.0 and as 0-255 otherwise (Pillow's own convert("F") gives 0-255).
    Pillow already reads 16-bit RGB and RGBA files as 8-bit modes, keeping the
    high byte of each sample.
    """
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        samples = np.asarray(image, dtype=np.float64)
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
        if mode == "F":
            full_scale = 1.0 if samples.size == 0 or samples.max() <= 1.0 else 255.0
        else:
            full_scale = integer_full_scale
        gray = np.clip(np.round(samples * (255.0 / full_scale)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L")

    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA", "L", "RGB") and "transparency" in image.info:
        return image.convert("LA" if mode == "L" else "RGBA")
    if mode in ("P", "YCbCr"):
        return image.convert("RGB")
    if mode in ("PA", "RGBa"):
        return image.convert("RGBA")
    if mode == "La":
        return image.convert("LA")
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK", "LAB"):
        return image
    raise ImageError(f"{name}: unsupported pixel mode {mode}. Convert the image to 8-bit RGB.")


def _integer_full_scale(image: Image.Image) -> float:
    """Return the largest sample value of an I or I;16 image's integer type."""
    if image.mode.startswith("I;16"):
        return 65535.0

    # Mode I: a TIFF states its sample type in tags 258 and 339. Other formats use I for 16-bit data.
    tags = getattr(image, "tag_v2", {})
    bits = tags.get(258, (16,))
    bits = bits[0] if isinstance(bits, tuple) else bits
    signed = tags.get(339, 1) in (2, (2,))
    return float(2 ** (bits - 1) - 1) if signed else float(2**bits - 1)


def _split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    if image.mode == "LA":
        return image.getchannel("L"), image.getchannel("A")
    if image.mode == "RGBA":
        return image.convert("RGB"), image.getchannel("A")
    return image, None


def _to_srgb(name: str, image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Convert an L, RGB, CMYK or LAB image to sRGB, through its ICC profile when it has one."""
    if image.mode == "LAB":
        return ImageCms.profileToProfile(image, ImageCms.createProfile("LAB"), _SRGB_PROFILE, outputMode="RGB")
    if not icc_profile:
        return image.convert("RGB")

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        return ImageCms.profileToProfile(image, profile, _SRGB_PROFILE, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as error:
        logger.warning("%s: ignoring the embedded ICC profile, which LittleCMS cannot use with mode %s (%s). "
                       "Reading the colours as sRGB.", name, image.mode, _one_line(error))
        return image.convert("RGB")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _resized_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(image: Image.Image, max_size: int) -> Image.Image:
    size = _resized_size(*image.size, max_size)
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

"""Write the image corpus: small files that `load_image` must accept or reject.

Every file is generated here with Pillow, NumPy or a few raw PNG chunks, so no
binary file is committed. Usage:

    from corpus import write_corpus          # under pytest, which puts tests/ on sys.path
    # or: from tests.corpus import write_corpus, from the repository root
    cases = write_corpus(tmp_path)            # writes the files, returns list[Case]
    for case in cases:
        if case.expected == ACCEPTED:
            case.check(load_image(case.path, max_size))   # raises AssertionError on a wrong result
        else:
            ...  # load_image(case.path) raises ImageError whose message contains case.error

Accepted images are 48 x 32 px (width x height) as a viewer shows them, split
into four flat quadrants, so one check catches swapped channels, flips,
rotations, wrong scaling of 16-bit and float samples, and ignored alpha. The
checks hold for any max_size from 64 px up.
"""

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .icc import adobe_rgb_like_profile, adobe_rgb_to_srgb

ACCEPTED = "accepted"
REJECTED = "rejected"

WIDTH_PX, HEIGHT_PX = 48, 32

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)
RGB_QUADRANTS = (RED, GREEN, BLUE, WHITE)  # top left, top right, bottom left, bottom right

# Largest difference of a quadrant's mean from its expected colour, per channel, 0-255.
LOSSLESS_TOLERANCE = 3.0
# JPEG at quality 95 without chroma subsampling.
JPEG_TOLERANCE = 12.0


@dataclass(frozen=True)
class Case:
    """One corpus file and the outcome `load_image` must produce for it.

    Attributes:
        name: a short identifier, usable as a test id.
        path: the file to pass to `load_image`. For the missing-file case it
            does not exist, and for the directory case it is a directory.
        expected: ACCEPTED or REJECTED.
        description: what the case covers, in a few words.
        error: for rejected cases, a fragment of the expected ImageError message.
        display_size: for accepted cases, (width, height) in px after EXIF orientation.
        quadrants: for accepted cases, the expected sRGB colours of the top
            left, top right, bottom left and bottom right quadrants.
        tolerance: the largest allowed difference of a quadrant's mean colour, per channel.
    """

    name: str
    path: Path
    expected: str
    description: str
    error: str = ""
    display_size: tuple[int, int] = (WIDTH_PX, HEIGHT_PX)
    quadrants: tuple[tuple[int, int, int], ...] = RGB_QUADRANTS
    tolerance: float = LOSSLESS_TOLERANCE

    def check(self, rgb: np.ndarray) -> None:
        """Assert that `load_image`'s result (H x W x 3 float32, 0-255) matches this accepted case."""
        assert self.expected == ACCEPTED, f"{self.name}: check() applies to accepted cases only"
        assert rgb.dtype == np.float32, f"{self.name}: dtype {rgb.dtype}, expected float32"
        assert rgb.ndim == 3, f"{self.name}: shape {rgb.shape}, expected H x W x 3"
        assert rgb.shape[2] == 3, f"{self.name}: shape {rgb.shape}, expected H x W x 3"

        height, width = rgb.shape[:2]
        scale = max(height, width) / max(self.display_size)
        expected_size = tuple(max(1, round(side * scale)) for side in self.display_size)
        assert (width, height) == expected_size, \
            f"{self.name}: {width} x {height} px, expected {expected_size[0]} x {expected_size[1]} (aspect kept)"

        for label, region, colour in zip(("top left", "top right", "bottom left", "bottom right"),
                                         _quadrant_interiors(rgb), self.quadrants):
            mean = region.reshape(-1, 3).mean(axis=0)
            assert np.all(np.abs(mean - colour) <= self.tolerance), \
                f"{self.name}: {label} quadrant mean {np.round(mean, 1).tolist()}, expected {list(colour)} ± {self.tolerance}"


def _quadrant_interiors(rgb: np.ndarray) -> list[np.ndarray]:
    """Return the middle 60 % of each quadrant, away from resampling ringing at the edges."""
    height, width = rgb.shape[:2]
    rows = [(round(height * 0.1), max(round(height * 0.4), round(height * 0.1) + 1)),
            (round(height * 0.6), max(round(height * 0.9), round(height * 0.6) + 1))]
    cols = [(round(width * 0.1), max(round(width * 0.4), round(width * 0.1) + 1)),
            (round(width * 0.6), max(round(width * 0.9), round(width * 0.6) + 1))]
    return [rgb[r0:r1, c0:c1] for r0, r1 in rows for c0, c1 in cols]


def write_corpus(folder: str | Path) -> list[Case]:
    """Write every corpus file into `folder` (created if missing) and return the cases, accepted first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for writer in (*_ACCEPTED_WRITERS, *_REJECTED_WRITERS):
        cases.extend(writer(folder))
    return cases


# Quadrant arrays -----------------------------------------------------------------------------


def quadrant_array(colours, dtype=np.uint8, width: int = WIDTH_PX, height: int = HEIGHT_PX) -> np.ndarray:
    """Return a height x width (x channels) array with one value per quadrant: TL, TR, BL, BR."""
    first = np.asarray(colours[0], dtype=dtype)
    array = np.empty((height, width, *first.shape), dtype=dtype)
    half_h, half_w = height // 2, width // 2
    array[:half_h, :half_w] = colours[0]
    array[:half_h, half_w:] = colours[1]
    array[half_h:, :half_w] = colours[2]
    array[half_h:, half_w:] = colours[3]
    return array


def _gray(levels) -> tuple[tuple[int, int, int], ...]:
    return tuple((level, level, level) for level in levels)


def _save(folder: Path, filename: str, image: Image.Image, **options) -> Path:
    path = folder / filename
    image.save(path, **options)
    return path


# Accepted cases: formats ----------------------------------------------------------------------


def _formats(folder: Path) -> list[Case]:
    rgb = Image.fromarray(quadrant_array(RGB_QUADRANTS))
    jpeg = {"quality": 95, "subsampling": 0}
    frames = [rgb, Image.new("RGB", rgb.size, BLACK)]
    return [
        Case("png_rgb", _save(folder, "rgb.png", rgb), ACCEPTED, "8-bit RGB PNG"),
        Case("jpeg_baseline", _save(folder, "baseline.jpg", rgb, **jpeg), ACCEPTED, "baseline JPEG",
             tolerance=JPEG_TOLERANCE),
        Case("jpeg_progressive", _save(folder, "progressive.jpg", rgb, progressive=True, **jpeg), ACCEPTED,
             "progressive JPEG", tolerance=JPEG_TOLERANCE),
        Case("bmp_rgb", _save(folder, "rgb.bmp", rgb), ACCEPTED, "24-bit BMP"),
        Case("webp_lossless", _save(folder, "lossless.webp", rgb, lossless=True), ACCEPTED, "lossless WebP"),
        Case("webp_lossy", _save(folder, "lossy.webp", rgb, quality=95), ACCEPTED, "lossy WebP",
             tolerance=JPEG_TOLERANCE),
        Case("tiff_lzw", _save(folder, "lzw.tiff", rgb, compression="tiff_lzw"), ACCEPTED, "LZW-compressed TIFF"),
        Case("tiff_multipage", _save(folder, "multipage.tiff", rgb, save_all=True, append_images=frames[1:]),
             ACCEPTED, "two-page TIFF, first page used"),
        Case("gif_animated", _save(folder, "animated.gif", rgb, save_all=True, append_images=frames[1:],
                                   duration=100, loop=0), ACCEPTED, "animated GIF, first frame used"),
        Case("webp_animated", _save(folder, "animated.webp", rgb, save_all=True, append_images=frames[1:],
                                    duration=100, lossless=True), ACCEPTED, "animated WebP, first frame used"),
        Case("tiny_1x1", _save(folder, "tiny.png", Image.new("RGB", (1, 1), RED)), ACCEPTED,
             "1 x 1 px, scaled up to a flat max_size x max_size image", display_size=(1, 1), quadrants=(RED,) * 4),
        Case("name_non_ascii", _save(folder, "café 画像 ß.png", rgb), ACCEPTED, "non-ASCII file name"),
        Case("name_with_spaces", _save(folder, "a name with spaces.png", rgb), ACCEPTED, "spaces in the file name"),
    ]


# Accepted cases: pixel modes ------------------------------------------------------------------


def _modes(folder: Path) -> list[Case]:
    gray_levels = (0, 85, 170, 255)
    palette_image = Image.fromarray(quadrant_array((0, 1, 2, 3)), mode="P")
    palette_image.putpalette([*RED, *GREEN, *BLUE, *BLACK])
    bilevel = Image.fromarray(quadrant_array((False, True, True, False), dtype=bool))
    cmyk = Image.fromarray(quadrant_array(((255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255))), mode="CMYK")
    return [
        Case("gray_l", _save(folder, "gray.png", Image.fromarray(quadrant_array(gray_levels))), ACCEPTED,
             "8-bit grayscale (L)", quadrants=_gray(gray_levels)),
        Case("bilevel_1", _save(folder, "bilevel.png", bilevel), ACCEPTED, "1-bit black and white (1)",
             quadrants=(BLACK, WHITE, WHITE, BLACK)),
        Case("palette_p", _save(folder, "palette.png", palette_image), ACCEPTED, "palette (P) without transparency",
             quadrants=(RED, GREEN, BLUE, BLACK)),
        Case("palette_p_transparent", _save(folder, "palette_transparent.png", palette_image, transparency=3),
             ACCEPTED, "palette (P) with a transparent index, composited onto white", quadrants=(RED, GREEN, BLUE, WHITE)),
        Case("cmyk_jpeg", _save(folder, "cmyk.jpg", cmyk, quality=95), ACCEPTED,
             "CMYK JPEG without ICC profile, converted with Pillow's naive formula",
             quadrants=((0, 255, 255), (255, 0, 255), (255, 255, 0), BLACK), tolerance=JPEG_TOLERANCE),
        *_alpha_modes(folder),
        *_deep_modes(folder),
    ]


def _alpha_modes(folder: Path) -> list[Case]:
    # 128/255 alpha over white: 255 * (1 - 128/255) = 127 where the colour channel is 0.
    gray_alpha = quadrant_array(((0, 255), (100, 0), (200, 255), (0, 128)))
    rgba = quadrant_array(((255, 0, 0, 255), (0, 0, 0, 0), (0, 0, 255, 128), (0, 255, 0, 255)))
    rgb_black_transparent = Image.fromarray(quadrant_array((RED, BLACK, BLUE, WHITE)))
    return [
        Case("gray_alpha_la", _save(folder, "gray_alpha.png", Image.fromarray(gray_alpha, mode="LA")), ACCEPTED,
             "grayscale with alpha (LA), composited onto white", quadrants=_gray((0, 255, 200, 127))),
        Case("rgba", _save(folder, "rgba.png", Image.fromarray(rgba, mode="RGBA")), ACCEPTED,
             "RGBA with opaque, transparent and half-transparent quadrants, composited onto white",
             quadrants=(RED, WHITE, (127, 127, 255), GREEN)),
        Case("rgb_trns", _save(folder, "rgb_trns.png", rgb_black_transparent, transparency=BLACK), ACCEPTED,
             "RGB PNG whose tRNS chunk makes black transparent", quadrants=(RED, WHITE, BLUE, WHITE)),
    ]


def _deep_modes(folder: Path) -> list[Case]:
    gray16 = Image.fromarray(quadrant_array((0, 16384, 32768, 65535), dtype=np.uint16))
    int32 = Image.fromarray(quadrant_array((0, 2**29, 2**30, 2**31 - 1), dtype=np.int32))
    float_unit = Image.fromarray(quadrant_array((0.0, 0.25, 0.5, 1.0), dtype=np.float32))
    float_255 = Image.fromarray(quadrant_array((0.0, 64.0, 128.0, 255.0), dtype=np.float32))
    # 16384 / 65535 * 255 = 63.75 and 32768 / 65535 * 255 = 127.5, so 64 and 128 within tolerance.
    scaled_levels = _gray((0, 64, 128, 255))
    rgb16 = quadrant_array(((65535, 0, 0), (0, 32768, 0), (0, 0, 65535), (65535, 65535, 65535)), dtype=np.uint16)
    return [
        Case("gray16_png", _save(folder, "gray16.png", gray16), ACCEPTED, "16-bit grayscale PNG (I;16)",
             quadrants=scaled_levels),
        Case("gray16_tiff", _save(folder, "gray16.tiff", gray16), ACCEPTED, "16-bit grayscale TIFF (I;16)",
             quadrants=scaled_levels),
        Case("rgb16_png", _write(folder / "rgb16.png", png_bytes(rgb16, bit_depth=16, colour_type=2)), ACCEPTED,
             "16-bit RGB PNG", quadrants=(RED, (0, 128, 0), BLUE, WHITE)),
        Case("int32_tiff", _save(folder, "int32.tiff", int32), ACCEPTED, "32-bit signed integer TIFF (I)",
             quadrants=scaled_levels),
        Case("float32_tiff_unit", _save(folder, "float_unit.tiff", float_unit), ACCEPTED,
             "32-bit float TIFF (F) in 0.0-1.0", quadrants=scaled_levels),
        Case("float32_tiff_255", _save(folder, "float_255.tiff", float_255), ACCEPTED,
             "32-bit float TIFF (F) in 0-255", quadrants=scaled_levels),
    ]


# Accepted cases: orientation and colour profile ------------------------------------------------


def stored_for_orientation(display: np.ndarray, orientation: int) -> np.ndarray:
    """Return the pixel rows a camera stores for an upright `display` image under an EXIF orientation.

    EXIF 2.3 Orientation (tag 0x0112) names where the stored row 0 and column 0
    lie on the display: 1 top/left, 2 top/right, 3 bottom/right, 4 bottom/left,
    5 left/top, 6 right/top, 7 right/bottom, 8 left/bottom.
    """
    transforms = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, 1),  # stored turned 90° counter-clockwise, so a viewer turns it clockwise
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, -1),
    }
    return np.ascontiguousarray(transforms[orientation](display))


def _orientations(folder: Path) -> list[Case]:
    display = quadrant_array(RGB_QUADRANTS)
    cases = []
    for orientation in range(1, 9):
        image = Image.fromarray(stored_for_orientation(display, orientation))
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = _save(folder, f"exif_orientation_{orientation}.jpg", image, exif=exif.tobytes(), quality=95, subsampling=0)
        cases.append(Case(f"exif_orientation_{orientation}", path, ACCEPTED,
                          f"JPEG with EXIF orientation {orientation}", tolerance=JPEG_TOLERANCE))
    return cases


def _icc_profiles(folder: Path) -> list[Case]:
    colours = ((200, 60, 60), (90, 170, 90), (60, 60, 200), (230, 200, 80))
    image = Image.fromarray(quadrant_array(colours))
    path = _save(folder, "adobe_rgb.png", image, icc_profile=adobe_rgb_like_profile())
    # Converted, the top left becomes about (231, 57, 57). Read as sRGB, it would stay (200, 60, 60).
    return [Case("icc_adobe_rgb", path, ACCEPTED, "RGB PNG with an embedded Adobe RGB (1998) ICC profile",
                 quadrants=tuple(adobe_rgb_to_srgb(colour) for colour in colours))]


# Rejected cases -------------------------------------------------------------------------------


def png_bytes(samples: np.ndarray, bit_depth: int, colour_type: int, width: int | None = None,
              height: int | None = None) -> bytes:
    """Encode `samples` (height x width [x channels], big-endian when 16-bit) as a PNG byte by byte.

    `width` and `height` override the header only, to fake dimensions.
    """
    height_px, width_px = samples.shape[:2]
    rows = samples.astype(">u2" if bit_depth == 16 else np.uint8).reshape(height_px, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 (None) on every row
    header = struct.pack(">IIBBBBB", width or width_px, height or height_px, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _corrupt(folder: Path) -> list[Case]:
    png = png_bytes(quadrant_array(RGB_QUADRANTS), bit_depth=8, colour_type=2)
    jpeg_path = _save(folder, "full.jpg.tmp", Image.fromarray(quadrant_array(RGB_QUADRANTS)), format="JPEG")
    jpeg = jpeg_path.read_bytes()
    jpeg_path.unlink()

    bad_idat_crc = bytearray(png)
    idat_end = png.index(b"IEND") - 8  # the IDAT CRC ends where the IEND length starts
    bad_idat_crc[idat_end] ^= 0xFF
    bad_ihdr_crc = bytearray(png)
    bad_ihdr_crc[29] ^= 0xFF  # signature (8) + length (4) + type (4) + IHDR data (13) = CRC at byte 29
    return [
        Case("empty_file", _write(folder / "empty.png", b""), REJECTED, "zero bytes", error="empty file"),
        Case("text_as_jpeg", _write(folder / "notes.jpg", b"not an image, just text\n"), REJECTED,
             "a text file named .jpg", error="not a PNG, JPEG, WebP, TIFF, BMP or GIF image"),
        Case("ppm_unsupported", _save(folder, "image.ppm", Image.new("RGB", (48, 32), RED)), REJECTED,
             "PPM, a format Pillow reads but load_image does not accept", error="not a PNG, JPEG"),
        Case("truncated_jpeg", _write(folder / "truncated.jpg", jpeg[: len(jpeg) // 2]), REJECTED,
             "JPEG cut in half", error="truncated or corrupt JPEG data"),
        Case("truncated_png", _write(folder / "truncated.png", png[: len(png) - 30]), REJECTED,
             "PNG cut inside its IDAT chunk", error="corrupt PNG data"),
        Case("png_bad_idat_crc", _write(folder / "bad_idat_crc.png", bytes(bad_idat_crc)), REJECTED,
             "PNG whose IDAT chunk fails its CRC, which decoding alone does not notice", error="corrupt PNG data"),
        Case("png_bad_ihdr_crc", _write(folder / "bad_ihdr_crc.png", bytes(bad_ihdr_crc)), REJECTED,
             "PNG whose IHDR chunk fails its CRC", error="corrupt PNG header"),
    ]


def _limits(folder: Path) -> list[Case]:
    tiny = np.zeros((2, 2, 3), dtype=np.uint8)
    strip = Image.fromarray(np.full((4000, 1, 3), 128, dtype=np.uint8))
    return [
        Case("header_72_megapixels", _write(folder / "claims_9000x8000.png",
                                            png_bytes(tiny, bit_depth=8, colour_type=2, width=9000, height=8000)),
             REJECTED, "PNG header claiming 9000 x 8000 px, over MAX_IMAGE_PIXELS but under Pillow's own limit",
             error="decompression bomb"),
        Case("header_10_gigapixels", _write(folder / "claims_100000x100000.png",
                                            png_bytes(tiny, bit_depth=8, colour_type=2, width=100_000, height=100_000)),
             REJECTED, "PNG header claiming 100000 x 100000 px, over Pillow's own limit", error="decompression bomb"),
        Case("strip_1x4000", _save(folder, "strip_1x4000.png", strip), REJECTED,
             "1 x 4000 px strip, whose shorter side would fall below min_size", error="min_size"),
        Case("missing_file", folder / "missing.png", REJECTED, "a path that does not exist", error="file not found"),
        Case("directory", _make_directory(folder / "a_directory.png"), REJECTED, "a directory named like an image",
             error="is a directory"),
    ]


def _make_directory(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


_ACCEPTED_WRITERS: tuple[Callable[[Path], list[Case]], ...] = (_formats, _modes, _orientations, _icc_profiles)
_REJECTED_WRITERS: tuple[Callable[[Path], list[Case]], ...] = (_corrupt, _limits)

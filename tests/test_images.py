"""Tests for stylecore.images: the generated corpus, resizing, sources, EXIF, bit depth, alpha and VGG19 layout."""

import io
import logging
import os
import tempfile

import numpy as np
import pytest
from PIL import Image, ImageFile

from corpus import ACCEPTED, REJECTED, write_corpus
from corpus.generate import RGB_QUADRANTS, png_bytes, quadrant_array, stored_for_orientation
from stylecore.images import (
    DEFAULT_MAX_SIZE_PX,
    IMAGENET_MEAN_BGR,
    ImageError,
    deprocess,
    encode_png,
    load_image,
    preprocess,
)

MAX_SIZE_PX = 64


def _case_names(expected: str) -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        return [case.name for case in write_corpus(folder) if case.expected == expected]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The corpus written once per module, as a dict from case name to Case."""
    return {case.name: case for case in write_corpus(tmp_path_factory.mktemp("corpus"))}


def _png(array: np.ndarray, mode: str | None = None, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _interior_mean(rgb: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    return rgb[rows, cols].reshape(-1, 3).mean(axis=0)


# Corpus ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _case_names(ACCEPTED))
def test_corpus_accepted(corpus, name):
    case = corpus[name]

    rgb = load_image(case.path, MAX_SIZE_PX)

    assert max(rgb.shape[:2]) == MAX_SIZE_PX
    assert rgb.min() >= 0.0
    assert rgb.max() <= 255.0
    case.check(rgb)


@pytest.mark.parametrize("name", _case_names(REJECTED))
def test_corpus_rejected(corpus, name):
    case = corpus[name]

    with pytest.raises(ImageError) as raised:
        load_image(case.path, MAX_SIZE_PX)

    message = str(raised.value)
    assert case.error in message
    assert message.startswith(f"{case.path}: ")
    assert "\n" not in message
    assert message.count(". ") >= 1, f"no fix after the problem in: {message}"


def test_corpus_covers_required_classes(corpus):
    required = {
        "gray_l", "gray_alpha_la", "palette_p", "palette_p_transparent", "rgba", "cmyk_jpeg", "gray16_png",
        "rgb16_png", "float32_tiff_unit", "bilevel_1", "icc_adobe_rgb", "gif_animated", "webp_animated",
        "jpeg_progressive", "bmp_rgb", "webp_lossless", "tiff_lzw", "tiny_1x1", "name_non_ascii",
        "name_with_spaces", "empty_file", "text_as_jpeg", "truncated_jpeg", "truncated_png", "png_bad_idat_crc",
        "header_72_megapixels", "strip_1x4000", "missing_file", "directory",
        *(f"exif_orientation_{orientation}" for orientation in range(1, 9)),
    }

    assert len(corpus) >= 30
    assert required <= corpus.keys(), f"missing cases: {sorted(required - corpus.keys())}"
    assert {case.expected for case in corpus.values()} == {ACCEPTED, REJECTED}


def test_corpus_check_fails_without_exif_transpose(corpus):
    for orientation in range(2, 9):
        case = corpus[f"exif_orientation_{orientation}"]
        with Image.open(case.path) as stored:
            scale = MAX_SIZE_PX / max(stored.size)
            size = (round(stored.width * scale), round(stored.height * scale))
            ignored_orientation = np.asarray(stored.convert("RGB").resize(size, Image.Resampling.LANCZOS), np.float32)

        with pytest.raises(AssertionError):
            case.check(ignored_orientation)


def test_corpus_check_fails_on_clipped_16_bit(corpus):
    case = corpus["gray16_png"]
    with Image.open(case.path) as image:
        clipped = np.asarray(image.convert("RGB"), dtype=np.float32)  # Pillow clips I;16 at 255

    with pytest.raises(AssertionError, match="quadrant mean"):
        case.check(clipped)


# Resizing -------------------------------------------------------------------------------------


def test_load_image_default_max_size(corpus):
    rgb = load_image(corpus["png_rgb"].path)

    assert rgb.shape == (DEFAULT_MAX_SIZE_PX * 2 // 3, DEFAULT_MAX_SIZE_PX, 3)
    assert rgb.dtype == np.float32


def test_resize_keeps_aspect_downscaling(tmp_path):
    path = tmp_path / "wide.png"
    path.write_bytes(_png(np.zeros((300, 600, 3), np.uint8)))

    assert load_image(path, 512).shape == (256, 512, 3)
    assert load_image(path, 100).shape == (50, 100, 3)


def test_resize_scales_up_small_images(tmp_path):
    path = tmp_path / "small.png"
    path.write_bytes(_png(np.full((10, 20, 3), 200, np.uint8)))

    rgb = load_image(path, 128)

    assert rgb.shape == (64, 128, 3)
    np.testing.assert_allclose(rgb, 200.0, atol=1.0)


def test_resize_scales_up_1x1_to_square(corpus):
    rgb = load_image(corpus["tiny_1x1"].path, 96)

    assert rgb.shape == (96, 96, 3)
    np.testing.assert_allclose(rgb, np.broadcast_to([255.0, 0.0, 0.0], rgb.shape), atol=1.0)


def test_min_size_rejects_and_is_settable(tmp_path):
    path = tmp_path / "banner_100x20.png"
    path.write_bytes(_png(np.zeros((20, 100, 3), np.uint8)))

    with pytest.raises(ImageError, match="min_size 16 px"):
        load_image(path, 64)  # 64 x 13 px
    with pytest.raises(ImageError, match="min_size 32 px"):
        load_image(path, 128, min_size=32)  # 128 x 26 px
    assert load_image(path, 64, min_size=8).shape == (13, 64, 3)
    assert load_image(path, 80).shape == (16, 80, 3)


def test_max_size_below_min_size_raises(tmp_path):
    with pytest.raises(ValueError, match="below min_size"):
        load_image(tmp_path / "unused.png", 8)


# Pixel limit ----------------------------------------------------------------------------------


def test_max_pixels_is_settable(tmp_path):
    path = tmp_path / "100x100.png"
    path.write_bytes(_png(np.zeros((100, 100, 3), np.uint8)))

    with pytest.raises(ImageError, match="10,000 pixels exceeds max_pixels 9,999"):
        load_image(path, 64, max_pixels=9_999)
    assert load_image(path, 64, max_pixels=10_000).shape == (64, 64, 3)


def test_max_pixels_checked_before_decoding(tmp_path):
    # The header claims 300 x 300 px, but the pixel data is cut short: a decoder would fail.
    data = png_bytes(np.zeros((300, 300, 3), np.uint8), bit_depth=8, colour_type=2)
    idat = data.index(b"IDAT")
    path = tmp_path / "claims_300x300.png"
    path.write_bytes(data[: idat + 40])

    with pytest.raises(ImageError, match="exceeds max_pixels"):
        load_image(path, 64, max_pixels=50_000)
    with pytest.raises(ImageError, match="corrupt PNG data"):
        load_image(path, 64)


# Strict decoding ------------------------------------------------------------------------------


def test_truncated_jpeg_scan_rejected(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(quadrant_array(RGB_QUADRANTS)).save(buffer, format="JPEG", quality=95)
    path = tmp_path / "scan_cut.jpg"
    path.write_bytes(buffer.getvalue()[:-200])  # header intact, entropy-coded data cut

    with pytest.raises(ImageError, match="truncated or corrupt JPEG data"):
        load_image(path, 64)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file_rejected(tmp_path):
    path = tmp_path / "locked.png"
    path.write_bytes(_png(np.zeros((40, 40, 3), np.uint8)))
    path.chmod(0)

    with pytest.raises(ImageError, match="cannot read the file"):
        load_image(path, 64)


def test_invalid_icc_profile_ignored_with_warning(tmp_path, caplog):
    path = tmp_path / "bad_icc.png"
    path.write_bytes(_png(quadrant_array(RGB_QUADRANTS), icc_profile=b"not an ICC profile"))

    with caplog.at_level(logging.WARNING, logger="stylecore.images"):
        rgb = load_image(path, 64)

    assert "ignoring the embedded ICC profile" in caplog.text
    np.testing.assert_allclose(_interior_mean(rgb, slice(4, 17), slice(6, 26)), [255.0, 0.0, 0.0], atol=1.0)


# Sources --------------------------------------------------------------------------------------


def test_bytes_source_matches_path(corpus):
    path = corpus["png_rgb"].path

    np.testing.assert_array_equal(load_image(path.read_bytes(), 64), load_image(path, 64))


def test_bytes_source_error_names_bytes():
    with pytest.raises(ImageError, match=r"^<bytes>: not a PNG"):
        load_image(b"plain text", 64)


@pytest.mark.parametrize("name", ["png_rgb", "name_non_ascii", "name_with_spaces"])
def test_file_uri_source_matches_path(corpus, name):
    path = corpus[name].path

    np.testing.assert_array_equal(load_image(path.as_uri(), 64), load_image(path, 64))


def test_file_uri_missing_and_directory(tmp_path):
    with pytest.raises(ImageError, match="file not found. Check the URI"):
        load_image((tmp_path / "missing.png").as_uri(), 64)
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path.as_uri(), 64)


def test_unknown_uri_scheme_rejected():
    with pytest.raises(ImageError, match="invalid or unsupported URI"):
        load_image("nosuchscheme://bucket/image.png", 64)


# EXIF orientation -----------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_red_top_left(tmp_path, orientation):
    display = np.zeros((32, 48, 3), np.uint8)
    display[:16, :24] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"orientation_{orientation}.jpg"
    Image.fromarray(stored_for_orientation(display, orientation)).save(path, exif=exif.tobytes(), quality=95)

    rgb = load_image(path, 96)

    assert rgb.shape == (64, 96, 3)
    top_left = _interior_mean(rgb, slice(6, 26), slice(10, 38))
    bottom_right = _interior_mean(rgb, slice(38, 58), slice(58, 86))
    assert top_left[0] > 200, f"top left {top_left}"
    assert top_left[1:].max() < 50, f"top left {top_left}"
    assert bottom_right.max() < 50, f"bottom right {bottom_right}"


# Bit depth and alpha --------------------------------------------------------------------------


def test_16_bit_gray_scaled_from_full_range(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    path = tmp_path / "ramp16.png"
    path.write_bytes(_png(ramp))

    rgb = load_image(path, 64)  # 64 px already, so no resampling

    expected = np.round(ramp / 65535.0 * 255.0)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    np.testing.assert_array_equal(rgb[..., 1], rgb[..., 0])
    assert rgb[0, 0, 0] == 0.0
    assert rgb[-1, -1, 0] == 255.0
    assert len(np.unique(rgb)) == 256


def test_rgba_composited_onto_white_by_default(corpus):
    rgb = load_image(corpus["rgba"].path, 96)

    np.testing.assert_allclose(_interior_mean(rgb, slice(6, 26), slice(58, 86)), [255.0, 255.0, 255.0], atol=1.0)
    np.testing.assert_allclose(_interior_mean(rgb, slice(38, 58), slice(10, 38)), [127.0, 127.0, 255.0], atol=1.0)


def test_rgba_background_is_settable(corpus):
    rgb = load_image(corpus["rgba"].path, 96, background=(0, 0, 0))

    np.testing.assert_allclose(_interior_mean(rgb, slice(6, 26), slice(58, 86)), [0.0, 0.0, 0.0], atol=1.0)
    np.testing.assert_allclose(_interior_mean(rgb, slice(38, 58), slice(10, 38)), [0.0, 0.0, 128.0], atol=1.0)
    np.testing.assert_allclose(_interior_mean(rgb, slice(6, 26), slice(10, 38)), [255.0, 0.0, 0.0], atol=1.0)


# VGG19 layout and PNG encoding ----------------------------------------------------------------


def test_preprocess_pure_red_round_trip():
    red = np.zeros((4, 6, 3), np.float32)
    red[..., 0] = 255.0

    x = preprocess(red)

    assert x.shape == (1, 4, 6, 3)
    np.testing.assert_allclose(x[0, 0, 0], [-IMAGENET_MEAN_BGR[0], -IMAGENET_MEAN_BGR[1], 255.0 - IMAGENET_MEAN_BGR[2]])
    np.testing.assert_array_equal(deprocess(x)[0, 0], [255, 0, 0])


def test_preprocess_round_trip_keeps_all_values():
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3)).astype(np.float32)

    np.testing.assert_array_equal(deprocess(preprocess(rgb)), rgb.astype(np.uint8))
    np.testing.assert_array_equal(deprocess(preprocess(rgb)[0]), rgb.astype(np.uint8))


@pytest.mark.parametrize("shape", [(4, 4), (2, 4, 4, 3), (1, 1, 4, 4, 3), (4, 4, 4)])
def test_deprocess_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match="expected 1 x H x W x 3"):
        deprocess(np.zeros(shape, np.float32))


def test_encode_png_round_trip():
    rgb = np.random.default_rng(1).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)

    with Image.open(io.BytesIO(encode_png(rgb))) as image:
        assert image.format == "PNG"
        np.testing.assert_array_equal(np.asarray(image), rgb)

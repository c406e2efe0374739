"""A hand-built ICC profile for an RGB space other than sRGB, and the expected conversion to sRGB.

Pillow's ImageCms can only create sRGB, LAB and XYZ profiles, so this module
writes an ICC version 2 matrix/TRC display profile byte by byte. Its primaries
and gamma are those of Adobe RGB (1998), with the colorants adapted to the D50
profile connection space. LittleCMS converts with it to the values
`adobe_rgb_to_srgb` computes, within one level per channel.
"""

import struct

import numpy as np

# Adobe RGB (1998): D50-adapted colorants (columns R, G, B) and gamma 563/256.
ADOBE_RGB_COLORANTS_D50 = np.array([
    [0.60974, 0.20528, 0.14919],
    [0.31111, 0.62567, 0.06322],
    [0.01947, 0.06087, 0.74457],
])
ADOBE_RGB_GAMMA = 563 / 256

# sRGB colorants as LittleCMS builds them (Rec. 709 primaries, Bradford-adapted to D50).
SRGB_COLORANTS_D50 = np.array([
    [0.43607, 0.38515, 0.14307],
    [0.22249, 0.71687, 0.06061],
    [0.01392, 0.09708, 0.71410],
])
D50_WHITE_XYZ = (0.9642, 1.0, 0.8249)


def adobe_rgb_like_profile() -> bytes:
    """Return an ICC v2 display profile with Adobe RGB (1998) primaries and gamma."""
    tags = [
        (b"desc", _text_description("Adobe RGB (1998) primaries, stylecore test corpus")),
        (b"cprt", b"text" + bytes(4) + b"No copyright, test data\x00"),
        (b"wtpt", _xyz(D50_WHITE_XYZ)),
        (b"rXYZ", _xyz(ADOBE_RGB_COLORANTS_D50[:, 0])),
        (b"gXYZ", _xyz(ADOBE_RGB_COLORANTS_D50[:, 1])),
        (b"bXYZ", _xyz(ADOBE_RGB_COLORANTS_D50[:, 2])),
        (b"rTRC", _gamma_curve(ADOBE_RGB_GAMMA)),
        (b"gTRC", _gamma_curve(ADOBE_RGB_GAMMA)),
        (b"bTRC", _gamma_curve(ADOBE_RGB_GAMMA)),
    ]

    # Layout: 128-byte header, tag table, then each tag's data on a 4-byte boundary.
    offset = 128 + 4 + 12 * len(tags)
    table, body = [struct.pack(">I", len(tags))], []
    for signature, data in tags:
        table.append(struct.pack(">4sII", signature, offset, len(data)))
        padded = data + bytes(-len(data) % 4)
        body.append(padded)
        offset += len(padded)

    header = struct.pack(
        ">I4sI4s4s4s6H4sI",
        offset, b"none", 0x02100000, b"mntr", b"RGB ", b"XYZ ", 2024, 1, 1, 0, 0, 0, b"acsp", 0,
    )
    header += bytes(4 + 4 + 4 + 8 + 4) + _s15_fixed16(D50_WHITE_XYZ)
    header += bytes(128 - len(header))
    return header + b"".join(table) + b"".join(body)


def adobe_rgb_to_srgb(rgb) -> tuple[int, int, int]:
    """Convert one 8-bit Adobe RGB colour to 8-bit sRGB with relative colorimetric intent."""
    linear = (np.asarray(rgb, dtype=np.float64) / 255.0) ** ADOBE_RGB_GAMMA
    xyz = ADOBE_RGB_COLORANTS_D50 @ linear
    srgb_linear = np.clip(np.linalg.solve(SRGB_COLORANTS_D50, xyz), 0.0, 1.0)
    encoded = np.where(srgb_linear <= 0.0031308, 12.92 * srgb_linear, 1.055 * srgb_linear ** (1 / 2.4) - 0.055)
    return tuple(int(v) for v in np.round(encoded * 255.0))


def _s15_fixed16(values) -> bytes:
    return b"".join(struct.pack(">i", round(v * 65536)) for v in values)


def _xyz(values) -> bytes:
    return b"XYZ " + bytes(4) + _s15_fixed16(values)


def _gamma_curve(gamma: float) -> bytes:
    # curveType with one entry: a pure power law, the exponent as u8Fixed8Number.
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))


def _text_description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\x00"
    # ASCII part, then empty Unicode and ScriptCode parts (the latter a fixed 67 bytes).
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(4 + 4 + 2 + 1 + 67)

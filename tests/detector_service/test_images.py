"""facerec.images.decode_image on every format the detector accepts, and on what it must refuse."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facerec.errors import InvalidInput, TooLarge
from facerec.images import ImageLimits, decode_image, pixels_to_decode
from tests.support.images import encode, lying_jpeg, noise, png_header_only

RGB = noise(40, 56)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP"])
def test_lossless_formats_round_trip(fmt: str) -> None:
    params = {"lossless": True} if fmt == "WEBP" else {}
    assert np.array_equal(decode_image(encode(RGB, fmt, **params)), RGB)


def test_jpeg_decodes_close_to_the_source() -> None:
    smooth = np.repeat(np.linspace(0, 255, 56, dtype=np.uint8)[None, :, None], 40, axis=0).repeat(3, axis=2)
    decoded = decode_image(encode(smooth, "JPEG", quality=95))
    assert decoded.shape == (40, 56, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - smooth).mean() < 3


def test_grey_png_becomes_three_equal_channels() -> None:
    grey = RGB[:, :, 0]
    decoded = decode_image(encode(grey, "PNG"))
    assert decoded.shape == (40, 56, 3)
    assert all(np.array_equal(decoded[:, :, c], grey) for c in range(3))


def test_sixteen_bit_png_keeps_its_high_byte() -> None:
    values = (RGB[:, :, 0].astype(np.uint16) << 8) | 0x7F
    out = io.BytesIO()
    Image.fromarray(values).save(out, format="PNG")
    decoded = decode_image(out.getvalue())
    assert np.array_equal(decoded[:, :, 0], RGB[:, :, 0])


def test_palette_png() -> None:
    palette_image = Image.fromarray(RGB).quantize(colors=16)
    out = io.BytesIO()
    palette_image.save(out, format="PNG")
    assert np.array_equal(decode_image(out.getvalue()), np.asarray(palette_image.convert("RGB")))


def test_rgba_png_is_composited_over_white() -> None:
    rgba = np.zeros((40, 56, 4), np.uint8)
    rgba[:, :28] = (10, 20, 30, 255)  # opaque half
    decoded = decode_image(encode(rgba, "PNG"))
    assert (decoded[:, :28] == (10, 20, 30)).all()
    assert (decoded[:, 28:] == 255).all()


def test_exif_orientation_is_applied() -> None:
    # The stored pixels are the picture turned a quarter; orientation 6 tells viewers to turn it back.
    stored = np.rot90(RGB, k=1)
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(np.ascontiguousarray(stored), "PNG", exif=exif))
    assert np.array_equal(decoded, np.rot90(stored, k=-1))


@pytest.mark.parametrize(
    "data",
    [b"", b"this is a text file, not a picture\n", encode(RGB, "JPEG")[:100]],
    ids=["empty", "text", "truncated-jpeg"],
)
def test_undecodable_is_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode_image(data)


def test_one_pixel_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        decode_image(encode(noise(1, 1), "PNG"))


def test_huge_header_is_refused_before_decoding() -> None:
    with pytest.raises(TooLarge, match="too large: 20000x20000"):
        decode_image(png_header_only(20000, 20000))


def test_byte_limit() -> None:
    data = encode(RGB, "PNG")
    with pytest.raises(TooLarge, match="too large"):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))
    assert decode_image(data, ImageLimits(max_bytes=len(data))).shape == (40, 56, 3)


def test_a_jpeg_whose_header_declares_more_than_its_bytes_can_carry_is_refused_before_decoding() -> None:
    """632 bytes declaring 6000x6000: libjpeg would fill the rest and hand over 36 megapixels."""
    lie = lying_jpeg(6000, 6000)
    with pytest.raises(InvalidInput, match="declares 6000x6000 pixels in only"):
        decode_image(lie)
    assert pixels_to_decode(lie) == 0


def test_padding_a_lying_header_with_comments_and_metadata_buys_no_pixels() -> None:
    """50 kB of JPEG comment or PNG text beside a few bytes of pixel data: still refused."""
    comment = b"x" * 50_000
    jpeg = lying_jpeg(6000, 6000)
    padded_jpeg = jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:]
    padded_png = png_header_only(6000, 6000)
    text = b"Comment\0" + comment
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    padded_png = padded_png[:33] + chunk + padded_png[33:]  # after the signature and IHDR
    for padded in (padded_jpeg, padded_png, padded_jpeg + comment):
        assert len(padded) > 50_000
        with pytest.raises(InvalidInput, match="6000x6000 pixels in only"):
            decode_image(padded)


def test_a_lying_header_within_the_ratio_free_size_is_decoded_as_before() -> None:
    assert decode_image(lying_jpeg(1000, 1000)).shape == (1000, 1000, 3)
    assert pixels_to_decode(lying_jpeg(1000, 1000)) == 1_000_000
    assert pixels_to_decode(lying_jpeg(1000, 1001)) == 0


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_flat_honest_pictures_past_the_ratio_free_size_still_decode(fmt: str) -> None:
    """A flat grey picture is about the most compressible honest one (170 to 560 pixels a byte)."""
    out = io.BytesIO()
    Image.new("RGB", (2600, 2000), (128, 128, 128)).save(out, format=fmt)
    assert decode_image(out.getvalue()).shape == (2000, 2600, 3)
    assert pixels_to_decode(out.getvalue()) == 5_200_000


def test_the_ratio_is_a_limit_of_its_own() -> None:
    data = encode(noise(40, 56), "PNG")
    assert decode_image(data, ImageLimits(max_pixels_per_byte=1, pixels_free_of_ratio=40 * 56)).shape[0] == 40
    with pytest.raises(InvalidInput, match="at most 0 pixels per byte"):
        decode_image(data, ImageLimits(max_pixels_per_byte=0, pixels_free_of_ratio=40 * 56 - 1))

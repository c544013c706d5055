"""Image decoding, in one place for every service: bytes in, upright (h, w, 3) uint8 RGB out.

Limits are checked before pixels are decoded: a 20000x20000 PNG header is refused from its header, and so
is a picture that declares far more pixels than its bytes can carry (a few hundred bytes of JPEG that claim
6000x6000 decode as a grey 36-megapixel picture: the decoder fills what the data lacks).
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from facerec.errors import InvalidInput, TooLarge

FORMATS = ("JPEG", "PNG", "WEBP", "BMP")  # Pillow >= 13 reads MPO with its JPEG plugin
# The smallest window MTCNN's P-Net can look at; a smaller picture cannot hold a detectable face.
MIN_SIDE_PX = 12

# Pillow's own bomb guard would raise at 2x our limit and warn below it; our limit is checked first.
Image.MAX_IMAGE_PIXELS = None
# Pillow registers its format plugins on the first open; concurrent first opens race. Register them now.
Image.init()


@dataclass(frozen=True)
class ImageLimits:
    """What one encoded image may be. Defaults fit a 40-megapixel photo."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side_px: int = MIN_SIDE_PX
    # Decoding and searching cost by the declared pixels, not by the bytes sent. Beyond one megapixel a
    # picture may declare at most this many pixels per byte of its pixel data (pixel_data_bytes: comments
    # and metadata do not count, so padding a lie buys nothing): a flat grey picture, about the most
    # compressible honest one, carries 170 (JPEG) to 560 (lossy WebP) per byte, real photos under 50; a
    # lying header carries tens of thousands. Any bytes may buy the free megapixel: a detector spends
    # 0.3 s and +83 MiB on it, against 1.9 s and +322 MiB for a 632-byte lie of 4 megapixels.
    max_pixels_per_byte: int = 1024
    pixels_free_of_ratio: int = 1_000_000


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> NDArray[np.uint8]:
    """Decodes JPEG, PNG (8/16 bit, grey, palette, RGBA), WebP or BMP with its EXIF orientation applied.

    Returns (h, w, 3) uint8 RGB of the upright picture; transparency is composited over white.
    Raises InvalidInput for empty, undecodable, unsupported or too small images and for a header that
    declares more pixels than the bytes may (ImageLimits.max_pixels_per_byte), and TooLarge for images
    over the byte or pixel limit.
    """
    image = _open_checked(data, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise InvalidInput("The image could not be decoded: its data is truncated or corrupt.") from exc


def pixels_to_decode(data: bytes, limits: ImageLimits = ImageLimits()) -> int:
    """The pixels decode_image(data, limits) will hold, read from the header without decoding: 0 for a
    picture it refuses before decoding (decode_image then says why)."""
    try:
        with _open_checked(data, limits) as image:
            width, height = image.size
    except Exception:  # refused or unreadable: decode_image reports it with its own sentence
        return 0
    return width * height


def _open_checked(data: bytes, limits: ImageLimits) -> Image.Image:
    """The opened (not yet decoded) picture once its bytes and its header's size pass the limits."""
    if not data:
        raise InvalidInput("The image is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise TooLarge(f"The image is too large: {len(data)} bytes, over the limit of {limits.max_bytes}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(
            "The image could not be decoded: it is not a JPEG, PNG, WebP or BMP file."
        ) from exc
    width, height = image.size
    pixels = width * height
    if pixels > limits.max_pixels:
        image.close()
        raise TooLarge(
            f"The image is too large: {width}x{height} pixels, over the limit of {limits.max_pixels}."
        )
    if pixels > limits.pixels_free_of_ratio:
        carried = pixel_data_bytes(data, image.format)
        if pixels > limits.max_pixels_per_byte * carried:
            image.close()
            raise InvalidInput(
                f"The image declares {width}x{height} pixels in only {carried} bytes of pixel data; beyond "
                f"{limits.pixels_free_of_ratio} pixels a picture may declare at most "
                f"{limits.max_pixels_per_byte} pixels per byte."
            )
    if min(width, height) < limits.min_side_px:
        image.close()
        raise InvalidInput(
            f"The image is {width}x{height} pixels; faces can only be found on at least "
            f"{limits.min_side_px}x{limits.min_side_px}."
        )
    return image


# In a JPEG's entropy-coded data 0xFF is followed by 0x00 (stuffing), a restart marker or more 0xFF (fill);
# any other byte after it starts the next marker segment.
_JPEG_MARKER = re.compile(rb"\xff(?![\x00\xd0-\xd7\xff])")


def pixel_data_bytes(data: bytes, image_format: str | None) -> int:
    """The bytes of `data` that can carry pixels: a JPEG's entropy-coded scans, a PNG's IDAT chunks, the
    whole of any other format. Comments, metadata and bytes after the end do not count."""
    if image_format in ("JPEG", "MPO"):
        return _jpeg_scan_bytes(data)
    if image_format == "PNG":
        return _png_idat_bytes(data)
    return len(data)


def _jpeg_scan_bytes(data: bytes) -> int:
    total, pos = 0, 2  # after SOI
    while pos + 2 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xD9:  # EOI
            break
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # fill, TEM, RSTn: no length
            pos += 1 if marker == 0xFF else 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # SOS: its entropy-coded data runs to the next marker
            found = _JPEG_MARKER.search(data, pos)
            end = found.start() if found else len(data)
            total += max(0, end - pos)
            pos = end
    return total


def _png_idat_bytes(data: bytes) -> int:
    total, pos = 0, 8  # after the signature; each chunk: length (4), type (4), data, crc (4)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            total += min(length, len(data) - pos - 8)  # a length field can lie too
        elif kind == b"IEND":
            break
        pos += 12 + length
    return total


def encode_png(rgb: NDArray[np.uint8]) -> bytes:
    """(h, w, 3) uint8 RGB → PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def _to_rgb(image: Image.Image) -> NDArray[np.uint8]:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit grey: Pillow's convert("RGB") clips at 255, so scale down ourselves.
        grey = np.asarray(image, dtype=np.uint32)
        grey = (grey >> 8).astype(np.uint8) if grey.max() > 255 else grey.astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if image.mode == "F":
        grey = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))

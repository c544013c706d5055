"""Encoded pictures for the detector's tests: good ones, broken ones and a huge header."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def encode(rgb: NDArray[np.uint8], fmt: str = "JPEG", **params: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt, **params)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB but carries a few bytes of pixels: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def lying_jpeg(width: int, height: int) -> bytes:
    """A valid 16x16 JPEG whose frame header is rewritten to declare width x height: a few hundred bytes
    that libjpeg decodes to a full-size (grey) picture, filling what the data lacks."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 200)).save(out, format="JPEG")
    data = bytearray(out.getvalue())
    frame = data.index(b"\xff\xc0")  # SOF0: marker, length (2), precision (1), height, width
    struct.pack_into(">HH", data, frame + 5, height, width)
    return bytes(data)


def noise(height: int = 64, width: int = 80, seed: int = 7) -> NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def shrunk(path: str | Path, scale: float, min_canvas_px: int = 120) -> bytes:
    """The picture at `path` scaled by `scale` (a face of side s becomes s * scale px), on a plain grey
    canvas at least min_canvas_px on each side, as PNG: a small face with room around it."""
    original = Image.open(path).convert("RGB")
    small = original.resize((round(original.width * scale), round(original.height * scale)), Image.LANCZOS)
    canvas = Image.new(
        "RGB", (max(small.width, min_canvas_px), max(small.height, min_canvas_px)), (128, 128, 128)
    )
    canvas.paste(small, (0, 0))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()

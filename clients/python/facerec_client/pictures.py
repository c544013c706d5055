"""Pictures as the gallery takes them (encoded file bytes), from a path, bytes, or an array: anything with
numpy's __array_interface__ or the buffer protocol, of shape (h, w, 3) uint8 RGB (also (h, w) grey and
(h, w, 4) RGBA), encoded to PNG here with zlib and struct, so numpy is not needed."""

from __future__ import annotations

import ctypes
import os
import struct
import zlib
from typing import Any, Protocol, TypeAlias, TypeGuard, runtime_checkable

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types by channel count: grey, RGB, RGBA.
_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}
_UINT8 = ("|u1", "<u1", ">u1", "=u1")


@runtime_checkable
class ArrayLike(Protocol):
    """An array as numpy (and Pillow's Image) describes it to others."""

    @property
    def __array_interface__(self) -> dict[str, Any]: ...


Picture: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | ArrayLike"


def is_picture(value: object) -> TypeGuard[Picture]:
    """Whether `value` is one picture (rather than a collection of them): a str is a path, not letters."""
    return isinstance(value, str | os.PathLike | bytes | bytearray | memoryview | ArrayLike)


def picture_bytes(picture: Picture) -> bytes:
    """The encoded bytes of a picture: a file's contents, the bytes as given, or an array as PNG."""
    if isinstance(picture, bytes | bytearray):
        return bytes(picture)
    if isinstance(picture, str | os.PathLike):
        with open(picture, "rb") as file:
            return file.read()
    if isinstance(picture, ArrayLike):
        return png(*_pixels_of_interface(picture))
    if isinstance(picture, memoryview):
        return png(*_pixels_of_buffer(picture))
    try:
        view = memoryview(picture)
    except TypeError:
        raise TypeError(
            f"A picture is a path, encoded bytes or an (h, w, 3) uint8 array, not {type(picture).__name__}."
        ) from None
    return png(*_pixels_of_buffer(view))


def _shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 2:
        return shape[0], shape[1], 1
    if len(shape) == 3 and shape[2] in _COLOUR_TYPE:
        return shape[0], shape[1], shape[2]
    raise ValueError(f"An array picture has shape (h, w, 3) (or (h, w), (h, w, 4)), not {shape}.")


def _pixels_of_buffer(view: memoryview) -> tuple[bytes, int, int, int]:
    if view.format not in ("B", "<B", "=B", ">B") or view.itemsize != 1:
        raise ValueError(f"An array picture holds uint8 values, not {view.format!r}.")
    height, width, channels = _shape(tuple(view.shape or ()))
    return view.tobytes(order="C"), height, width, channels  # C order, also for a strided view


def _pixels_of_interface(array: ArrayLike) -> tuple[bytes, int, int, int]:
    spec = array.__array_interface__
    if spec.get("typestr") not in _UINT8:
        raise ValueError(f"An array picture holds uint8 values, not {spec.get('typestr')!r}.")
    height, width, channels = _shape(tuple(spec["shape"]))
    size = height * width * channels
    data = spec.get("data")
    if spec.get("strides") is None and isinstance(data, bytes | bytearray):
        return bytes(data[:size]), height, width, channels  # Pillow's Image hands its pixels over as bytes
    if spec.get("strides") is None and isinstance(data, tuple) and spec.get("offset", 0) == 0:
        return ctypes.string_at(data[0], size), height, width, channels  # C-contiguous memory at this address
    try:
        return _pixels_of_buffer(memoryview(array))  # type: ignore[arg-type]  # strided: the buffer protocol
    except TypeError:
        raise ValueError("A strided array picture must also offer the buffer protocol.") from None


def png(pixels: bytes, height: int, width: int, channels: int) -> bytes:
    """An 8-bit PNG of row-major pixels (grey, RGB or RGBA), without filtering."""
    if height <= 0 or width <= 0:
        raise ValueError(f"An array picture must have pixels, not shape ({height}, {width}).")
    stride = width * channels
    rows = b"".join(b"\x00" + pixels[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 6))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

"""Face pictures kept with each enrolled face: the region around the face, shrunk and encoded, enough to
detect, align and embed the face again under another contract (a re-embed). Pure: numpy, OpenCV, Pillow.

The region is a square centred on the detector's box, ENLARGEMENT times the box's longer side, clipped to
the picture: MTCNN and RetinaFace both find again a face that fills half the picture's side (the rest is
head and background, which both need to place the box and landmarks). It is shrunk to at most MAX_SIDE_PX a
side and encoded as KEPT_FORMAT, chosen by bench/face_pictures.py over the 118 5-celebrity pictures
(docs/limits.md has the table). Two figures, against the embedding from the original picture:
- the face aligned on the kept picture at its original box: cosine >= 0.995 for every face (the encoding's
  and the shrinking's own loss: min 0.9956, mean 0.9993);
- the face detected again on the kept picture, as a re-embed does: mean 0.978, min 0.737, which is what a
  lossless crop of the same region at full resolution gets too (0.978, 0.733): detectors place a box a
  little differently when a picture is framed differently, whatever the encoding.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from facerec.images import decode_image
from gallery.rows import Box, KeptPicture

# Chosen by bench/face_pictures.py (see the module docstring). At 320 px a side the face keeps at least 160
# px, FaceNet's input: shrinking it further lost up to cosine 0.015 even losslessly (PNG at 256 px).
ENLARGEMENT = 2.0
MAX_SIDE_PX = 320


@dataclass(frozen=True)
class PictureFormat:
    """An encoding of kept pictures: "jpeg" or "webp" at a quality (1-100), "png"; lossless: WebP's lossless
    mode; chroma_444: JPEG without chroma subsampling (Pillow's default halves the colour resolution)."""

    name: str
    quality: int = 0
    lossless: bool = False
    chroma_444: bool = False

    @property
    def media_type(self) -> str:
        return f"image/{self.name}"

    @property
    def label(self) -> str:
        if self.name == "png" or self.lossless:
            return f"{self.name} lossless"
        return f"{self.name} q{self.quality}" + (" 4:4:4" if self.chroma_444 else "")


# JPEG without chroma subsampling at quality 98: the smallest that kept the encoding's own loss within
# cosine 0.995 (bench/face_pictures.py's "same box" minimum 0.9956, mean 0.9993; 26 KB a face on average).
# Lossy WebP and JPEG at 95 or less lost up to 0.02-0.15 on some face; lossless WebP/PNG cost 39/59 KB.
KEPT_FORMAT = PictureFormat("jpeg", 98, chroma_444=True)


def face_region(
    width: int, height: int, box: Box, enlargement: float = ENLARGEMENT
) -> tuple[int, int, int, int]:
    """The kept region of a width x height picture around box (x, y, w, h): a square of enlargement times
    the box's longer side centred on the box, clipped to the picture. Returns x0, y0, x1, y1 (exclusive)."""
    x, y, w, h = box
    side = enlargement * max(w, h, 1.0)
    cx, cy = x + w / 2, y + h / 2
    x0 = int(np.clip(np.floor(cx - side / 2), 0, width - 1))
    y0 = int(np.clip(np.floor(cy - side / 2), 0, height - 1))
    x1 = int(np.clip(np.ceil(cx + side / 2), x0 + 1, width))
    y1 = int(np.clip(np.ceil(cy + side / 2), y0 + 1, height))
    return x0, y0, x1, y1


def encode(rgb: NDArray[np.uint8], fmt: PictureFormat = KEPT_FORMAT) -> bytes:
    """(h, w, 3) uint8 RGB → the encoded picture."""
    out = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if fmt.name == "png":
        image.save(out, format="PNG")
    elif fmt.name == "jpeg":
        image.save(out, format="JPEG", quality=fmt.quality, subsampling=0 if fmt.chroma_444 else 2)
    elif fmt.name == "webp":
        image.save(out, format="WEBP", quality=fmt.quality, lossless=fmt.lossless, method=4)
    else:
        raise ValueError(f"no encoder for {fmt.name!r}")
    return out.getvalue()


def face_picture(
    image: bytes | NDArray[np.uint8],
    box: Box,
    max_side_px: int = MAX_SIDE_PX,
    enlargement: float = ENLARGEMENT,
    fmt: PictureFormat = KEPT_FORMAT,
    landmarks: Sequence[tuple[float, float]] = (),
) -> KeptPicture:
    """The kept picture of the face at box on image: encoded bytes (decoded here with their EXIF orientation
    applied, as the detector does, so the box fits) or the upright (h, w, 3) uint8 RGB picture. The box is
    in pixels of the upright picture; the returned one is in pixels of the kept picture."""
    upright = decode_image(image) if isinstance(image, bytes) else image
    height, width = upright.shape[:2]
    x0, y0, x1, y1 = face_region(width, height, box, enlargement)
    region = upright[y0:y1, x0:x1]
    scale = min(1.0, max_side_px / max(region.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
        # INTER_AREA averages the pixels each output pixel covers: no aliasing when shrinking.
        region = np.asarray(cv2.resize(region, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        scale_x, scale_y = size[0] / (x1 - x0), size[1] / (y1 - y0)
    else:
        scale_x = scale_y = 1.0
    x, y, w, h = box
    kept_box = ((x - x0) * scale_x, (y - y0) * scale_y, w * scale_x, h * scale_y)
    kept_points = tuple(((px - x0) * scale_x, (py - y0) * scale_y) for px, py in landmarks)
    data = encode(region, fmt)
    return KeptPicture(data, fmt.media_type, region.shape[1], region.shape[0], kept_box, kept_points)

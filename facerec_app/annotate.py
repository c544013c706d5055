"""Draws identified faces on a picture: boxes, five landmarks, names (or "unknown") with distances."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from facerec.v1 import gallery_pb2

KNOWN = (40, 200, 80)
UNKNOWN = (230, 60, 50)


def annotate(rgb: NDArray[np.uint8], faces: list[gallery_pb2.IdentifiedFace]) -> Image.Image:
    """rgb: (h, w, 3) upright picture (as the detector saw it) → an annotated copy of the same size."""
    image = Image.fromarray(rgb).copy()
    draw = ImageDraw.Draw(image)
    width = max(2, round(min(image.size) / 200))
    for face in faces:
        colour = KNOWN if face.known else UNKNOWN
        b = face.box
        draw.rectangle([b.x, b.y, b.x + b.width, b.y + b.height], outline=colour, width=width)
        lm = face.landmarks
        for point in (lm.left_eye, lm.right_eye, lm.nose, lm.mouth_left, lm.mouth_right):
            r = width + 1
            draw.ellipse([point.x - r, point.y - r, point.x + r, point.y + r], fill=colour)
        label = f"{face.identity if face.known else 'unknown'} {face.distance:.2f}"
        text_box = draw.textbbox((b.x, b.y), label)
        top = max(0.0, b.y - (text_box[3] - text_box[1]) - 4)
        draw.rectangle([b.x, top, b.x + (text_box[2] - text_box[0]) + 4, b.y], fill=colour)
        draw.text((b.x + 2, top + 1), label, fill=(255, 255, 255))
    return image

"""Draws identified faces on a picture: boxes, five landmarks, names (or "unknown") with distances."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

import facerec_client

KNOWN = (40, 200, 80)
UNKNOWN = (230, 60, 50)
NOT_IDENTIFIABLE = (150, 150, 150)

Rect = tuple[float, float, float, float]  # left, top, right, bottom


def text_px(size: tuple[int, int]) -> int:
    """Label text height: readable on a thumbnail, in proportion on a large picture."""
    return max(12, round(min(size) / 22))


def line_px(size: tuple[int, int]) -> int:
    return max(1, round(min(size) / 250))


def label_of(face: facerec_client.Face) -> str:
    if face.not_identifiable:
        return (
            "too small"
            if face.not_identifiable is facerec_client.NotIdentifiable.FACE_TOO_SMALL
            else "unsure"
        )
    return f"{face.identity if face.known else 'unknown'} {face.distance:.2f}"


def overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(
    sizes: Sequence[tuple[float, float]], boxes: Sequence[Rect], picture: tuple[int, int]
) -> list[Rect]:
    """One rectangle per label, inside the picture and not over an earlier label: above its box if that
    is free, else below it, else the nearest free row further down (or up) in the same column."""
    width, height = picture
    placed: list[Rect] = []
    for (w, h), box in zip(sizes, boxes, strict=True):
        w, h = min(w, width), min(h, height)
        left = min(max(0.0, box[0]), width - w)
        preferred = [min(max(0.0, top), height - h) for top in (box[1] - h, box[3], box[1])]
        anywhere = sorted(range(int(height - h) + 1), key=lambda top: abs(top - preferred[0]))
        candidates = [(left, top, left + w, top + h) for top in [*preferred, *anywhere]]
        free = (r for r in candidates if not any(overlaps(r, p) for p in placed))
        # A picture full of labels: overlap rather than drop one.
        placed.append(next(free, candidates[0]))
    return placed


def annotate(rgb: NDArray[np.uint8], faces: list[facerec_client.Face]) -> Image.Image:
    """rgb: (h, w, 3) upright picture (as the detector saw it) → an annotated copy of the same size."""
    image = Image.fromarray(rgb).copy()
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=text_px(image.size))
    width = line_px(image.size)
    pad = max(2, text_px(image.size) // 6)
    colours, boxes, labels, sizes = [], [], [], []
    for face in faces:
        colour = NOT_IDENTIFIABLE if face.not_identifiable else KNOWN if face.known else UNKNOWN
        b = face.box
        if b is None:  # only an embedding query's faces have no box, and they have no picture either
            continue
        box = (b.x, b.y, b.x + b.width, b.y + b.height)
        draw.rectangle(box, outline=colour, width=width)
        lm = face.landmarks
        # Dots in proportion to the face, never larger than the text.
        r = max(1.0, min(b.width / 40, text_px(image.size) / 6))
        points = (lm.left_eye, lm.right_eye, lm.nose, lm.mouth_left, lm.mouth_right) if lm else ()
        for point in points:
            draw.ellipse([point.x - r, point.y - r, point.x + r, point.y + r], fill=colour)
        label = label_of(face)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        colours.append(colour)
        boxes.append(box)
        labels.append((label, left, top))
        sizes.append((right - left + 2 * pad, bottom - top + 2 * pad))
    for rect, (label, left, top), colour in zip(
        place_labels(sizes, boxes, image.size), labels, colours, strict=True
    ):
        draw.rectangle(rect, fill=colour)
        draw.text((rect[0] + pad - left, rect[1] + pad - top), label, fill=(255, 255, 255), font=font)
    return image

"""Seeded augmentations of aligned face crops: the pictures int8 FaceNet meets beyond the project's own.

The 5-celebrity pictures are studio-lit, sharp, frontal and in colour. Users' pictures are not: mirrored,
darker or flatter, out of focus, small faces scaled up, heavily compressed, grey, a little tilted. Each
augmentation imitates one of these on a (160, 160, 3) uint8 crop, so int8's activation ranges are
measured on them and its guard checks them. Pure numpy and OpenCV; the same rng state gives the same crop.
"""

from __future__ import annotations

import enum

import cv2
import numpy as np
from numpy.typing import NDArray


class Augmentation(enum.Enum):
    """One way a user's picture differs from the project's."""

    MIRROR = "mirror"
    BRIGHTNESS_CONTRAST = "brightness-contrast"
    BLUR = "blur"
    RESCALE = "rescale"
    JPEG = "jpeg"
    GRAYSCALE = "grayscale"
    ROTATION = "rotation"


# The ranges stay within what a detector still finds and a person still recognises: a user's picture,
# not an attack. Rotation is small because the detector's box is drawn upright around the face.
CONTRAST_RANGE = (0.6, 1.4)
BRIGHTNESS_RANGE = (-40.0, 40.0)
BLUR_SIGMA_RANGE = (0.6, 1.8)
RESCALE_SIDE_RANGE_PX = (40, 120)
JPEG_QUALITY_RANGE = (15, 60)
ROTATION_DEGREES = 10.0


def apply(crop: NDArray[np.uint8], kind: Augmentation, rng: np.random.Generator) -> NDArray[np.uint8]:
    """crop: (h, w, 3) uint8 RGB → the same shape, changed by `kind` with strengths drawn from rng."""
    h, w = crop.shape[:2]
    if kind is Augmentation.MIRROR:
        return np.ascontiguousarray(crop[:, ::-1])
    if kind is Augmentation.BRIGHTNESS_CONTRAST:
        contrast = rng.uniform(*CONTRAST_RANGE)
        brightness = rng.uniform(*BRIGHTNESS_RANGE)
        x = crop.astype(np.float32)
        return _to_uint8((x - x.mean()) * contrast + x.mean() + brightness)
    if kind is Augmentation.BLUR:
        sigma = rng.uniform(*BLUR_SIGMA_RANGE)
        return np.asarray(cv2.GaussianBlur(crop, (0, 0), sigma), dtype=np.uint8)
    if kind is Augmentation.RESCALE:
        # A small face in a big picture: fewer pixels, scaled up to the crop again.
        side = int(rng.integers(RESCALE_SIDE_RANGE_PX[0], RESCALE_SIDE_RANGE_PX[1] + 1))
        small = cv2.resize(crop, (side, side * h // w), interpolation=cv2.INTER_AREA)
        return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    if kind is Augmentation.JPEG:
        quality = int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))
        ok, encoded = cv2.imencode(".jpg", crop[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("OpenCV could not encode the crop as JPEG")
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        if decoded is None:
            raise ValueError("OpenCV could not decode the crop it encoded")
        return np.ascontiguousarray(decoded[:, :, ::-1])
    if kind is Augmentation.GRAYSCALE:
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if kind is Augmentation.ROTATION:
        angle = rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES)
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        # Corners come from the crop's own edge, as a rotated picture would show more background.
        rotated = cv2.warpAffine(crop, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return np.asarray(rotated, dtype=np.uint8)
    raise ValueError(f"unknown augmentation {kind!r}")


def augment(
    crop: NDArray[np.uint8], rng: np.random.Generator
) -> tuple[NDArray[np.uint8], list[Augmentation]]:
    """A random combination of augmentations (each with probability 1/2, at least one), applied in the
    declared order. Returns the new crop and what was applied; the input is not changed."""
    kinds = list(Augmentation)
    chosen = [kind for kind in kinds if rng.random() < 0.5]
    if not chosen:
        chosen = [kinds[int(rng.integers(len(kinds)))]]
    out = crop
    for kind in chosen:
        out = apply(out, kind, rng)
    return out, chosen


def augmented(crops: NDArray[np.uint8], copies: int, seed: int) -> NDArray[np.uint8]:
    """crops: (n, h, w, 3) uint8 → (n * copies, h, w, 3): `copies` augmentations of each crop, in order
    (crop 0's copies first). The same crops, copies and seed give the same array."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(crops) * copies, *crops.shape[1:]), dtype=np.uint8)
    for i, crop in enumerate(crops):
        for j in range(copies):
            out[i * copies + j] = augment(crop, rng)[0]
    return out


def _to_uint8(x: NDArray[np.float32]) -> NDArray[np.uint8]:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)

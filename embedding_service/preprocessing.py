"""Preprocessing of face crops for FaceNet. Pure numpy."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

INPUT_SIZE = 160
DESCRIPTION = "resize to 160x160 (bilinear), per-image standardization (x - mean) / max(std, 1/sqrt(n))"


def standardize(image: NDArray[np.generic]) -> NDArray[np.float32]:
    """Per-image standardization, as the tutorial and tf.image.per_image_standardization do.

    image: (h, w, 3) any numeric type. Returns float32 of the same shape, zero mean, unit std;
    std is floored at 1/sqrt(n) so a flat image does not divide by zero.
    """
    x = image.astype(np.float32)
    std = max(float(x.std()), 1.0 / np.sqrt(x.size))
    out: NDArray[np.float32] = (x - x.mean()) / std
    return out


def resize_crop(crop: NDArray[np.uint8], size: int = INPUT_SIZE) -> NDArray[np.uint8]:
    """crop: (h, w, 3) uint8 RGB → (size, size, 3) uint8; a crop already at size is returned as is."""
    if crop.shape[0] == size and crop.shape[1] == size:
        return crop
    return np.asarray(cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


def prepare_batch(crops: list[NDArray[np.uint8]], size: int = INPUT_SIZE) -> NDArray[np.float32]:
    """crops: list of (h, w, 3) uint8 RGB → (n, size, size, 3) float32 standardized, ready for the model."""
    batch = np.empty((len(crops), size, size, 3), dtype=np.float32)
    for i, crop in enumerate(crops):
        batch[i] = standardize(resize_crop(crop, size))
    return batch

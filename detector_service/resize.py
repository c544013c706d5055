"""mtcnn's pyramid resize (tf.image.resize AREA) without an eager TensorFlow op per level.

mtcnn 1.0.0 shrinks the picture with one eager TensorFlow call per pyramid level (~8 a picture),
each paying TensorFlow's dispatch and tensor conversion. OpenCV's area filter agrees with TensorFlow
within 4e-5 on normalized pixels, so the boxes stay mtcnn's (tests/detector_service/test_resize.py).
R-Net's and O-Net's patches are sampled in detector_service/boxes.py, also without TensorFlow.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray


def scaled_shape(height: int, width: int, scale: float) -> tuple[int, int]:
    """The level's size as mtcnn's scale_images gets it: (height, width) * scale, truncated."""
    return int(height * scale), int(width * scale)


def area_resize(image: NDArray[np.float32], scale: float) -> NDArray[np.float32]:
    """(h, w, 3) float32 → (int(h*scale), int(w*scale), 3) float32: each output pixel the mean of the
    input area it covers, fractional pixels weighted by their overlap (tf.image.resize AREA).

    OpenCV's INTER_AREA is that filter (within 2e-7 of the numpy one this replaced, and 3x faster).
    """
    height, width = scaled_shape(image.shape[0], image.shape[1], scale)
    out: NDArray[np.float32] = np.asarray(
        cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), dtype=np.float32
    )
    return out


def working_picture(image: NDArray[np.uint8], max_side_px: int) -> tuple[NDArray[np.uint8], float]:
    """The picture shrunk so its longer side is at most max_side_px, and the ratio (working / original)."""
    height, width = image.shape[:2]
    ratio = min(1.0, max_side_px / max(height, width))
    if ratio >= 1.0:
        return image, 1.0
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    # INTER_AREA averages the pixels each output pixel covers: no aliasing when shrinking a lot.
    shrunk: NDArray[np.uint8] = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
    return shrunk, ratio

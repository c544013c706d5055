"""mtcnn's pyramid resize (tf.image.resize AREA) in numpy, without an eager TensorFlow op per level.

mtcnn 1.0.0 shrinks the picture with one eager TensorFlow call per pyramid level (~8 a picture),
each paying TensorFlow's dispatch and tensor conversion. The same area filter written as two
weighted sums of a few rows/columns agrees with TensorFlow within 4e-5 on normalized pixels, so the
boxes stay mtcnn's (tests/detector_service/test_resize.py). R-Net's and O-Net's patches are sampled
in detector_service/boxes.py, also without TensorFlow.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from numpy.typing import NDArray


def scaled_shape(height: int, width: int, scale: float) -> tuple[int, int]:
    """The level's size as mtcnn's scale_images gets it: (height, width) * scale, truncated."""
    return int(height * scale), int(width * scale)


def area_resize(image: NDArray[np.float32], scale: float) -> NDArray[np.float32]:
    """(h, w, 3) float32 → (int(h*scale), int(w*scale), 3) float32: each output pixel the mean of the
    input area it covers, fractional pixels weighted by their overlap (tf.image.resize AREA).

    Separable: a weighted sum of a few input rows, then of a few columns (the taps below).
    """
    height, width = scaled_shape(image.shape[0], image.shape[1], scale)
    rows, row_weights = _area_taps(image.shape[0], height)
    cols, col_weights = _area_taps(image.shape[1], width)
    tall = np.einsum("ot,otwc->owc", row_weights, image[rows])
    out: NDArray[np.float32] = np.einsum("pt,optc->opc", col_weights, tall[:, cols]).astype(
        np.float32, copy=False
    )
    return out


@functools.lru_cache(maxsize=256)
def _area_taps(size_in: int, size_out: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """For each output index, the input indices it covers and their weights (overlap / scale, summing to 1).

    (size_out, taps) each; unused taps point at index 0 with weight 0.
    """
    scale = size_in / size_out
    starts = np.arange(size_out) * scale
    ends = starts + scale
    first = np.floor(starts).astype(np.intp)
    taps = int(np.max(np.ceil(ends).astype(np.intp) - first))
    index = first[:, None] + np.arange(taps)[None, :]
    overlap = np.minimum(index + 1, ends[:, None]) - np.maximum(index, starts[:, None])
    weights = np.where(overlap > 0, overlap, 0.0) / scale
    valid = (weights > 0) & (index < size_in)
    return np.where(valid, index, 0), np.where(valid, weights, 0.0).astype(np.float32)


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

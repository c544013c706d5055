"""MTCNN's image pyramid, with min_face_size honoured (mtcnn 1.0.0's own pyramid ignores it when counting)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

# P-Net's window: a face of this many pixels at some pyramid level is what P-Net can see.
PNET_CELL_PX = 12
SCALE_FACTOR = 0.709


def build_scales(
    width: int, height: int, min_face_size_px: float, scale_factor: float = SCALE_FACTOR
) -> NDArray[np.float64]:
    """The scales at which P-Net looks at a width x height picture, largest first.

    Level k scales by (12 / min_face_size_px) * scale_factor**k. mtcnn 1.0.0 counts its levels from
    min(width, height) alone, as if min_face_size were 12, so for min_face_size >= 30 its last levels
    shrink the picture below P-Net's 12-px window and the whole batch fails with no faces. Here a level
    is kept only while the shrunk picture still holds one window. At mtcnn's default (20 px) this gives
    mtcnn's own levels, except where its rounding drops the last level that still fits (a level that
    only finds faces filling the picture).
    """
    min_side = min(width, height)
    first = PNET_CELL_PX / float(min_face_size_px)
    if min_side * first < PNET_CELL_PX:
        return np.empty(0, dtype=np.float64)
    count = math.floor(math.log(PNET_CELL_PX / (min_side * first)) / math.log(scale_factor)) + 1
    scales: NDArray[np.float64] = first * scale_factor ** np.arange(count, dtype=np.float64)
    # Float rounding of the log can admit one level that falls a hair under the window.
    return scales[min_side * scales >= PNET_CELL_PX - 1e-9]


def mtcnn_scales(
    width: int, height: int, min_face_size_px: float, scale_factor: float = SCALE_FACTOR
) -> NDArray[np.float64]:
    """mtcnn 1.0.0's own pyramid (utils.images.build_scale_pyramid), kept to compare against."""
    min_dim = min(width, height)
    count = round(-((np.log(min_dim / PNET_CELL_PX) / np.log(scale_factor)) + 1))
    scales: NDArray[np.float64] = (PNET_CELL_PX / min_face_size_px) * scale_factor ** np.arange(count)
    return scales

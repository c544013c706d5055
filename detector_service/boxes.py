"""MTCNN's box arithmetic and patch sampling in numpy: mtcnn 1.0.0's answers without importing it.

`import mtcnn.utils...` runs mtcnn's package __init__, which imports TensorFlow (hundreds of MB resident
and seconds of start-up), and its patches come from tf.image.crop_and_resize. Each function here is the
mtcnn helper it names, rewritten over numpy with the same arithmetic, so the service finds mtcnn's faces
(tests/detector_service/test_boxes.py compares them one by one; test_same_faces.py end to end).

Rows are mtcnn's: [picture index, x1, y1, x2, y2, score, (5 landmark x, 5 landmark y)].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detector_service.pyramid import PNET_CELL_PX

# P-Net's stride, in pixels of its pyramid level.
PNET_STRIDE_PX = 2


def pnet_boxes(
    regression: NDArray[np.float32], probability: NDArray[np.float32], threshold: float, scale: float
) -> NDArray[np.float64]:
    """mtcnn's generate_bounding_box then upscale_bboxes: P-Net cells above threshold as boxes of the
    picture the level was shrunk from, by descending score.

    regression (n, h', w', 4) and probability (n, h', w', 2) as P-Net gives them. Returns (k, 6) rows.
    """
    score = probability[:, :, :, 1]
    picture, y, x = np.nonzero(score > threshold)
    if not len(picture):  # most of a pyramid's small levels: skip the arithmetic on nothing
        return np.empty((0, 6))
    # mtcnn multiplies float32 offsets by integer arrays: numpy computes that in float64.
    reg = regression[picture, y, x].T.astype(np.float64)
    # mtcnn's cell spans (stride * i + 1) .. (stride * i + 12): 11 px wide, and the offsets are in that unit.
    first_x, first_y = x * PNET_STRIDE_PX + 1, y * PNET_STRIDE_PX + 1
    last_x, last_y = x * PNET_STRIDE_PX + PNET_CELL_PX, y * PNET_STRIDE_PX + PNET_CELL_PX
    side = PNET_CELL_PX - 1
    x1, y1 = first_x + reg[0] * side, first_y + reg[1] * side
    x2, y2 = last_x + reg[2] * side, last_y + reg[3] * side
    rows = np.stack([picture, x1, y1, x2, y2, score[picture, y, x]], axis=0).T.astype(np.float64)
    # mtcnn's sort_by_scores(ascending=False): an ascending argsort, reversed (ties in reverse order).
    rows = rows[np.argsort(rows[:, 5])[::-1]]
    rows[:, 1:5] = rows[:, 1:5] / scale
    return rows


def to_square(rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """mtcnn's resize_to_square: each box grown along its shorter side to a square on the same centre."""
    rows = rows.copy()
    h = rows[:, 4] - rows[:, 2]
    w = rows[:, 3] - rows[:, 1]
    side = np.maximum(w, h)
    rows[:, 1] = rows[:, 1] + w * 0.5 - side * 0.5
    rows[:, 2] = rows[:, 2] + h * 0.5 - side * 0.5
    rows[:, 3] = rows[:, 1] + side
    rows[:, 4] = rows[:, 2] + side
    return rows


def refine(
    rows: NDArray[np.float64], offsets: NDArray[np.float32], scores: NDArray[np.float32]
) -> NDArray[np.float64]:
    """mtcnn's replace_confidence then adjust_bboxes: the net's face score in column 5 and its offsets
    applied to the box in units of the box's side (+1, as mtcnn counts it). offsets (n, 4), scores (n, 2)."""
    rows = rows.copy()
    rows[:, 5] = scores[:, -1]
    w = rows[:, 3] - rows[:, 1] + 1
    h = rows[:, 4] - rows[:, 2] + 1
    rows[:, 1:5] += offsets * np.stack([w, h, w, h], axis=-1)
    return rows


def place_landmarks(landmarks: NDArray[np.float32], rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """mtcnn's adjust_landmarks: O-Net's (n, 10) landmarks (5 x then 5 y, fractions of the box) in pixels."""
    placed = np.asarray(landmarks, dtype=np.float32).copy()
    w = rows[:, 3:4] - rows[:, 1:2] + 1
    h = rows[:, 4:5] - rows[:, 2:3] + 1
    placed[:, 0:5] = w * placed[:, 0:5] + rows[:, 1:2] - 1
    placed[:, 5:10] = h * placed[:, 5:10] + rows[:, 2:3] - 1
    return placed.astype(np.float64)


def above(rows: NDArray[np.float64], threshold: float) -> NDArray[np.float64]:
    """mtcnn's pick_matches: the rows whose score (column 5) is above threshold."""
    return rows[rows[:, 5] > threshold]


def clip_to_pictures(rows: NDArray[np.float64], shapes: NDArray[np.int64]) -> NDArray[np.float64]:
    """mtcnn's limit_bboxes(limit_landmarks=False): x in [0, width-1], y in [0, height-1] of the row's
    picture. shapes: (pictures, 3) as (height, width, channels)."""
    rows = rows.copy()
    own = shapes[rows[:, 0].astype(int)]
    for column, side in ((1, 1), (3, 1), (2, 0), (4, 0)):
        rows[:, column] = np.minimum(np.maximum(rows[:, column], 0), own[:, side] - 1)
    return rows


def crop_and_resize(
    picture: NDArray[np.float32], rows: NDArray[np.float64], size: int
) -> NDArray[np.float32]:
    """(n, size, size, 3) patches of one (h, w, 3) picture, as mtcnn's extract_patches samples them.

    mtcnn hands tf.image.crop_and_resize boxes divided by the picture's width and height, which that op
    multiplies by (width - 1) and (height - 1): sample k of a box runs from x1 * (w-1)/w in equal steps
    to x2 * (w-1)/w, bilinear between the four pixels around it, and 0 where it falls outside the
    picture. Computed in float32, as the op does, so scores stay within float rounding of mtcnn's.
    """
    height, width = picture.shape[:2]
    ys = _sample_at(rows[:, 2], rows[:, 4], height, size)
    xs = _sample_at(rows[:, 1], rows[:, 3], width, size)
    top, y_lerp, y_inside = _neighbours(ys, height)
    left, x_lerp, x_inside = _neighbours(xs, width)
    bottom, right = np.minimum(top + 1, height - 1), np.minimum(left + 1, width - 1)
    # Four gathers from the picture seen as (h * w, 3): row offsets (n, size, 1) plus columns (n, 1, size).
    flat = picture.reshape(-1, 3)
    upper_row, lower_row = (top * width)[:, :, None], (bottom * width)[:, :, None]
    lft, rgt = left[:, None, :], right[:, None, :]
    xl = x_lerp[:, None, :, None]
    # The same float32 operations in the same order as upper = tl + (tr - tl) * xl, lower likewise, then
    # upper + (lower - upper) * yl, but in place: a quarter less CPU than fresh arrays for each step.
    upper = _row_lerp(flat, upper_row, lft, rgt, xl)
    patches = _row_lerp(flat, lower_row, lft, rgt, xl)
    patches -= upper
    patches *= y_lerp[:, :, None, None]
    patches += upper
    if not (y_inside.all() and x_inside.all()):
        patches[~(y_inside[:, :, None] & x_inside[:, None, :])] = 0.0
    return np.ascontiguousarray(patches, dtype=np.float32)


def _row_lerp(
    flat: NDArray[np.float32],
    rows: NDArray[np.int64],
    left: NDArray[np.int64],
    right: NDArray[np.int64],
    x_lerp: NDArray[np.float32],
) -> NDArray[np.float32]:
    """left + (right - left) * x_lerp between the pixels at rows + left and rows + right of `flat`, in place."""
    start = np.take(flat, rows + left, axis=0)
    out: NDArray[np.float32] = np.take(flat, rows + right, axis=0)
    out -= start
    out *= x_lerp
    out += start
    return out


def _sample_at(
    start: NDArray[np.float64], stop: NDArray[np.float64], side: int, size: int
) -> NDArray[np.float32]:
    """(n, size) float32 sample positions along one axis: crop_and_resize's in_y for boxes start/side..stop/side."""
    lo = (start / side).astype(np.float32)
    hi = (stop / side).astype(np.float32)
    span = np.float32(side - 1)
    step = (hi - lo) * span / np.float32(size - 1)
    k = np.arange(size, dtype=np.float32)
    out: NDArray[np.float32] = lo[:, None] * span + k[None, :] * step[:, None]
    return out


def _neighbours(
    at: NDArray[np.float32], side: int
) -> tuple[NDArray[np.intp], NDArray[np.float32], NDArray[np.bool_]]:
    """The pixel below each sample position (clamped into the picture), the fraction past it, and whether
    the position lies inside [0, side - 1] (the op fills samples outside with 0)."""
    inside = (at >= 0) & (at <= side - 1)
    floor = np.floor(at)
    lerp = (at - floor).astype(np.float32)
    index = np.clip(floor, 0, side - 1).astype(np.intp)
    return index, lerp, inside

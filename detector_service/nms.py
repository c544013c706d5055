"""mtcnn 1.0.0's non-maximum suppression with the same answers in bounded memory.

mtcnn's smart_nms_from_bboxes builds the full N x N IoU matrix (and four more of that size) per picture:
at the ~30 000 P-Net candidates of a picture holding 256 faces that is gigabytes. Here the same matrix
is computed in BLOCK x BLOCK tiles, so memory stays at a few tiles whatever N is.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

# Tile side: five float64 tiles of 1024 x 1024 are 40 MiB.
BLOCK = 1024


def smart_nms(
    bboxes: NDArray[np.float64], threshold: float, method: str = "union", initial_sort: bool = True
) -> NDArray[np.float64]:
    """mtcnn's smart_nms_from_bboxes: rows [image id, x1, y1, x2, y2, score, ...], grouped by image id.

    Within a picture (in score order when initial_sort), a box is dropped when any box before it overlaps
    it by more than threshold (IoU by union, or intersection over the smaller area for "min"), whether or
    not that earlier box was itself dropped: mtcnn's rule, kept so the faces found stay mtcnn's.
    """
    if method not in ("union", "min"):
        raise ValueError("Method should be either 'union' or 'min'.")
    if initial_sort:
        # mtcnn's sort_by_scores: ascending argsort, reversed.
        bboxes = bboxes[np.argsort(bboxes[:, 5])[::-1]]
    if len(bboxes) <= BLOCK:
        # All pictures in one tile, a box compared only with boxes of its own picture: the same survivors
        # in the same order as the loop below (a stable sort by picture keeps each picture's order), without
        # a pass per picture (P-Net's per-level NMS runs ~8 times a picture, mostly on a few boxes).
        bboxes = bboxes[np.argsort(bboxes[:, 0], kind="stable")]
        return bboxes[_survivors(bboxes[:, 1:5], threshold, method, bboxes[:, 0])]
    kept = []
    for image_id in np.unique(bboxes[:, 0]):
        mine = bboxes[bboxes[:, 0] == image_id]
        kept.append(mine[_survivors(mine[:, 1:5], threshold, method)])
    return np.concatenate(kept, axis=0) if kept else np.empty((0, 6))


def _survivors(
    boxes: NDArray[np.float64], threshold: float, method: str, pictures: NDArray[np.float64] | None = None
) -> NDArray[np.int64]:
    """Indices j of boxes (n, 4) that no box i < j (of the same picture, when pictures is given) overlaps
    by more than threshold."""
    n = len(boxes)
    if n < 2:
        return np.arange(n)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    dropped = np.zeros(n, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j0 in range(0, n, BLOCK):
            cols = slice(j0, min(n, j0 + BLOCK))
            b = boxes[cols]
            for i0 in range(0, cols.stop, BLOCK):
                rows = slice(i0, min(cols.stop, i0 + BLOCK))
                a = boxes[rows]
                inter = np.maximum(
                    0, np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
                )
                inter = inter * np.maximum(
                    0, np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
                )
                if method == "union":
                    overlap = inter / (area[rows][:, None] + area[cols][None, :] - inter)
                else:
                    overlap = inter / np.minimum(area[rows][:, None], area[cols][None, :])
                earlier = (
                    np.arange(rows.start, rows.stop)[:, None] < np.arange(cols.start, cols.stop)[None, :]
                )
                if pictures is not None:
                    earlier &= pictures[rows][:, None] == pictures[cols][None, :]
                dropped[cols] |= ((overlap > threshold) & earlier).any(axis=0)
    return np.flatnonzero(~dropped)


def greedy_nms(boxes: NDArray[np.float64], threshold: float) -> NDArray[np.int64]:
    """Indices of the boxes (n, 4) [x1, y1, x2, y2], given by descending score, that survive greedy NMS:
    a box is kept unless a box already kept overlaps it by more than threshold (IoU). The common rule
    (RetinaFace's, OpenCV's NMSBoxes), unlike mtcnn's above. O(n x kept) time, O(n) memory."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    alive = np.ones(len(boxes), dtype=bool)
    kept = []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        kept.append(i)
        rest = np.flatnonzero(alive[i + 1 :]) + i + 1
        if not len(rest):
            break
        w = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]))
        h = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]))
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (area[i] + area[rest] - inter)
        alive[rest[iou > threshold]] = False
    return np.asarray(kept, dtype=np.int64)

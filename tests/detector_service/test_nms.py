"""The tiled non-maximum suppression answers exactly as mtcnn's full-matrix one."""

from __future__ import annotations

import numpy as np
import pytest
from mtcnn.utils.bboxes import smart_nms_from_bboxes

from detector_service import nms


@pytest.mark.parametrize("method", ["union", "min"])
@pytest.mark.parametrize("initial_sort", [True, False])
# 64: several tiles per picture, partial ones at the edges; 1024: all pictures' boxes in one tile at once.
@pytest.mark.parametrize("block", [64, 1024])
def test_tiled_nms_keeps_exactly_the_boxes_mtcnn_keeps(
    method: str, initial_sort: bool, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nms, "BLOCK", block)
    rng = np.random.default_rng(7)
    for _ in range(10):
        n = int(rng.integers(1, 500))
        corner = rng.uniform(0, 300, (n, 2))
        boxes = np.column_stack(
            [rng.integers(0, 3, n), corner, corner + rng.uniform(5, 80, (n, 2)), rng.uniform(0, 1, n)]
        )
        ours = nms.smart_nms(boxes, 0.5, method, initial_sort)
        theirs = smart_nms_from_bboxes(boxes, 0.5, method=method, initial_sort=initial_sort)
        assert np.array_equal(ours, theirs)


def test_no_boxes_gives_an_empty_array() -> None:
    assert nms.smart_nms(np.empty((0, 6)), 0.5).shape == (0, 6)


def brute_force_greedy(boxes: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS written the slow, obvious way: each box against every box kept before it."""
    kept: list[int] = []
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        overlaps = []
        for j in kept:
            a1, b1, a2, b2 = boxes[j]
            inter = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
            overlaps.append(inter / ((x2 - x1) * (y2 - y1) + (a2 - a1) * (b2 - b1) - inter))
        if all(o <= threshold for o in overlaps):
            kept.append(i)
    return kept


def test_greedy_nms_keeps_what_brute_force_keeps() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(1, 300))
        corner = rng.uniform(0, 200, (n, 2))
        boxes = np.hstack([corner, corner + rng.uniform(5, 80, (n, 2))])
        assert nms.greedy_nms(boxes, 0.4).tolist() == brute_force_greedy(boxes, 0.4)
    assert nms.greedy_nms(np.empty((0, 4)), 0.4).tolist() == []

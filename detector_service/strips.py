"""P-Net run over horizontal strips of a pyramid level instead of the whole level at once: the same outputs, bit
for bit, at up to half the CPU on large levels.

Why: P-Net's first layer writes 10 channels (16 in onnxruntime's blocked layout) at the level's full size,
and its PReLU then makes four more passes over that map. On a 600x480 level that map is 18 MB, so every
pass goes to memory; a strip of a few thousand output cells keeps each layer's map in the core's cache.
P-Net alone on one thread, random levels: 300x240 7.8 → 4.9 ms, 600x480 46 → 22 ms, 960x720 132 → 59 ms;
a whole 1600x1200 picture 447 → 282 ms and a peak of 456 → 240 MiB (`bench.detector --large`). The 118
data-set pictures (about 250 x 300) gain nothing: their levels already fit in the cache.

Why it is exact: P-Net is convolutional with no padding but the first max pool's (2x2, stride 2, SAME_UPPER:
a pad row only when the first convolution's output has an odd height). Output row o sees input rows
[2o, 2o + 12). A strip starting at an even input row 2o and holding 2k + 10 rows gives exactly output rows
o .. o + k - 1, and its first convolution's output (2k + 8 rows) is even, so its pool pads nothing; only the
last strip reaches the level's bottom edge, where it pads as the whole level would. The same kernels see
the same inputs in the same order (tests/detector_service/test_strips.py compares with the whole level).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

# Output cells (pictures x rows x columns) per P-Net call: 4096 keeps a strip's maps within a core's L2 cache
# (measured best between ~2,000 and ~6,000 on levels from 300x240 to 1600x1200).
STRIP_CELLS = 4096
# Each strip re-reads 10 rows of its neighbour: fewer output rows than this and the overlap costs more than
# the cache saves (wide levels).
MIN_STRIP_ROWS = 8
# Input rows an output row needs beyond its own two: P-Net's 12-px window at stride 2.
WINDOW_EXTRA_ROWS = 10

Outputs = tuple[NDArray[np.float32], ...]


def pnet_cells(side: int) -> int:
    """P-Net's output cells along a side of `side` input pixels: conv 3, pool 2 ('same'), conv 3, conv 3."""
    return -(-(side - 2) // 2) - 4


def in_strips(
    pnet: Callable[[NDArray[np.float32]], Outputs], cells: int | None = None
) -> Callable[[NDArray[np.float32]], Outputs]:
    """`pnet` ((n, h, w, 3) → maps of (n, h', w', c) each) run on strips of about `cells` output cells
    (None: STRIP_CELLS as it is at each call), the maps joined along their rows: the outputs of one call on
    the whole input."""

    def run(batch: NDArray[np.float32]) -> Outputs:
        count, height, width = batch.shape[:3]
        rows_out = pnet_cells(height)
        budget = STRIP_CELLS if cells is None else cells
        per_strip = max(MIN_STRIP_ROWS, budget // max(1, count * pnet_cells(width)))
        if rows_out <= per_strip:
            return pnet(batch)
        parts: list[Outputs] = []
        for first in range(0, rows_out, per_strip):
            rows = min(per_strip, rows_out - first)
            last = first + rows >= rows_out
            stop = height if last else 2 * (first + rows) + WINDOW_EXTRA_ROWS
            parts.append(pnet(np.ascontiguousarray(batch[:, 2 * first : stop])))
        return tuple(np.concatenate(maps, axis=1) for maps in zip(*parts, strict=True))

    return run

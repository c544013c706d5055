"""Pictures of faces made from the 5-celebrity data set at run time (never committed): group composites."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def group(pictures: list[NDArray[np.uint8]], start: int, n: int) -> NDArray[np.uint8]:
    """n data-set pictures (every 7th from start) side by side at a common height: a group picture of n faces."""
    chosen = pictures[start : start + 7 * n : 7]
    h = min(p.shape[0] for p in chosen)
    resized = [np.asarray(Image.fromarray(p).resize((p.shape[1] * h // p.shape[0], h))) for p in chosen]
    return np.ascontiguousarray(np.concatenate(resized, axis=1))

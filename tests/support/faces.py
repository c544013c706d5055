"""Pictures of faces made from the 5-celebrity data set at run time (never committed): group composites and
the detector's case sets (faces cut by the frame, small faces, turned faces), with box matching."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def group(pictures: list[NDArray[np.uint8]], start: int, n: int) -> NDArray[np.uint8]:
    """n data-set pictures (every 7th from start) side by side at a common height: a group picture of n faces."""
    chosen = pictures[start : start + 7 * n : 7]
    h = min(p.shape[0] for p in chosen)
    resized = [np.asarray(Image.fromarray(p).resize((p.shape[1] * h // p.shape[0], h))) for p in chosen]
    return np.ascontiguousarray(np.concatenate(resized, axis=1))


@dataclass(frozen=True)
class Case:
    """A made picture and the faces in it: truth (k, 4) boxes [x1, y1, x2, y2] in its pixels, clipped to it."""

    picture: NDArray[np.uint8]
    truth: NDArray[np.float64]


def make_cases(
    pictures: list[NDArray[np.uint8]], truths: list[NDArray[np.float64]], seed: int = 7
) -> dict[str, list[Case]]:
    """The detector's case sets, made from data-set pictures and the faces known in each (truths[i]: (k, 4)
    boxes of pictures[i]). Seeded: the same pictures and truths make the same cases.

    - pictures: the pictures as they are;
    - group: 2 to 6 pictures side by side at a common height (group);
    - edge: a one-face picture cut so a third to a half of its face lies outside, at each edge in turn;
    - small: six one-face pictures shrunk so their faces are 20-40 px, on a 480 x 360 canvas of noise;
    - turned: a one-face picture turned 20-45 degrees either way, mirrored every other time, scaled
      0.6-1.4 and cut to a window of 1.8-2.6 face sides around the face.
    """
    rng = np.random.default_rng(seed)
    single = [i for i, t in enumerate(truths) if len(t) == 1]
    cases: dict[str, list[Case]] = {"pictures": [Case(p, t) for p, t in zip(pictures, truths, strict=True)]}
    cases["group"] = [
        _group_case(pictures, truths, [int(i) for i in rng.choice(len(pictures), n, replace=False)])
        for n in (2, 3, 4, 5, 6) * 3
    ]
    cases["edge"] = [
        _edge_case(pictures[i], truths[i][0], edge, float(rng.uniform(1 / 3, 1 / 2)))
        for i in single[::3]
        for edge in ("left", "right", "top", "bottom")
    ]
    cases["small"] = [_small_case(pictures, truths, single, rng) for _ in range(20)]
    cases["turned"] = [
        _turned_case(pictures[i], truths[i][0], rng, mirror=k % 2 == 1) for k, i in enumerate(single[::2])
    ]
    return cases


def _group_case(
    pictures: list[NDArray[np.uint8]], truths: list[NDArray[np.float64]], chosen: list[int]
) -> Case:
    h = min(pictures[i].shape[0] for i in chosen)
    parts, boxes, x0 = [], [], 0
    for i in chosen:
        scale = h / pictures[i].shape[0]
        w = pictures[i].shape[1] * h // pictures[i].shape[0]
        parts.append(np.asarray(Image.fromarray(pictures[i]).resize((w, h))))
        boxes.extend(truths[i] * scale + np.array([x0, 0, x0, 0]))
        x0 += w
    return Case(np.ascontiguousarray(np.concatenate(parts, axis=1)), np.array(boxes).reshape(-1, 4))


def _edge_case(picture: NDArray[np.uint8], box: NDArray[np.float64], edge: str, outside: float) -> Case:
    """The picture cut at `outside` of the face's width (or height) into the face, from `edge`."""
    x1, y1, x2, y2 = box
    if edge == "left":
        cut = int(x1 + outside * (x2 - x1))
        part, shift = picture[:, cut:], np.array([cut, 0, cut, 0])
    elif edge == "right":
        cut = int(x2 - outside * (x2 - x1))
        part, shift = picture[:, :cut], np.zeros(4)
    elif edge == "top":
        cut = int(y1 + outside * (y2 - y1))
        part, shift = picture[cut:], np.array([0, cut, 0, cut])
    else:
        cut = int(y2 - outside * (y2 - y1))
        part, shift = picture[:cut], np.zeros(4)
    return Case(np.ascontiguousarray(part), _clipped((box - shift)[None], part.shape))


def _small_case(
    pictures: list[NDArray[np.uint8]],
    truths: list[NDArray[np.float64]],
    single: list[int],
    rng: np.random.Generator,
) -> Case:
    """Six one-face pictures shrunk to faces of 20-40 px, each in its own cell of a 3 x 2 grid on noise."""
    height, width = 360, 480
    noise = rng.integers(40, 200, size=(height // 8, width // 8, 3)).astype(np.uint8)
    canvas = np.asarray(Image.fromarray(noise).resize((width, height), Image.Resampling.BILINEAR)).copy()
    boxes = []
    for cell, i in enumerate(rng.choice(single, 6, replace=False)):
        x1, y1, x2, y2 = truths[i][0]
        scale = float(rng.uniform(20, 40)) / max(x2 - x1, y2 - y1)
        h, w = pictures[i].shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(Image.fromarray(pictures[i]).resize(size, Image.Resampling.LANCZOS))
        cx, cy = (cell % 3) * 160, (cell // 3) * 180
        x0 = cx + int(rng.integers(0, max(1, 160 - size[0])))
        y0 = cy + int(rng.integers(0, max(1, 180 - size[1])))
        small = small[: height - y0, : width - x0]
        canvas[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
        boxes.append(truths[i][0] * scale + np.array([x0, y0, x0, y0]))
    return Case(canvas, _clipped(np.array(boxes), canvas.shape))


def _turned_case(
    picture: NDArray[np.uint8], box: NDArray[np.float64], rng: np.random.Generator, mirror: bool
) -> Case:
    """The face turned about its centre, maybe mirrored, scaled, and cut to a window around it."""
    import cv2

    x1, y1, x2, y2 = box
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    side = max(x2 - x1, y2 - y1)
    angle = float(rng.uniform(20, 45)) * (1 if rng.random() < 0.5 else -1)
    scale = float(rng.uniform(0.6, 1.4))
    window = int(side * scale * rng.uniform(1.8, 2.6))
    # The face's centre lands at a random place inside the window's middle half.
    at = window * rng.uniform(0.35, 0.65, size=2)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    if mirror:
        matrix[0] = -matrix[0]
        matrix[0, 2] += 2 * centre[0]
    matrix[:, 2] += at - centre
    turned = cv2.warpAffine(
        picture, matrix, (window, window), borderMode=cv2.BORDER_CONSTANT, borderValue=(110, 110, 110)
    )
    half = side * scale / 2
    truth = np.array([[at[0] - half, at[1] - half, at[0] + half, at[1] + half]])
    return Case(np.ascontiguousarray(turned), _clipped(truth, turned.shape))


def _clipped(boxes: NDArray[np.float64], shape: tuple[int, ...]) -> NDArray[np.float64]:
    out = np.asarray(boxes, dtype=np.float64).copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, shape[1] - 1)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, shape[0] - 1)
    return out


def iou(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """(n, m) intersection over union of boxes a (n, 4) and b (m, 4), [x1, y1, x2, y2]."""
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        out: NDArray[np.float64] = np.nan_to_num(inter / (area_a[:, None] + area_b[None, :] - inter))
    return out


def match(
    truth: NDArray[np.float64], found: NDArray[np.float64], min_iou: float
) -> list[tuple[int, int, float]]:
    """Greedy one-to-one pairs (truth index, found index, IoU), the largest IoU first, each at least min_iou."""
    overlaps = iou(truth, found) if len(truth) and len(found) else np.zeros((len(truth), len(found)))
    pairs = []
    while overlaps.size and overlaps.max() >= min_iou:
        t, f = np.unravel_index(int(np.argmax(overlaps)), overlaps.shape)
        pairs.append((int(t), int(f), float(overlaps[t, f])))
        overlaps[t, :] = -1
        overlaps[:, f] = -1
    return pairs


def corners(faces: Sequence[Any]) -> NDArray[np.float64]:
    """(n, 4) [x1, y1, x2, y2] of detections (anything with .box.x, .y, .width, .height)."""
    xywh = np.array([[f.box.x, f.box.y, f.box.width, f.box.height] for f in faces], dtype=np.float64)
    xywh = xywh.reshape(-1, 4)
    return np.hstack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])


def known_faces(
    first: list[NDArray[np.float64]], second: list[NDArray[np.float64]], min_iou: float = 0.5
) -> list[NDArray[np.float64]]:
    """Per picture, the faces two detectors both found (boxes overlapping by min_iou), each the mean of
    their two boxes: a truth that favours neither."""
    return [
        np.array([(a[i] + b[j]) / 2 for i, j, _ in match(a, b, min_iou)]).reshape(-1, 4)
        for a, b in zip(first, second, strict=True)
    ]

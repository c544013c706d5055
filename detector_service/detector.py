"""Face detection with mtcnn's three networks: numpy pictures in, boxes, landmarks and 160x160 crops out. No grpc."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from detector_service import boxes as box_math
from detector_service.nms import smart_nms
from detector_service.onnx_nets import NetFn, Nets, keras_models, keras_nets, onnx_nets
from detector_service.pyramid import PNET_CELL_PX, SCALE_FACTOR, build_scales
from detector_service.resize import area_resize, working_picture
from detector_service.retinaface import RetinaFace
from detector_service.strips import in_strips, pnet_cells
from facerec import alignment
from facerec.errors import InvalidInput, ModelFault
from facerec.timings import Timings

if TYPE_CHECKING:
    from detector_service.config import Settings

log = logging.getLogger(__name__)

DEFAULT_MIN_FACE_SIZE_PX = 20
SMALLEST_MIN_FACE_SIZE_PX = 12
# mtcnn 1.0.0's stage defaults (the tutorial's settings).
THRESHOLD_PNET, THRESHOLD_RNET, THRESHOLD_ONET = 0.6, 0.7, 0.8
NMS_PNET_SCALE, NMS_PNET_ALL, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7
# A picture is searched at most this large (longer side): a larger one is shrunk first, and its boxes and
# landmarks are mapped back and its crops cut from the original. P-Net's feature maps grow with the
# pixels of each pyramid level (a 6300x6300 picture took 5.7 GB at full size), so this bounds the
# memory of one picture; faces below min_face_size_px x (side / this) original pixels are not found.
MAX_WORKING_SIDE_PX = 1600
# Pixels of one P-Net call at a pyramid level: pictures of one size are stacked up to this many.
MAX_PNET_CALL_PX = MAX_WORKING_SIDE_PX * MAX_WORKING_SIDE_PX
# Candidates per picture kept after each of P-Net and R-Net (the most confident): a picture of many
# faces (256 on 3200x3200) otherwise sends tens of thousands of 24- and 48-px patches to the next net.
# Normal pictures hold a few hundred P-Net candidates, so they are not cut.
MAX_RNET_CANDIDATES = 4000
MAX_ONET_CANDIDATES = 1000
# Patches per R-Net and O-Net call. A stage takes the patches of the whole batch at once, but feeds them to
# the network in runs of this many: onnxruntime's time per patch grows with the run (R-Net, one thread:
# 65 us of CPU a patch at 8, 70 at 16, 82 at 32, 91 at 64, 150-190 at 320; O-Net 515, 571, 677, 734 us
# from 8 to 64). Each layer's PReLU is five elementwise passes in the exported graph (Relu, Neg, Relu,
# Mul, Add), so the cost follows how much of the activations stays in cache.
RNET_CHUNK = 16
ONET_CHUNK = 16


class Alignment(enum.Enum):
    """How a face crop is cut: the tutorial's box, or a 5-point similarity onto a template."""

    BOX = "box"
    SIMILARITY = "similarity"


class DetectorModel(enum.Enum):
    """Which network finds the faces: mtcnn's three-stage cascade, or RetinaFace-MobileNet0.25."""

    MTCNN = "mtcnn"
    RETINAFACE = "retinaface"


@dataclass(frozen=True)
class Box:
    """Pixels of the upright picture, top-left origin, clipped to the picture."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Landmarks:
    """(x, y) pixels; left/right as seen in the picture."""

    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    nose: tuple[float, float]
    mouth_left: tuple[float, float]
    mouth_right: tuple[float, float]

    def as_array(self) -> NDArray[np.float64]:
        """(5, 2) x, y in the order above."""
        return np.array([self.left_eye, self.right_eye, self.nose, self.mouth_left, self.mouth_right])


@dataclass(frozen=True)
class DetectOptions:
    """What to look for and what to return. max_faces 0 = no limit; min_confidence 0 = keep all."""

    min_face_size_px: int = DEFAULT_MIN_FACE_SIZE_PX
    min_confidence: float = 0.0
    max_faces: int = 0
    alignment: Alignment = Alignment.BOX
    return_crops: bool = False
    model: DetectorModel = DetectorModel.MTCNN

    def validate(self) -> None:
        """Raises InvalidInput for an option outside its range."""
        if self.min_face_size_px < SMALLEST_MIN_FACE_SIZE_PX:
            raise InvalidInput(
                f"min_face_size_px must be at least {SMALLEST_MIN_FACE_SIZE_PX}, not {self.min_face_size_px}.",
                field="options.min_face_size_px",
            )
        if not 0.0 <= self.min_confidence <= 1.0:
            raise InvalidInput(
                f"min_confidence must be between 0 and 1, not {self.min_confidence}.",
                field="options.min_confidence",
            )
        if self.max_faces < 0:
            raise InvalidInput(
                f"max_faces must be 0 (no limit) or more, not {self.max_faces}.", field="options.max_faces"
            )


@dataclass(frozen=True, eq=False)
class Detection:
    """One face: box, O-Net confidence, five landmarks, and the (160, 160, 3) uint8 crop when asked."""

    box: Box
    confidence: float
    landmarks: Landmarks
    crop: NDArray[np.uint8] | None = None


class Detector:
    """mtcnn 1.0.0's P-Net, R-Net and O-Net run over a batch of pictures of any sizes.

    The stages are mtcnn's own (same networks, thresholds, NMS and box arithmetic) with two changes:
    the pyramid honours min_face_size (detector_service.pyramid), and pictures of different sizes are
    never padded into one tensor (mtcnn 1.0.0 pads them, and its padding fix-up shifts boxes of the
    wrong picture when an earlier picture has no face). P-Net runs once per pyramid level on every
    picture of the same size; R-Net and O-Net each run once on the candidates of the whole batch.
    Not thread-safe: one thread (the batcher's worker) owns it.
    """

    def __init__(
        self,
        nets: Nets | Any,
        pad_sizes: bool = False,
        max_working_side_px: int = MAX_WORKING_SIDE_PX,
        retinaface: RetinaFace | None = None,
    ) -> None:
        """nets: the three networks (detector_service.onnx_nets.Nets), or an mtcnn.MTCNN whose Keras
        models are called as they are. max_working_side_px: see MAX_WORKING_SIDE_PX. retinaface: the
        second model, for options.model RETINAFACE (without it such a request is refused)."""
        self._max_side = max_working_side_px
        self._retinaface = retinaface
        # pad_sizes: pictures of different sizes share P-Net calls (padded); much faster on mixed
        # batches, but P-Net's border cells and float order change, so a few boxes move a few pixels.
        self._pad_sizes = pad_sizes
        if not isinstance(nets, Nets):
            nets = keras_nets(keras_models(nets))
        self.runtime = nets.runtime
        self._pnet, self._rnet, self._onet = (
            in_strips(_checked(nets.pnet, "P-Net")),
            _in_chunks(_checked(nets.rnet, "R-Net"), RNET_CHUNK),
            _in_chunks(_checked(nets.onet, "O-Net"), ONET_CHUNK),
        )
        # Seconds spent per stage and pictures seen, since start (read by timing_report).
        self.timings = Timings()

    @classmethod
    def load(cls, settings: Settings | None = None) -> Detector:
        """mtcnn's networks on settings.runtime: onnxruntime (exported once, then cached under
        settings.models_dir) or TensorFlow (mtcnn.MTCNN built from its packaged weights), and RetinaFace
        from settings.retinaface_weights. Without settings: mtcnn's Keras models alone."""
        pad = bool(settings and settings.pad_sizes)
        side = settings.max_working_side_px if settings else MAX_WORKING_SIDE_PX
        if settings is None:
            return cls(keras_nets(keras_models()), pad, side)
        threads = (settings.intra_op_threads, settings.inter_op_threads)
        retinaface = RetinaFace.load(
            Path(settings.retinaface_weights), *threads, max_working_side_px=settings.retinaface_max_side_px
        )
        if settings.runtime == "tensorflow":
            return cls(keras_nets(keras_models()), pad, side, retinaface)
        nets = onnx_nets(Path(settings.models_dir), *threads)
        return cls(nets, pad, side, retinaface)

    def detect(
        self, images: Sequence[NDArray[np.uint8]], options: DetectOptions = DetectOptions()
    ) -> list[list[Detection]]:
        """Find faces. images: (h, w, 3) uint8 RGB each. Returns, per image, detections by descending confidence."""
        options.validate()
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise InvalidInput("Each image must be (height, width, 3) uint8 RGB.")
        if options.model is DetectorModel.RETINAFACE:
            if self._retinaface is None:
                raise InvalidInput("This detector was started without the retinaface model.")
            start = time.perf_counter()
            rows = self._retinaface.raw(images, options.min_face_size_px)
            self.timings.add(pictures=len(images), model_calls=1, retinaface_s=time.perf_counter() - start)
        else:
            rows = self.raw(images, options.min_face_size_px)
        start = time.perf_counter()
        found = [_detections(image, r, options) for image, r in zip(images, rows, strict=True)]
        self.timings.add(crop_s=time.perf_counter() - start)
        return found

    def raw(self, images: Sequence[NDArray[np.uint8]], min_face_size_px: float) -> list[NDArray[np.float64]]:
        """mtcnn's rows per image: (n, 16) [id, x1, y1, x2, y2, confidence, 5 landmark x, 5 landmark y].

        Boxes are clipped to the picture as mtcnn's fit_to_image does (x in [0, width-1]).
        """
        if not images:
            return []
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            self.timings.add(**{stage: now - clock})
            clock = now

        self.timings.add(pictures=len(images), model_calls=1)
        working = [working_picture(image, self._max_side) for image in images]
        # P-Net's window is 12 px: a shrunk picture cannot look for faces smaller than that.
        min_faces = [max(float(PNET_CELL_PX), min_face_size_px * ratio) for _, ratio in working]
        normalized = [_normalize(picture) for picture, _ in working]
        del working
        candidates = self._pnet_stage(normalized, min_faces)
        lap("pnet_s")
        if len(candidates):
            candidates = self._rnet_stage(normalized, _most_confident(candidates, MAX_RNET_CANDIDATES))
        lap("rnet_s")
        if len(candidates):
            candidates = self._onet_stage(normalized, _most_confident(candidates, MAX_ONET_CANDIDATES))
        lap("onet_s")
        del normalized
        result: list[NDArray[np.float64]] = [np.empty((0, 16)) for _ in images]
        if not len(candidates):
            return result
        for index, image in enumerate(images):
            _to_original(candidates, index, image.shape, self._max_side)
        shapes = np.array([image.shape for image in images])
        candidates = box_math.clip_to_pictures(candidates, shapes)
        for index in range(len(images)):
            result[index] = candidates[candidates[:, 0] == index]
        return result

    def warm_up(self) -> None:
        """Runs each network once (TensorFlow traces and allocates on first use) and one full detection."""
        self._pnet(np.zeros((1, 24, 24, 3), np.float32))
        self._rnet(np.zeros((1, 24, 24, 3), np.float32))
        self._onet(np.zeros((1, 48, 48, 3), np.float32))
        for model in DetectorModel:
            if model is DetectorModel.MTCNN or self._retinaface is not None:
                self.detect([synthetic_picture()], DetectOptions(return_crops=True, model=model))
        self.timings.clear()

    def _pnet_stage(
        self, normalized: list[NDArray[np.float32]], min_faces: list[float]
    ) -> NDArray[np.float64]:
        if self._pad_sizes:
            found = self._pnet_padded(normalized, min_faces)
        else:
            found = self._pnet_grouped(normalized, min_faces)
        if not found:
            return np.empty((0, 6))
        boxes = np.concatenate(found, axis=0)
        if not len(boxes):
            return boxes
        # mtcnn's cross-scale NMS sorts by score; keep the per-image order it would see.
        boxes = boxes[np.argsort(boxes[:, 0], kind="stable")]
        boxes = smart_nms(boxes, threshold=NMS_PNET_ALL, method="union", initial_sort=True)
        return box_math.to_square(boxes)

    def _pnet_grouped(
        self, normalized: list[NDArray[np.float32]], min_faces: list[float]
    ) -> list[NDArray[np.float64]]:
        """P-Net once per pyramid level on each group of same-size pictures (at most MAX_PNET_CALL_PX
        pixels a call): mtcnn's own results."""
        groups: list[list[int]] = []
        open_group: dict[tuple[tuple[int, ...], float], list[int]] = {}
        for index, image in enumerate(normalized):
            key = (image.shape, min_faces[index])
            per_call = max(1, MAX_PNET_CALL_PX // (image.shape[0] * image.shape[1]))
            if key not in open_group or len(open_group[key]) >= per_call:
                open_group[key] = []
                groups.append(open_group[key])
            open_group[key].append(index)
        found = []
        for indices in groups:
            shape, min_face_size_px = normalized[indices[0]].shape, min_faces[indices[0]]
            ids = np.asarray(indices, dtype=np.float64)
            for scale in build_scales(shape[1], shape[0], min_face_size_px, SCALE_FACTOR):
                reg, prob = self._pnet(np.stack([area_resize(normalized[i], scale) for i in indices]))
                boxes = box_math.pnet_boxes(reg, prob, THRESHOLD_PNET, scale)
                boxes = smart_nms(boxes, threshold=NMS_PNET_SCALE, method="union", initial_sort=False)
                boxes[:, 0] = ids[boxes[:, 0].astype(int)]
                found.append(boxes)
        return found

    def _pnet_padded(
        self, normalized: list[NDArray[np.float32]], min_faces: list[float]
    ) -> list[NDArray[np.float64]]:
        """P-Net once per pyramid level on every picture, padded to the level's largest (see pad_sizes)."""
        pyramids = [
            build_scales(im.shape[1], im.shape[0], face, SCALE_FACTOR)
            for im, face in zip(normalized, min_faces, strict=True)
        ]
        found = []
        for level in range(max((len(p) for p in pyramids), default=0)):
            indices = [i for i, p in enumerate(pyramids) if len(p) > level]
            scale = pyramids[indices[0]][level]
            # Each picture is shrunk on its own (as mtcnn would), then the level's pictures are padded at
            # the bottom and right into one tensor: P-Net is convolutional, so a picture's output cells
            # do not see the padding, except the last row/column where its pooling window is cut short.
            scaled = [area_resize(normalized[i], scale) for i in indices]
            height = max(int(x.shape[0]) for x in scaled)
            width = max(int(x.shape[1]) for x in scaled)
            if len(scaled) == 1:
                stack = scaled[0][None]
            else:
                stack = np.stack(
                    [np.pad(x, [[0, height - x.shape[0]], [0, width - x.shape[1]], [0, 0]]) for x in scaled]
                )
            reg, prob = self._pnet(stack)
            prob = np.array(prob)
            for row, x in enumerate(scaled):
                prob[row, pnet_cells(int(x.shape[0])) :, :, 1] = 0.0
                prob[row, :, pnet_cells(int(x.shape[1])) :, 1] = 0.0
            boxes = box_math.pnet_boxes(reg, prob, THRESHOLD_PNET, scale)
            boxes = smart_nms(boxes, threshold=NMS_PNET_SCALE, method="union", initial_sort=False)
            boxes[:, 0] = np.asarray(indices, dtype=np.float64)[boxes[:, 0].astype(int)]
            found.append(boxes)
        return found

    def _rnet_stage(
        self, normalized: list[NDArray[np.float32]], boxes: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        boxes, patches = _patches(normalized, boxes, 24)
        offsets, scores = self._rnet(patches)
        boxes = box_math.above(box_math.refine(boxes, offsets, scores), THRESHOLD_RNET)
        if not len(boxes):
            return boxes
        boxes = smart_nms(boxes, threshold=NMS_RNET, method="union", initial_sort=True)
        return box_math.to_square(boxes)

    def _onet_stage(
        self, normalized: list[NDArray[np.float32]], boxes: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        boxes, patches = _patches(normalized, boxes, 48)
        offsets, fractions, scores = self._onet(patches)
        landmarks = box_math.place_landmarks(fractions, boxes)
        boxes = box_math.refine(boxes, offsets, scores)
        boxes = box_math.above(np.concatenate([boxes, landmarks], axis=-1), THRESHOLD_ONET)
        if not len(boxes):
            return boxes
        return smart_nms(boxes, threshold=NMS_ONET, method="min", initial_sort=True)


def _checked(net: NetFn, name: str) -> NetFn:
    """The network, raising ModelFault when it gives NaN or infinite values (a damaged model, not a bad
    picture: pixels are normalized to [-1, 1] before they reach it)."""

    def run(batch: NDArray[np.float32]) -> tuple[NDArray[np.float32], ...]:
        outputs = net(batch)
        if not all(np.isfinite(np.asarray(out)).all() for out in outputs):
            log.error("mtcnn's %s gave non-finite values", name)
            raise ModelFault(f"The detector's {name} gave non-finite values; the server's model is faulty.")
        return outputs

    return run


def _in_chunks(net: NetFn, size: int) -> NetFn:
    """The network run on at most `size` inputs at a time, its outputs joined in order."""

    def run(batch: NDArray[np.float32]) -> tuple[NDArray[np.float32], ...]:
        if len(batch) <= size:
            return net(batch)
        parts = [net(batch[start : start + size]) for start in range(0, len(batch), size)]
        return tuple(np.concatenate(outs, axis=0) for outs in zip(*parts, strict=True))

    return run


def _to_original(rows: NDArray[np.float64], index: int, shape: tuple[int, ...], max_side_px: int) -> None:
    """Maps the boxes and landmarks of picture `index` (mtcnn rows, in place) from its working picture back."""
    height, width = shape[:2]
    ratio = min(1.0, max_side_px / max(height, width))
    if ratio >= 1.0:
        return
    mine = rows[:, 0] == index
    # The working picture's sides were rounded: scale x and y by their own exact ratios.
    sx = width / max(1, round(width * ratio))
    sy = height / max(1, round(height * ratio))
    rows[np.ix_(mine, [1, 3, 6, 7, 8, 9, 10])] *= sx
    rows[np.ix_(mine, [2, 4, 11, 12, 13, 14, 15])] *= sy


def _most_confident(boxes: NDArray[np.float64], per_picture: int) -> NDArray[np.float64]:
    """At most per_picture candidates of each picture (column 0), the most confident (column 5)."""
    ids, counts = np.unique(boxes[:, 0], return_counts=True)
    if counts.max(initial=0) <= per_picture:
        return boxes
    keep = []
    for picture in ids:
        mine = np.flatnonzero(boxes[:, 0] == picture)
        keep.append(mine[np.argsort(-boxes[mine, 5], kind="stable")[:per_picture]])
    return boxes[np.sort(np.concatenate(keep))]


def _normalize(image: NDArray[np.uint8]) -> NDArray[np.float32]:
    # mtcnn's own normalization, (x - 127.5) / 128, computed in float32 as it does.
    return (image.astype(np.float32) - np.float32(127.5)) / np.float32(128)


def _patches(
    normalized: list[NDArray[np.float32]], boxes: NDArray[np.float64], size: int
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """Candidates cut out of their own picture and resized to size x size, as mtcnn's extract_patches does.

    Returns the boxes reordered by picture (the patches' order) and the (n, size, size, 3) patches of the
    whole batch, for one network call.
    """
    boxes = boxes[np.argsort(boxes[:, 0], kind="stable")]
    parts = [
        box_math.crop_and_resize(normalized[index], boxes[boxes[:, 0] == index], size)
        for index in np.unique(boxes[:, 0]).astype(int)
    ]
    return boxes, np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def _detections(
    image: NDArray[np.uint8], rows: NDArray[np.float64], options: DetectOptions
) -> list[Detection]:
    """mtcnn rows of one picture → Detections by descending confidence, filtered and cropped per options."""
    rows = rows[rows[:, 5] >= options.min_confidence] if len(rows) else rows
    if options.max_faces and len(rows) > options.max_faces:
        area = (rows[:, 3] - rows[:, 1]) * (rows[:, 4] - rows[:, 2])
        rows = rows[np.argsort(-area, kind="stable")[: options.max_faces]]
    rows = rows[np.argsort(-rows[:, 5], kind="stable")] if len(rows) else rows
    found = []
    for row in rows:
        x, y, w, h = alignment.tutorial_box(row[1], row[2], row[3], row[4])
        points = np.stack([row[6:11], row[11:16]], axis=1)
        landmarks = Landmarks(*((float(p[0]), float(p[1])) for p in points))
        crop = None
        if options.return_crops:
            if options.alignment is Alignment.SIMILARITY:
                crop = alignment.similarity_crop(image, points)
            else:
                crop = alignment.box_crop(image, (x, y, w, h))
        found.append(Detection(Box(float(x), float(y), float(w), float(h)), float(row[5]), landmarks, crop))
    return found


def synthetic_picture(seed: int = 7) -> NDArray[np.uint8]:
    """A seeded 160x200 RGB picture: smooth noise with a bright oval, enough to exercise all three networks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:160, 0:200]
    oval = ((xx - 100) / 40.0) ** 2 + ((yy - 80) / 52.0) ** 2 < 1.0
    picture = rng.integers(60, 120, size=(160, 200, 3)).astype(np.float64)
    picture[oval] = (224, 172, 140)
    for cx in (84, 116):
        picture[((xx - cx) / 7.0) ** 2 + ((yy - 68) / 4.0) ** 2 < 1.0] = (40, 30, 30)
    picture[((xx - 100) / 16.0) ** 2 + ((yy - 108) / 4.0) ** 2 < 1.0] = (150, 60, 60)
    return picture.astype(np.uint8)

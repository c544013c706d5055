"""Represent: every face of a picture with its box, landmarks, quality and embedding, for callers who keep
their own vector database (DeepFace's `represent`). Pure: no grpc.

It goes through the same two service ports and the same floors as Identify, so a face it calls
identifiable is one Identify would compare, and its embedding is of the gallery's model (Identify, Search
and Enroll take it as it is). It never reads or writes the store or the index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from facerec.errors import InvalidInput
from gallery.options import GalleryOptions
from gallery.ports import BoxXYWH, DetectorOptions, FaceDetector, Point
from gallery.results import NotIdentifiable

# (h, w, 3) uint8 crops → one unit (d,) float32 vector each, of the gallery's model; a crop's error raised.
Vectors = Callable[[list[NDArray[np.uint8]], float | None], list[NDArray[np.float32]]]


@dataclass(frozen=True)
class FaceQuality:
    """How fit a face is for recognition, by the gallery's Identify floors."""

    size_px: float  # the box's shorter side
    detection_confidence: float
    not_identifiable: NotIdentifiable | None = None  # None: Identify would compare it
    reason: str = ""  # one sentence when not identifiable

    @property
    def identifiable(self) -> bool:
        return self.not_identifiable is None


@dataclass(frozen=True)
class RepresentedFace:
    box: BoxXYWH
    landmarks: tuple[Point, ...]
    quality: FaceQuality
    embedding: NDArray[np.float32]  # (d,) unit length, of the gallery's model


@dataclass(frozen=True)
class Representation:
    faces: list[RepresentedFace]  # by descending detection confidence
    width: int
    height: int
    model: str


class Representer:
    """Detects, judges and embeds every face of a picture; holds no state of its own."""

    def __init__(self, detector: FaceDetector, vectors: Vectors, options: GalleryOptions, model: str) -> None:
        self._detector = detector
        self._vectors = vectors
        self._options = options
        self._model = model

    def represent(
        self, image: bytes, options: DetectorOptions | None = None, timeout_s: float | None = None
    ) -> Representation:
        """Every face of the picture. The faces Identify would not compare (too small, too unsure) are
        embedded too, and say why they are not identifiable: the caller decides what to keep."""
        if not image:
            raise InvalidInput("No image to represent: give a picture.", field="image")
        detected = self._detector.detect([image], options or self._options.detect_options, timeout_s)[0]
        if detected.error is not None:
            detected.error.field = detected.error.field or "image"
            raise detected.error
        vectors = self._vectors([f.crop for f in detected.faces], timeout_s) if detected.faces else []
        faces = []
        for face, vector in zip(detected.faces, vectors, strict=True):
            why = self._options.unidentifiable(face)
            quality = FaceQuality(
                min(face.box[2], face.box[3]),
                face.confidence,
                why[0] if why else None,
                why[1] if why else "",
            )
            faces.append(RepresentedFace(face.box, face.landmarks, quality, vector))
        return Representation(faces, detected.width, detected.height, self._model)

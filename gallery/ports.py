"""What the gallery needs from a face detector and an embedder, as Protocols. Pure: no grpc.

gallery/clients.py implements them over gRPC; tests implement them with synthetic faces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from facerec.errors import FacerecError

BoxXYWH = tuple[float, float, float, float]  # x, y, width, height in pixels of the upright picture
Point = tuple[float, float]


@dataclass(frozen=True)
class DetectorOptions:
    """What the gallery asks the detector for (passed through); 0 / "" = the detector's defaults."""

    min_face_size_px: int = 0
    min_confidence: float = 0.0
    max_faces: int = 0
    alignment: str = ""  # "", "box" or "similarity"


@dataclass(frozen=True)
class DetectedFace:
    """One face: box, detection confidence, five landmarks (left eye, right eye, nose, mouth l/r) and
    its aligned crop, (h, w, 3) uint8 RGB (160x160 from the facerec detector)."""

    box: BoxXYWH
    confidence: float
    landmarks: tuple[Point, ...]
    crop: NDArray[np.uint8]

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class DetectedImage:
    """One picture's detections, by descending confidence; `error` set when it could not be processed."""

    width: int = 0
    height: int = 0
    faces: list[DetectedFace] = field(default_factory=list)
    error: FacerecError | None = None


@dataclass(frozen=True)
class Embedded:
    """The embedder's answer: per crop a unit (d,) float32 vector or the error for that crop."""

    model: str
    vectors: list[NDArray[np.float32] | FacerecError]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    dimension: int
    threshold: float = 0.0
    threshold_source: str = ""


class FaceDetector(Protocol):
    def detect(
        self, images: Sequence[bytes], options: DetectorOptions, timeout_s: float | None = None
    ) -> list[DetectedImage]:
        """Faces on each encoded picture, one result per picture in order; crops included.

        Raises Unavailable when the detector cannot be reached, InvalidInput / Overloaded for a
        request it refuses as a whole, DeadlineExceeded when it does not answer in time.
        """
        ...


class FaceEmbedder(Protocol):
    def embed(self, crops: Sequence[NDArray[np.uint8]], timeout_s: float | None = None) -> Embedded:
        """Embeddings of (h, w, 3) uint8 RGB crops, one per crop in order. Errors as FaceDetector.detect."""
        ...

    def model_info(self, timeout_s: float | None = None) -> ModelInfo:
        """The model the embedder serves."""
        ...


def largest_face(faces: Sequence[DetectedFace]) -> DetectedFace:
    """The face with the largest box: the one a picture of one person is about. faces: not empty."""
    return max(faces, key=lambda f: f.area)

"""What the gallery's operations answer: plain values, no behaviour. Pure: no grpc."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from facerec.calibration import OperatingPoint
from facerec.errors import FacerecError
from gallery.ports import BoxXYWH, Point

# How Identify decided: the SVM over enrolled identities, or the nearest enrolled face.
SVM = "svm"
NEAREST = "nearest-neighbour"


class EnrollOutcome(enum.Enum):
    """What happened to one picture or embedding of an Enroll (names as in the proto's EnrollOutcome)."""

    ENROLLED = "ENROLLED"
    NO_FACE = "NO_FACE"
    MULTIPLE_FACES = "MULTIPLE_FACES"
    DUPLICATE = "DUPLICATE"
    REJECTED_QUALITY = "REJECTED_QUALITY"
    INVALID = "INVALID"


@dataclass(frozen=True)
class EnrollResult:
    outcome: EnrollOutcome
    face_id: int = 0
    box: BoxXYWH | None = None
    error: FacerecError | None = None
    faces_found: int = 0
    duplicate_of: str = ""  # another identity already enrolled from this picture (a warning)


@dataclass(frozen=True)
class Candidate:
    """An identity near the query: distance to its nearest enrolled face, and that face."""

    identity: str
    distance: float
    face_id: int


class NotIdentifiable(enum.Enum):
    """Why a detected face was not compared with the gallery (names as in the proto's enum)."""

    FACE_TOO_SMALL = "FACE_TOO_SMALL"
    DETECTION_TOO_UNSURE = "DETECTION_TOO_UNSURE"


@dataclass(frozen=True)
class IdentifiedFace:
    identity: str  # "" when unknown
    known: bool
    distance: float  # to the answer's nearest face, or the nearest identity's when unknown
    confidence: float  # 0 when unknown
    candidates: list[Candidate]
    box: BoxXYWH | None = None
    landmarks: tuple[Point, ...] = ()
    detection_confidence: float = 0.0
    not_identifiable: NotIdentifiable | None = None  # set: not compared at all, for `reason`
    reason: str = ""


@dataclass(frozen=True)
class Identification:
    faces: list[IdentifiedFace]
    threshold: float
    method: str  # "svm" or "nearest-neighbour"
    width: int = 0
    height: int = 0
    operating_point: str = ""  # the point `threshold` belongs to; "" for a threshold the request gave
    # The SVM is being refit in the background after a change: the answer came from the previous SVM
    # (method svm) or, when there was none, from the nearest neighbour.
    classifier_stale: bool = False


@dataclass(frozen=True)
class Verification:
    match: bool
    distance: float
    threshold: float
    box_a: BoxXYWH | None = None
    box_b: BoxXYWH | None = None
    faces_a: int = 0  # faces found on each picture: with several, the largest was compared
    faces_b: int = 0
    operating_point: str = ""  # the point `threshold` belongs to; "" for a threshold the request gave


@dataclass(frozen=True)
class SearchHit:
    face_id: int
    identity: str
    distance: float


@dataclass(frozen=True)
class Training:
    identities: int
    faces: int
    train_accuracy: float


@dataclass(frozen=True)
class GalleryStats:
    identities: int
    faces: int
    index_kind: str
    index_detail: str
    index_size: int
    model: str
    threshold: float
    threshold_source: str
    classifier: str
    classifier_stale: bool
    identification_threshold: float
    operating_point: str = ""
    operating_points: tuple[OperatingPoint, ...] = ()
    identification_point: OperatingPoint | None = None

"""The gallery's answers as frozen dataclasses (from the facerec.v1 messages), so callers get names and
types rather than protobuf messages. Distances are euclidean on unit vectors, 0..2."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from facerec_client.v1 import common_pb2, gallery_pb2


@dataclass(frozen=True)
class Box:
    """Pixels of the upright picture, top-left origin."""

    x: float
    y: float
    width: float
    height: float

    @classmethod
    def of(cls, box: common_pb2.Box) -> Box:
        return cls(x=box.x, y=box.y, width=box.width, height=box.height)


@dataclass(frozen=True)
class Point:
    x: float
    y: float


@dataclass(frozen=True)
class Landmarks:
    """The five landmarks (either detector gives the same five, in this order); left and right as seen in the picture."""

    left_eye: Point
    right_eye: Point
    nose: Point
    mouth_left: Point
    mouth_right: Point

    @classmethod
    def of(cls, lm: common_pb2.Landmarks) -> Landmarks:
        def point(p: common_pb2.Point) -> Point:
            return Point(x=p.x, y=p.y)

        return cls(
            left_eye=point(lm.left_eye),
            right_eye=point(lm.right_eye),
            nose=point(lm.nose),
            mouth_left=point(lm.mouth_left),
            mouth_right=point(lm.mouth_right),
        )


@dataclass(frozen=True)
class Candidate:
    """An enrolled identity near the query: the distance to its nearest face, and that face."""

    identity: str
    distance: float
    face_id: int


class NotIdentifiable(StrEnum):
    """Why a detected face was not compared with the gallery ("" when it was)."""

    NO = ""
    FACE_TOO_SMALL = "FACE_TOO_SMALL"
    DETECTION_TOO_UNSURE = "DETECTION_TOO_UNSURE"


@dataclass(frozen=True)
class Face:
    """One face of an Identify answer. identity is None when unknown (known is False then); not_identifiable
    says why a face was not compared at all (too small, too unsure), not_identifiable_reason in a sentence."""

    identity: str | None
    known: bool
    distance: float
    confidence: float
    candidates: tuple[Candidate, ...]
    box: Box | None
    landmarks: Landmarks | None
    detection_confidence: float
    not_identifiable: NotIdentifiable
    not_identifiable_reason: str

    @classmethod
    def of(cls, face: gallery_pb2.IdentifiedFace) -> Face:
        return cls(
            identity=face.identity if face.known else None,
            known=face.known,
            distance=face.distance,
            confidence=face.confidence,
            candidates=tuple(
                Candidate(identity=c.identity, distance=c.distance, face_id=c.face_id)
                for c in face.candidates
            ),
            box=Box.of(face.box) if face.HasField("box") else None,
            landmarks=Landmarks.of(face.landmarks) if face.HasField("landmarks") else None,
            detection_confidence=face.detection_confidence,
            not_identifiable=NotIdentifiable(
                ""
                if face.not_identifiable == gallery_pb2.NOT_IDENTIFIABLE_UNSPECIFIED
                else gallery_pb2.NotIdentifiable.Name(face.not_identifiable)
            ),
            not_identifiable_reason=face.not_identifiable_reason,
        )


@dataclass(frozen=True)
class IdentifyResult:
    """Every face of the picture, by descending detection confidence (empty: no face), the threshold that
    was applied (and its operating point's name), and how ("svm" or "nearest-neighbour")."""

    faces: tuple[Face, ...]
    threshold: float
    operating_point: str
    method: str
    width: int
    height: int
    classifier_stale: bool

    @classmethod
    def of(cls, reply: gallery_pb2.IdentifyResponse) -> IdentifyResult:
        return cls(
            faces=tuple(Face.of(f) for f in reply.faces),
            threshold=reply.threshold,
            operating_point=reply.operating_point,
            method=reply.method,
            width=reply.width,
            height=reply.height,
            classifier_stale=reply.classifier_stale,
        )


@dataclass(frozen=True)
class VerifyResult:
    """match: distance <= threshold. faces_a, faces_b: how many faces each picture held (the largest was
    compared); box_b is None when comparing against an identity."""

    match: bool
    distance: float
    threshold: float
    operating_point: str
    faces_a: int
    faces_b: int
    box_a: Box | None
    box_b: Box | None

    @classmethod
    def of(cls, reply: gallery_pb2.VerifyResponse) -> VerifyResult:
        return cls(
            match=reply.match,
            distance=reply.distance,
            threshold=reply.threshold,
            operating_point=reply.operating_point,
            faces_a=reply.faces_a,
            faces_b=reply.faces_b,
            box_a=Box.of(reply.box_a) if reply.HasField("box_a") else None,
            box_b=Box.of(reply.box_b) if reply.HasField("box_b") else None,
        )


class EnrollOutcome(StrEnum):
    """What became of one enrolled picture or embedding (facerec.v1.EnrollOutcome)."""

    ENROLLED = "ENROLLED"
    NO_FACE = "NO_FACE"
    MULTIPLE_FACES = "MULTIPLE_FACES"
    DUPLICATE = "DUPLICATE"
    REJECTED_QUALITY = "REJECTED_QUALITY"
    INVALID = "INVALID"
    UNSPECIFIED = "ENROLL_OUTCOME_UNSPECIFIED"

    @property
    def stored(self) -> bool:
        """Whether a face of the identity stands for this picture (DUPLICATE: the one stored before)."""
        return self in (EnrollOutcome.ENROLLED, EnrollOutcome.MULTIPLE_FACES, EnrollOutcome.DUPLICATE)


@dataclass(frozen=True)
class Enrolled:
    """One picture's (or embedding's) outcome. face_id: the stored face, None when none was; error_reason
    and error_message: why an INVALID one was refused; duplicate_of: the other identity this picture is
    enrolled under already (a warning; with strict, the reason it was refused), "" otherwise."""

    outcome: EnrollOutcome
    face_id: int | None
    box: Box | None
    faces_found: int
    error_reason: str
    error_message: str
    duplicate_of: str

    @classmethod
    def of(cls, result: gallery_pb2.EnrollResult) -> Enrolled:
        return cls(
            outcome=EnrollOutcome(gallery_pb2.EnrollOutcome.Name(result.outcome)),
            face_id=result.face_id or None,
            box=Box.of(result.box) if result.HasField("box") else None,
            faces_found=result.faces_found,
            error_reason=result.error.reason,
            error_message=result.error.message,
            duplicate_of=result.duplicate_of,
        )


@dataclass(frozen=True)
class EnrollResult:
    """One outcome per picture, in order, then one per embedding."""

    identity: str
    results: tuple[Enrolled, ...]

    @property
    def face_ids(self) -> tuple[int, ...]:
        """The faces that stand for the given pictures, in order (those stored)."""
        return tuple(r.face_id for r in self.results if r.face_id is not None)

    @classmethod
    def of(cls, reply: gallery_pb2.EnrollResponse) -> EnrollResult:
        return cls(identity=reply.identity, results=tuple(Enrolled.of(r) for r in reply.results))


@dataclass(frozen=True)
class FacePicture:
    """A face's kept picture: the region around the face, encoded (media_type, e.g. "image/webp"), and
    where the face is on it."""

    face_id: int
    media_type: str
    data: bytes
    width: int
    height: int
    box: Box | None

    @classmethod
    def of(cls, picture: gallery_pb2.FacePicture) -> FacePicture:
        return cls(
            face_id=picture.face_id,
            media_type=picture.media_type,
            data=picture.data,
            width=picture.width,
            height=picture.height,
            box=Box.of(picture.box) if picture.HasField("box") else None,
        )


@dataclass(frozen=True)
class FaceRecord:
    """An enrolled face. embedding: only when asked for (a biometric template), else None; picture likewise
    (has_picture says whether the face keeps one at all)."""

    face_id: int
    identity: str
    box: Box | None
    image_sha256: str
    created_at_ms: int
    model: str
    embedding: tuple[float, ...] | None
    has_picture: bool = False
    picture: FacePicture | None = None

    @classmethod
    def of(cls, face: gallery_pb2.FaceRecord) -> FaceRecord:
        return cls(
            face_id=face.face_id,
            identity=face.identity,
            box=Box.of(face.box) if face.HasField("box") else None,
            image_sha256=face.image_sha256,
            created_at_ms=face.created_at_ms,
            model=face.model,
            embedding=tuple(face.embedding.values) if face.HasField("embedding") else None,
            has_picture=face.has_picture,
            picture=FacePicture.of(face.picture) if face.HasField("picture") else None,
        )


@dataclass(frozen=True)
class Identity:
    """An enrolled identity: its name, face count, creation time (ms since the epoch); faces only from
    Gallery.identity() (an empty tuple in a listing)."""

    name: str
    face_count: int
    created_at_ms: int
    faces: tuple[FaceRecord, ...] = ()

    @classmethod
    def of(cls, summary: gallery_pb2.IdentitySummary, faces: tuple[FaceRecord, ...] = ()) -> Identity:
        return cls(
            name=summary.identity,
            face_count=summary.face_count,
            created_at_ms=summary.created_at_ms,
            faces=faces,
        )


@dataclass(frozen=True)
class SearchHit:
    face_id: int
    identity: str
    distance: float


@dataclass(frozen=True)
class TrainResult:
    """The refit SVM: how many identities and faces, and its accuracy on its own training faces (0..1)."""

    identities: int
    faces: int
    train_accuracy: float


@dataclass(frozen=True)
class OperatingPoint:
    """A calibrated threshold and what it did on its calibration set (FAR, its 95% upper bound, TAR)."""

    name: str
    threshold: float
    far: float
    far_upper: float
    tar: float
    genuine_pairs: int
    impostor_pairs: int

    @classmethod
    def of(cls, point: common_pb2.OperatingPoint) -> OperatingPoint:
        return cls(
            name=point.name,
            threshold=point.threshold,
            far=point.far,
            far_upper=point.far_upper,
            tar=point.tar,
            genuine_pairs=point.genuine_pairs,
            impostor_pairs=point.impostor_pairs,
        )


@dataclass(frozen=True)
class Stats:
    """Counts, index, model, and the thresholds the gallery decides with (threshold: Verify's;
    identification_threshold: Identify's)."""

    identities: int
    faces: int
    index_kind: str
    index_detail: str
    index_size: int
    model: str
    threshold: float
    threshold_source: str
    operating_point: str
    identification_threshold: float
    identification_point: OperatingPoint | None
    operating_points: tuple[OperatingPoint, ...]
    classifier: str
    classifier_stale: bool
    collection: str = ""

    @classmethod
    def of(cls, reply: gallery_pb2.StatsResponse) -> Stats:
        return cls(
            identities=reply.identities,
            faces=reply.faces,
            index_kind=reply.index_kind,
            index_detail=reply.index_detail,
            index_size=reply.index_size,
            model=reply.model,
            threshold=reply.threshold,
            threshold_source=reply.threshold_source,
            operating_point=reply.operating_point,
            identification_threshold=reply.identification_threshold,
            identification_point=(
                OperatingPoint.of(reply.identification_point)
                if reply.HasField("identification_point")
                else None
            ),
            operating_points=tuple(OperatingPoint.of(p) for p in reply.operating_points),
            classifier=reply.classifier,
            classifier_stale=reply.classifier_stale,
            collection=reply.collection,
        )

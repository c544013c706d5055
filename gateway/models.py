"""The JSON shapes of the HTTP API: typed request and response models, and the proto → model translation.

Field names follow the gRPC messages (snake_case). Face ids are 64-bit integers written as JSON numbers;
a JavaScript client reading them as doubles is exact up to 2^53, which the gallery's sequential ids stay
far below.
"""

from __future__ import annotations

from typing import Annotated

import grpc
import numpy as np
from pydantic import BaseModel, Field, PlainSerializer

from facerec.v1 import common_pb2, detector_pb2, gallery_pb2


def _shortest(value: float) -> float:
    # The gallery's numbers are float32: written as doubles they would read 1.059999942779541 for 1.06.
    return float(str(np.float32(value)))


# A float32 of a proto message, written with the fewest digits that read back as the same float32.
F32 = Annotated[float, PlainSerializer(_shortest, return_type=float)]


class ErrorBody(BaseModel):
    """Every error: the gRPC status code's name and one sentence."""

    code: str = Field(examples=["NOT_FOUND"])
    message: str = Field(examples=["No identity named 'ada'."])


class Box(BaseModel):
    """Pixels of the upright picture, origin top-left."""

    x: F32
    y: F32
    width: F32
    height: F32


class Point(BaseModel):
    x: F32
    y: F32


class Landmarks(BaseModel):
    left_eye: Point
    right_eye: Point
    nose: Point
    mouth_left: Point
    mouth_right: Point


class Candidate(BaseModel):
    identity: str
    distance: F32
    face_id: int


class IdentifiedFace(BaseModel):
    box: Box | None = Field(description="Unset for an embedding query.")
    identity: str = Field(description="Empty when unknown.")
    known: bool
    distance: F32
    confidence: F32
    candidates: list[Candidate]
    landmarks: Landmarks | None
    detection_confidence: F32


class IdentifyResponse(BaseModel):
    faces: list[IdentifiedFace]
    threshold: F32
    method: str
    width: int
    height: int
    operating_point: str = Field(description="The point `threshold` belongs to; empty for a request's own.")


class VerifyResponse(BaseModel):
    match: bool
    distance: F32
    threshold: F32
    box_a: Box | None
    box_b: Box | None
    operating_point: str = Field(description="The point `threshold` belongs to; empty for a request's own.")


class OperatingPoint(BaseModel):
    """A calibrated threshold and what it did on its calibration set (see the README)."""

    name: str
    threshold: F32
    far: F32
    far_upper: F32 = Field(description="One-sided 95% upper bound of far.")
    tar: F32
    genuine_pairs: int
    impostor_pairs: int


class DetectedFace(BaseModel):
    box: Box
    confidence: F32
    landmarks: Landmarks


class DetectedImage(BaseModel):
    width: int
    height: int
    faces: list[DetectedFace]
    error: ErrorBody | None = Field(description="Set when this picture could not be read.")


class DetectResponse(BaseModel):
    images: list[DetectedImage]


class EnrollResult(BaseModel):
    outcome: str = Field(
        description="ENROLLED, NO_FACE, MULTIPLE_FACES, DUPLICATE, REJECTED_QUALITY or INVALID.",
        examples=["ENROLLED"],
    )
    face_id: int = Field(description="The stored face; 0 when nothing was stored.")
    box: Box | None
    error: ErrorBody | None
    faces_found: int
    filename: str = Field(description="The picture's file name (multipart), or its index.")


class EnrollResponse(BaseModel):
    identity: str
    results: list[EnrollResult]


class SearchHit(BaseModel):
    face_id: int
    identity: str
    distance: F32


class SearchResponse(BaseModel):
    hits: list[SearchHit]


class IdentitySummary(BaseModel):
    identity: str
    face_count: int
    created_at_ms: int


class ListIdentitiesResponse(BaseModel):
    identities: list[IdentitySummary]
    next_page_token: str = Field(description="Empty on the last page.")


class FaceRecord(BaseModel):
    face_id: int
    identity: str
    box: Box | None
    image_sha256: str
    created_at_ms: int
    model: str


class GetIdentityResponse(BaseModel):
    identity: IdentitySummary
    faces: list[FaceRecord]


class RemoveIdentityResponse(BaseModel):
    faces_removed: int


class RemoveFaceResponse(BaseModel):
    identity: str


class TrainResponse(BaseModel):
    identities: int
    faces: int
    train_accuracy: F32


class StatsResponse(BaseModel):
    identities: int
    faces: int
    index_kind: str
    index_detail: str
    index_size: int
    model: str
    threshold: F32
    threshold_source: str
    classifier: str
    classifier_stale: bool
    identification_threshold: F32
    operating_point: str
    operating_points: list[OperatingPoint]


class Health(BaseModel):
    status: str = Field(examples=["SERVING"])
    gallery: str


# ---------------------------------------------------------------- JSON requests (pictures in base64)


class IdentifyJson(BaseModel):
    """One of image (base64) or embedding."""

    image: str = Field("", description="The picture's file bytes, base64.")
    embedding: list[float] = Field(default_factory=list, description="Instead of a picture: 128 floats.")
    top_k: int = Field(0, description="Candidates per face, 1..100; 0 = 5.")
    threshold: float = Field(0.0, description="In (0, 2]; 0 = the gallery's identification threshold.")
    operating_point: str = Field("", description="Or a named point from /v1/stats, e.g. far_1e-3.")


class VerifyJson(BaseModel):
    """image_a with image_b, or image_a with identity."""

    image_a: str = Field(description="base64")
    image_b: str = Field("", description="base64; or leave empty and give identity.")
    identity: str = ""
    threshold: float = 0.0
    operating_point: str = Field("", description="Or a named point from /v1/stats, e.g. far_1e-2.")


class DetectJson(BaseModel):
    images: list[str] = Field(description="Pictures, base64.")
    min_face_size_px: int = 0
    min_confidence: float = 0.0
    max_faces: int = 0


class EnrollJson(BaseModel):
    identity: str
    images: list[str] = Field(default_factory=list, description="Pictures, base64.")
    embeddings: list[list[float]] = Field(default_factory=list)


class SearchJson(BaseModel):
    embedding: list[float]
    top_k: int = 0


# ---------------------------------------------------------------- proto → model


def box(message: common_pb2.Box, present: bool = True) -> Box | None:
    """The box, or None for a message field that was not set."""
    return _box(message) if present else None


def _box(b: common_pb2.Box) -> Box:
    return Box(x=b.x, y=b.y, width=b.width, height=b.height)


def _point(p: common_pb2.Point) -> Point:
    return Point(x=p.x, y=p.y)


def landmarks(lm: common_pb2.Landmarks) -> Landmarks:
    return Landmarks(
        left_eye=_point(lm.left_eye),
        right_eye=_point(lm.right_eye),
        nose=_point(lm.nose),
        mouth_left=_point(lm.mouth_left),
        mouth_right=_point(lm.mouth_right),
    )


def error(message: common_pb2.Error) -> ErrorBody | None:
    if message.code == 0:
        return None
    name = next((c.name for c in grpc.StatusCode if c.value[0] == message.code), "UNKNOWN")
    return ErrorBody(code=name, message=message.message)


def identify_response(r: gallery_pb2.IdentifyResponse) -> IdentifyResponse:
    return IdentifyResponse(
        faces=[
            IdentifiedFace(
                box=box(f.box, f.HasField("box")),
                identity=f.identity,
                known=f.known,
                distance=f.distance,
                confidence=f.confidence,
                candidates=[
                    Candidate(identity=c.identity, distance=c.distance, face_id=c.face_id)
                    for c in f.candidates
                ],
                landmarks=landmarks(f.landmarks) if f.HasField("landmarks") else None,
                detection_confidence=f.detection_confidence,
            )
            for f in r.faces
        ],
        threshold=r.threshold,
        method=r.method,
        width=r.width,
        height=r.height,
        operating_point=r.operating_point,
    )


def verify_response(r: gallery_pb2.VerifyResponse) -> VerifyResponse:
    return VerifyResponse(
        match=r.match,
        distance=r.distance,
        threshold=r.threshold,
        box_a=box(r.box_a, r.HasField("box_a")),
        box_b=box(r.box_b, r.HasField("box_b")),
        operating_point=r.operating_point,
    )


def detect_response(r: detector_pb2.DetectResponse) -> DetectResponse:
    return DetectResponse(
        images=[
            DetectedImage(
                width=i.width,
                height=i.height,
                faces=[
                    DetectedFace(box=_box(f.box), confidence=f.confidence, landmarks=landmarks(f.landmarks))
                    for f in i.faces
                ],
                error=error(i.error),
            )
            for i in r.results
        ]
    )


def enroll_result(r: gallery_pb2.EnrollResult, filename: str) -> EnrollResult:
    return EnrollResult(
        outcome=gallery_pb2.EnrollOutcome.Name(r.outcome),
        face_id=r.face_id,
        box=box(r.box, r.HasField("box")),
        error=error(r.error),
        faces_found=r.faces_found,
        filename=filename,
    )


def summary(s: gallery_pb2.IdentitySummary) -> IdentitySummary:
    return IdentitySummary(identity=s.identity, face_count=s.face_count, created_at_ms=s.created_at_ms)


def face_record(f: gallery_pb2.FaceRecord) -> FaceRecord:
    return FaceRecord(
        face_id=f.face_id,
        identity=f.identity,
        box=box(f.box, f.HasField("box")),
        image_sha256=f.image_sha256,
        created_at_ms=f.created_at_ms,
        model=f.model,
    )


def stats_response(r: gallery_pb2.StatsResponse) -> StatsResponse:
    return StatsResponse(
        identities=r.identities,
        faces=r.faces,
        index_kind=r.index_kind,
        index_detail=r.index_detail,
        index_size=r.index_size,
        model=r.model,
        threshold=r.threshold,
        threshold_source=r.threshold_source,
        classifier=r.classifier,
        classifier_stale=r.classifier_stale,
        identification_threshold=r.identification_threshold,
        operating_point=r.operating_point,
        operating_points=[
            OperatingPoint(
                name=p.name,
                threshold=p.threshold,
                far=p.far,
                far_upper=p.far_upper,
                tar=p.tar,
                genuine_pairs=p.genuine_pairs,
                impostor_pairs=p.impostor_pairs,
            )
            for p in r.operating_points
        ],
    )

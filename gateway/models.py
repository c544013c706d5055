"""The JSON shapes of the HTTP API: the answers, generated from the contract (gateway.contract), and the
JSON requests (pictures in base64) with their bounds.

Field names follow the gRPC messages (snake_case). Face ids are 64-bit integers written as JSON numbers;
a JavaScript client reading them as doubles is exact up to 2^53, which the gallery's sequential ids stay
far below. Every number and list of a request is bounded here, so a value out of range is a 400 with one
sentence rather than a failure further in.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from facerec.v1 import detector_pb2, gallery_pb2
from gateway.contract import ErrorBody, model_of

__all__ = ["ErrorBody"]

INT32_MAX = 2**31 - 1
# Longer than any embedding model's vector the gallery serves (FaceNet: 128); a longer list is refused
# while it is validated, before it reaches the gallery.
MAX_EMBEDDING_VALUES = 2048
MAX_LIST = 256

IdentifyResponse = model_of(gallery_pb2.IdentifyResponse.DESCRIPTOR)
VerifyResponse = model_of(gallery_pb2.VerifyResponse.DESCRIPTOR)
DetectResponse = model_of(detector_pb2.DetectResponse.DESCRIPTOR)
EnrollResponse = model_of(gallery_pb2.EnrollResponse.DESCRIPTOR)
EnrollResult = model_of(gallery_pb2.EnrollResult.DESCRIPTOR)
SearchResponse = model_of(gallery_pb2.SearchResponse.DESCRIPTOR)
ListIdentitiesResponse = model_of(gallery_pb2.ListIdentitiesResponse.DESCRIPTOR)
GetIdentityResponse = model_of(gallery_pb2.GetIdentityResponse.DESCRIPTOR)
RemoveIdentityResponse = model_of(gallery_pb2.RemoveIdentityResponse.DESCRIPTOR)
RemoveFaceResponse = model_of(gallery_pb2.RemoveFaceResponse.DESCRIPTOR)
TrainResponse = model_of(gallery_pb2.TrainResponse.DESCRIPTOR)
StatsResponse = model_of(gallery_pb2.StatsResponse.DESCRIPTOR)
RepresentResponse = model_of(gallery_pb2.RepresentResponse.DESCRIPTOR)


class Health(BaseModel):
    status: str = Field(examples=["SERVING"])


Embedding = Annotated[list[float], Field(max_length=MAX_EMBEDDING_VALUES)]
TopK = Annotated[int, Field(ge=0, le=100, description="Candidates per face, 1..100; 0 = 5.")]
Threshold = Annotated[
    float, Field(ge=0.0, le=2.0, description="In (0, 2]; 0 = the gallery's calibrated threshold.")
]


# ---------------------------------------------------------------- JSON requests (pictures in base64)


class IdentifyJson(BaseModel):
    """One of image (base64) or embedding."""

    image: str = Field("", description="The picture's file bytes, base64.")
    embedding: Embedding = Field(default_factory=list, description="Instead of a picture: 128 floats.")
    top_k: TopK = 0
    threshold: Threshold = 0.0
    operating_point: str = Field("", description="Or a named point from /v1/stats, e.g. far_1e-3.")


class VerifyJson(BaseModel):
    """image_a with image_b, or image_a with identity."""

    image_a: str = Field(description="base64")
    image_b: str = Field("", description="base64; or leave empty and give identity.")
    identity: str = ""
    threshold: Threshold = 0.0
    operating_point: str = Field("", description="Or a named point from /v1/stats, e.g. far_1e-2.")


class DetectJson(BaseModel):
    images: list[str] = Field(max_length=MAX_LIST, description="Pictures, base64.")
    min_face_size_px: int = Field(0, ge=0, le=INT32_MAX)
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)
    max_faces: int = Field(0, ge=0, le=INT32_MAX)


class EnrollJson(BaseModel):
    identity: str
    images: list[str] = Field(default_factory=list, max_length=MAX_LIST, description="Pictures, base64.")
    embeddings: list[Embedding] = Field(default_factory=list, max_length=MAX_LIST)


class SearchJson(BaseModel):
    embedding: Embedding
    top_k: TopK = 0


class RepresentJson(BaseModel):
    image: str = Field(description="The picture's file bytes, base64.")
    min_face_size_px: int = Field(0, ge=0, le=INT32_MAX, description="Smallest face to look for; 0 = 20.")
    min_confidence: float = Field(0.0, ge=0.0, le=1.0, description="Drop faces less sure than this.")
    max_faces: int = Field(
        0, ge=0, le=INT32_MAX, description="At most this many faces, largest first; 0 = all."
    )

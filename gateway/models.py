"""The JSON shapes of the HTTP API: the answers, generated from the contract (gateway.contract), and the
JSON requests (pictures in base64) with their bounds.

Field names follow the gRPC messages (snake_case). Face ids are 64-bit integers written as JSON numbers;
a JavaScript client reading them as doubles is exact up to 2^53, which the gallery's sequential ids stay
far below. Every number and list of a request is bounded here, so a value out of range is a 400 with one
sentence rather than a failure further in.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from facerec.v1 import detector_pb2, gallery_pb2
from gateway.contract import ErrorBody, doc, model_of

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
RenameIdentityResponse = model_of(gallery_pb2.RenameIdentityResponse.DESCRIPTOR)
Collection = model_of(gallery_pb2.Collection.DESCRIPTOR)
ListCollectionsResponse = model_of(gallery_pb2.ListCollectionsResponse.DESCRIPTOR)
DeleteCollectionResponse = model_of(gallery_pb2.DeleteCollectionResponse.DESCRIPTOR)
Operation = model_of(gallery_pb2.Operation.DESCRIPTOR)


class Health(BaseModel):
    """Whether the gateway (healthz) or the services behind it (readyz) are serving."""

    status: str = Field(description='"SERVING".', examples=["SERVING"])


Embedding = Annotated[list[float], Field(max_length=MAX_EMBEDDING_VALUES)]
TopK = Annotated[int, Field(ge=0, le=100)]
Threshold = Annotated[float, Field(ge=0.0, le=2.0)]
# A picture's bytes in a JSON body, and what the examples show for one.
BASE64 = "The picture's file bytes (JPEG, PNG, WebP or BMP), base64; a data: URL is accepted."
PICTURE = "/9j/4AAQSkZJRgABAQAAAQABAAD..."
VECTOR: list[JsonValue] = [0.0883, -0.0123, 0.0417]


def _examples(*examples: dict[str, JsonValue]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


# ---------------------------------------------------------------- JSON requests (pictures in base64)


class IdentifyJson(BaseModel):
    """One of image (base64) or embedding, and how to decide (gRPC: IdentifyRequest)."""

    model_config = _examples(
        {"image": PICTURE, "top_k": 3}, {"embedding": VECTOR, "operating_point": "far_1e-3"}
    )

    image: str = Field("", description=doc("IdentifyRequest.image") + " " + BASE64)
    embedding: Embedding = Field(
        default_factory=list,
        description=doc("IdentifyRequest.embedding") + " Its values: " + doc("Embedding.values"),
    )
    top_k: TopK = Field(0, description=doc("IdentifyRequest.top_k"))
    threshold: Threshold = Field(0.0, description=doc("IdentifyRequest.threshold"))
    operating_point: str = Field("", description=doc("IdentifyRequest.operating_point"))


class VerifyJson(BaseModel):
    """image_a with image_b, or image_a with identity (gRPC: VerifyRequest)."""

    model_config = _examples(
        {"image_a": PICTURE, "image_b": PICTURE}, {"image_a": PICTURE, "identity": "ada"}
    )

    image_a: str = Field(description=doc("VerifyRequest.image_a") + " " + BASE64)
    image_b: str = Field("", description=doc("VerifyRequest.image_b") + " " + BASE64)
    identity: str = Field("", description=doc("VerifyRequest.identity"))
    threshold: Threshold = Field(0.0, description=doc("VerifyRequest.threshold"))
    operating_point: str = Field("", description=doc("VerifyRequest.operating_point"))


class DetectJson(BaseModel):
    """Pictures to find faces on (gRPC: DetectRequest)."""

    model_config = _examples({"images": [PICTURE], "min_confidence": 0.9})

    images: list[str] = Field(max_length=MAX_LIST, description=doc("DetectRequest.images") + " " + BASE64)
    min_face_size_px: int = Field(0, ge=0, le=INT32_MAX, description=doc("DetectOptions.min_face_size_px"))
    min_confidence: float = Field(0.0, ge=0.0, le=1.0, description=doc("DetectOptions.min_confidence"))
    max_faces: int = Field(0, ge=0, le=INT32_MAX, description=doc("DetectOptions.max_faces"))


class EnrollJson(BaseModel):
    """Pictures and/or embeddings of one person (gRPC: EnrollRequest)."""

    model_config = _examples({"identity": "ada", "images": [PICTURE, PICTURE]})

    identity: str = Field(description=doc("EnrollRequest.identity"))
    images: list[str] = Field(
        default_factory=list, max_length=MAX_LIST, description=doc("EnrollRequest.images") + " " + BASE64
    )
    embeddings: list[Embedding] = Field(
        default_factory=list, max_length=MAX_LIST, description=doc("EnrollRequest.embeddings")
    )


class SearchJson(BaseModel):
    """An embedding to find the nearest enrolled faces to (gRPC: SearchRequest)."""

    model_config = _examples({"embedding": VECTOR, "top_k": 5})

    embedding: Embedding = Field(description=doc("SearchRequest.embedding") + " " + doc("Embedding.values"))
    top_k: TopK = Field(0, description=doc("SearchRequest.top_k"))


class RepresentJson(BaseModel):
    """A picture to find every face and its embedding on (gRPC: RepresentRequest)."""

    model_config = _examples({"image": PICTURE}, {"image": PICTURE, "min_confidence": 0.9, "max_faces": 1})

    image: str = Field(description=doc("RepresentRequest.image") + " " + BASE64)
    min_face_size_px: int = Field(0, ge=0, le=INT32_MAX, description=doc("DetectOptions.min_face_size_px"))
    min_confidence: float = Field(0.0, ge=0.0, le=1.0, description=doc("DetectOptions.min_confidence"))
    max_faces: int = Field(0, ge=0, le=INT32_MAX, description=doc("DetectOptions.max_faces"))


# ---------------------------------------------------------------- JSON requests of the collections

Name = Annotated[str, Field(max_length=1024)]


class ContractJson(BaseModel):
    """How a collection turns pictures into vectors (gRPC: EmbeddingContract); "" = the default."""

    detector: Name = Field(default="", description=doc("EmbeddingContract.detector"))
    alignment: Name = Field(default="", description=doc("EmbeddingContract.alignment"))
    model: Name = Field(default="", description=doc("EmbeddingContract.model"))


class CreateCollectionJson(BaseModel):
    """A collection to create (gRPC: CreateCollectionRequest)."""

    model_config = _examples({"name": "archive", "contract": {"model": "facenet-keras-128-int8"}})

    name: Name = Field(description=doc("CreateCollectionRequest.name"))
    contract: ContractJson = Field(
        default_factory=ContractJson, description=doc("CreateCollectionRequest.contract")
    )
    keep_source_pictures: bool = Field(False, description=doc("CreateCollectionRequest.keep_source_pictures"))


class ReembedJson(BaseModel):
    """The collection's new contract (gRPC: ReembedRequest; the collection is the path's)."""

    model_config = _examples({"contract": {"model": "facenet-keras-128-int8"}, "drop_failed": True})

    contract: ContractJson = Field(default_factory=ContractJson, description=doc("ReembedRequest.contract"))
    drop_failed: bool = Field(False, description=doc("ReembedRequest.drop_failed"))


class RenameJson(BaseModel):
    """The identity's new name (gRPC: RenameIdentityRequest; the identity is the path's)."""

    model_config = _examples({"new_name": "Ada Lovelace"})

    new_name: Name = Field(description=doc("RenameIdentityRequest.new_name"))


class PointJson(BaseModel):
    """One operating point (gRPC: OperatingPoint)."""

    name: Name = Field(description=doc("OperatingPoint.name"))
    threshold: float = Field(ge=0.0, le=2.0, description=doc("OperatingPoint.threshold"))
    far: float = Field(0.0, ge=0.0, le=1.0, description=doc("OperatingPoint.far"))
    far_upper: float = Field(0.0, ge=0.0, le=1.0, description=doc("OperatingPoint.far_upper"))
    tar: float = Field(0.0, ge=0.0, le=1.0, description=doc("OperatingPoint.tar"))
    genuine_pairs: int = Field(0, ge=0, le=2**62, description=doc("OperatingPoint.genuine_pairs"))
    impostor_pairs: int = Field(0, ge=0, le=2**62, description=doc("OperatingPoint.impostor_pairs"))


class OperatingPointsJson(BaseModel):
    """Operating points fitted on a collection's faces (gRPC: SetOperatingPointsRequest; the collection is
    the path's)."""

    model_config = _examples(
        {
            "model": "facenet-keras-128",
            "operating_points": [{"name": "far_1e-3", "threshold": 0.98, "far": 0.001, "tar": 0.95}],
            "operating_point": "far_1e-3",
        }
    )

    model: Name = Field(description=doc("SetOperatingPointsRequest.model"))
    operating_points: list[PointJson] = Field(
        max_length=MAX_LIST, description=doc("SetOperatingPointsRequest.operating_points")
    )
    operating_point: Name = Field("", description=doc("SetOperatingPointsRequest.operating_point"))
    identification_point: PointJson | None = Field(
        None, description=doc("SetOperatingPointsRequest.identification_point")
    )

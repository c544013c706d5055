"""The collections' answers as frozen dataclasses: a collection with its embedding contract, counts and
operating points; a long-running operation (a re-embedding) with its progress and the faces it could not
carry; what a deletion removed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import grpc

from facerec_client.results import OperatingPoint
from facerec_client.v1 import common_pb2, gallery_pb2


@dataclass(frozen=True)
class Contract:
    """How a collection turns pictures into vectors: detector, alignment and embedder model."""

    detector: str
    alignment: str
    model: str

    @classmethod
    def of(cls, contract: gallery_pb2.EmbeddingContract) -> Contract:
        return cls(detector=contract.detector, alignment=contract.alignment, model=contract.model)


class CollectionState(StrEnum):
    READY = "COLLECTION_READY"
    REEMBEDDING = "COLLECTION_REEMBEDDING"
    UNSPECIFIED = "COLLECTION_STATE_UNSPECIFIED"


@dataclass(frozen=True)
class Collection:
    """A gallery of its own within the deployment. operation: the running re-embedding's name while state
    is REEMBEDDING, else "". threshold is Verify's default, identification_threshold Identify's."""

    name: str
    contract: Contract
    identities: int
    faces: int
    faces_without_picture: int
    state: CollectionState
    operation: str
    threshold: float
    identification_threshold: float
    operating_points: tuple[OperatingPoint, ...]
    operating_point: str
    identification_point: OperatingPoint | None
    threshold_source: str
    keep_source_pictures: bool
    created_at_ms: int

    @classmethod
    def of(cls, reply: gallery_pb2.Collection) -> Collection:
        return cls(
            name=reply.name,
            contract=Contract.of(reply.contract),
            identities=reply.identities,
            faces=reply.faces,
            faces_without_picture=reply.faces_without_picture,
            state=CollectionState(gallery_pb2.CollectionState.Name(reply.state)),
            operation=reply.operation,
            threshold=reply.threshold,
            identification_threshold=reply.identification_threshold,
            operating_points=tuple(OperatingPoint.of(p) for p in reply.operating_points),
            operating_point=reply.operating_point,
            identification_point=(
                OperatingPoint.of(reply.identification_point)
                if reply.HasField("identification_point")
                else None
            ),
            threshold_source=reply.threshold_source,
            keep_source_pictures=reply.keep_source_pictures,
            created_at_ms=reply.created_at_ms,
        )


@dataclass(frozen=True)
class CollectionRemoved:
    """What went with a deleted collection."""

    identities_removed: int
    faces_removed: int


@dataclass(frozen=True)
class FailedFace:
    """A face a re-embedding could not carry, and why (no kept picture, no face under the new detector)."""

    face_id: int
    identity: str
    reason: str


@dataclass(frozen=True)
class OperationError:
    """Why an operation failed: the gRPC status code's name, one sentence, the stable reason."""

    code: str
    message: str
    reason: str

    @classmethod
    def of(cls, error: common_pb2.Error) -> OperationError | None:
        if error.code == 0:
            return None
        code = next((c.name for c in grpc.StatusCode if c.value[0] == error.code), "UNKNOWN")
        return cls(code=code, message=error.message, reason=error.reason)


@dataclass(frozen=True)
class Operation:
    """A long-running operation (a re-embedding): its name for get_operation, how far it got, and once
    done either error or collection (the collection as it is after the switch)."""

    name: str
    kind: str
    collection_name: str
    source: Contract
    target: Contract
    faces_total: int
    faces_done: int
    stage: str
    failed_faces: tuple[FailedFace, ...]
    done: bool
    error: OperationError | None
    collection: Collection | None
    created_at_ms: int
    updated_at_ms: int

    @property
    def succeeded(self) -> bool:
        return self.done and self.error is None

    @classmethod
    def of(cls, reply: gallery_pb2.Operation) -> Operation:
        meta = reply.metadata
        return cls(
            name=reply.name,
            kind=meta.kind,
            collection_name=meta.collection,
            source=Contract.of(meta.source),
            target=Contract.of(meta.target),
            faces_total=meta.faces_total,
            faces_done=meta.faces_done,
            stage=meta.stage,
            failed_faces=tuple(
                FailedFace(face_id=f.face_id, identity=f.identity, reason=f.reason) for f in meta.failed_faces
            ),
            done=reply.done,
            error=OperationError.of(reply.error) if reply.HasField("error") else None,
            collection=Collection.of(reply.response) if reply.HasField("response") else None,
            created_at_ms=meta.created_at_ms,
            updated_at_ms=meta.updated_at_ms,
        )

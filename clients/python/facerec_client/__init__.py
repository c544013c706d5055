"""facerec-client: a typed Python client of the facerec gallery over gRPC (grpcio and protobuf only).

    import facerec_client
    facerec_client.enroll("ann", ["ann1.jpg", "ann2.jpg"])
    facerec_client.identify("group.jpg").faces
    facerec_client.verify("a.jpg", "b.jpg").match

The one-liners open a Gallery on FACEREC_GALLERY (default 127.0.0.1:50053), with FACEREC_TOKEN,
FACEREC_TLS_CA and FACEREC_COLLECTION when set, for one call; Gallery and AsyncGallery keep a channel open.
Every call works on a collection: the call's `collection=`, else the client's, else `default`.
"""

from __future__ import annotations

from collections.abc import Iterable

from facerec_client.aio import AsyncGallery
from facerec_client.client import DEFAULT_ADDRESS, Gallery, Options, Retry, one_shot
from facerec_client.collections import (
    Collection,
    CollectionRemoved,
    CollectionState,
    Contract,
    FailedFace,
    Operation,
    OperationError,
)
from facerec_client.errors import (
    AlreadyExists,
    Busy,
    DeadlineExceeded,
    FacerecError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from facerec_client.pictures import Picture
from facerec_client.results import (
    Box,
    Candidate,
    Enrolled,
    EnrollOutcome,
    EnrollResult,
    Face,
    FacePicture,
    FaceRecord,
    IdentifyResult,
    Identity,
    Landmarks,
    NotIdentifiable,
    OperatingPoint,
    Point,
    SearchHit,
    Stats,
    TrainResult,
    VerifyResult,
)

__version__ = "0.1.0"


def verify(
    a: Picture, b: Picture | None = None, *, identity: str = "", collection: str | None = None
) -> VerifyResult:
    """Same person? Two pictures, or a picture and an enrolled identity, on FACEREC_GALLERY (in
    FACEREC_COLLECTION unless `collection` names another)."""
    return one_shot(lambda gallery: gallery.verify(a, b, identity=identity, collection=collection))


def identify(picture: Picture, *, top_k: int = 0, collection: str | None = None) -> IdentifyResult:
    """Who is on the picture (every face), on FACEREC_GALLERY (in FACEREC_COLLECTION unless `collection`)."""
    return one_shot(lambda gallery: gallery.identify(picture, top_k=top_k, collection=collection))


def enroll(
    name: str, pictures: Picture | Iterable[Picture], *, collection: str | None = None
) -> EnrollResult:
    """Enrolls the largest face of each picture as `name` on FACEREC_GALLERY (in FACEREC_COLLECTION unless
    `collection`)."""
    return one_shot(lambda gallery: gallery.enroll(name, pictures, collection=collection))


__all__ = [
    "DEFAULT_ADDRESS",
    "AsyncGallery",
    "Box",
    "Busy",
    "Candidate",
    "Collection",
    "CollectionRemoved",
    "CollectionState",
    "Contract",
    "DeadlineExceeded",
    "EnrollOutcome",
    "EnrollResult",
    "Enrolled",
    "Face",
    "FacePicture",
    "FaceRecord",
    "FailedFace",
    "FacerecError",
    "FailedPrecondition",
    "Gallery",
    "Identity",
    "IdentifyResult",
    "Internal",
    "InvalidArgument",
    "Landmarks",
    "AlreadyExists",
    "NotFound",
    "NotIdentifiable",
    "OperatingPoint",
    "Operation",
    "OperationError",
    "Options",
    "PermissionDenied",
    "Picture",
    "Point",
    "ResourceExhausted",
    "Retry",
    "SearchHit",
    "Stats",
    "TooLarge",
    "TrainResult",
    "Unauthenticated",
    "Unavailable",
    "VerifyResult",
    "enroll",
    "identify",
    "verify",
]

"""A stand-in gallery that answers every RPC, the collections' included, and records (method, request)
of each call: for the fast tests of the Python client and the CLI (the real services: tests/e2e). An
operation is done at its third poll; CreateCollection of "taken" is ALREADY_EXISTS."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from facerec.errors import AlreadyExists
from facerec.server import Health, Service, build_server
from facerec.settings import ServerOptions
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc


def _collection(name: str, model: str = "facenet-keras-128") -> gallery_pb2.Collection:
    return gallery_pb2.Collection(
        name=name,
        contract=gallery_pb2.EmbeddingContract(detector="mtcnn", alignment="similarity", model=model),
        identities=2,
        faces=5,
        faces_without_picture=1,
        state=gallery_pb2.COLLECTION_READY,
        threshold=1.1,
        operating_points=[common_pb2.OperatingPoint(name="far_1e-3", threshold=1.0)],
        operating_point="far_1e-3",
    )


class Recorded(gallery_pb2_grpc.GalleryServicer):
    """Answers every call it is sent, recording (method, request); an operation is done at its third poll."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.polls = 0
        self.identities: list[str] = []  # what ListIdentities answers
        self.fail_operation = False  # the operation ends with an error instead of the switched collection

    def _seen(self, method: str, request: Any) -> None:
        self.sent.append((method, request))

    def Identify(self, request, context):
        self._seen("Identify", request)
        return gallery_pb2.IdentifyResponse(threshold=1.0)

    def Enroll(self, request, context):
        self._seen("Enroll", request)
        return gallery_pb2.EnrollResponse(
            identity=request.identity,
            results=[
                gallery_pb2.EnrollResult(outcome=gallery_pb2.ENROLLED, face_id=1) for _ in request.images
            ],
        )

    def Verify(self, request, context):
        self._seen("Verify", request)
        return gallery_pb2.VerifyResponse(match=True)

    def ListIdentities(self, request, context):
        self._seen("ListIdentities", request)
        return gallery_pb2.ListIdentitiesResponse(
            identities=[gallery_pb2.IdentitySummary(identity=name, face_count=2) for name in self.identities]
        )

    def GetIdentity(self, request, context):
        self._seen("GetIdentity", request)
        picture = gallery_pb2.FacePicture(face_id=3, media_type="image/webp", data=b"webp", width=4, height=5)
        return gallery_pb2.GetIdentityResponse(
            identity=gallery_pb2.IdentitySummary(identity=request.identity, face_count=2),
            faces=[
                gallery_pb2.FaceRecord(face_id=3, has_picture=True, picture=picture),
                gallery_pb2.FaceRecord(face_id=4),
            ],
        )

    def RemoveFace(self, request, context):
        self._seen("RemoveFace", request)
        return gallery_pb2.RemoveFaceResponse(identity="ann")

    def Stats(self, request, context):
        self._seen("Stats", request)
        return gallery_pb2.StatsResponse(collection=request.collection or "default")

    def RenameIdentity(self, request, context):
        self._seen("RenameIdentity", request)
        return gallery_pb2.RenameIdentityResponse(
            identity=gallery_pb2.IdentitySummary(identity=request.new_name, face_count=2)
        )

    def GetFacePicture(self, request, context):
        self._seen("GetFacePicture", request)
        return gallery_pb2.FacePicture(
            face_id=request.face_id, media_type="image/webp", data=b"RIFFwebp", width=160, height=200
        )

    def CreateCollection(self, request, context):
        self._seen("CreateCollection", request)
        if request.name == "taken":
            raise AlreadyExists("A collection named 'taken' exists already.")
        return _collection(request.name, request.contract.model or "facenet-keras-128")

    def GetCollection(self, request, context):
        self._seen("GetCollection", request)
        return _collection(request.name)

    def ListCollections(self, request, context):
        self._seen("ListCollections", request)
        if not request.page_token:
            return gallery_pb2.ListCollectionsResponse(
                collections=[_collection("archive")], next_page_token="2"
            )
        return gallery_pb2.ListCollectionsResponse(collections=[_collection("default")])

    def DeleteCollection(self, request, context):
        self._seen("DeleteCollection", request)
        return gallery_pb2.DeleteCollectionResponse(identities_removed=2, faces_removed=5)

    def SetOperatingPoints(self, request, context):
        self._seen("SetOperatingPoints", request)
        return _collection(request.collection)

    def Reembed(self, request, context):
        self._seen("Reembed", request)
        return self._operation(done=False)

    def GetOperation(self, request, context):
        self._seen("GetOperation", request)
        self.polls += 1
        return self._operation(done=self.polls >= 3)

    def _operation(self, done: bool) -> gallery_pb2.Operation:
        metadata = gallery_pb2.OperationMetadata(
            kind="reembed",
            collection="archive",
            target=gallery_pb2.EmbeddingContract(model="facenet-keras-128-int8"),
            faces_total=5,
            faces_done=min(5, 2 * self.polls),
            stage="done" if done else "embedding",
            failed_faces=[gallery_pb2.FailedFace(face_id=4, identity="ann", reason="No kept picture.")],
        )
        operation = gallery_pb2.Operation(name="operations/9", metadata=metadata, done=done)
        if done and self.fail_operation:
            operation.error.CopyFrom(
                common_pb2.Error(
                    code=9,
                    reason="FAILED_PRECONDITION",
                    message="1 face cannot be re-embedded; give --drop-failed to leave it out.",
                )
            )
        elif done:
            operation.response.CopyFrom(_collection("archive", "facenet-keras-128-int8"))
        return operation


@contextmanager
def recorded_gallery() -> Iterator[tuple[Recorded, str]]:
    """A Recorded gallery on a free loopback port; yields (servicer, address)."""
    servicer = Recorded()
    server, port = build_server(
        [
            Service(
                "facerec.v1.Gallery", lambda s: gallery_pb2_grpc.add_GalleryServicer_to_server(servicer, s)
            )
        ],
        ServerOptions(host="127.0.0.1"),
        Health(["facerec.v1.Gallery"]),
        interceptors=[],
    )
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(0)

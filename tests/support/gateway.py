"""A fake gallery and detector on a real gRPC server (port 0), for the gateway's fast tests.

It answers from canned data, records every call with its metadata, fails a method with a chosen
status when told to, and can hold a call until released (to let the gateway's deadline pass).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from facerec import requestid
from facerec.errors import FacerecError
from facerec.server import Health, Service, build_server
from facerec.settings import ServerOptions
from facerec.status import abort
from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc, gallery_pb2, gallery_pb2_grpc
from tests.support.images import shrunk

# Larger than 2^32 and than a JavaScript double's 2^53 would round: it must arrive exactly.
BIG_FACE_ID = 2**62 + 7
FACE = b"\xff\xd8face"  # pictures whose bytes start so hold a face
PEOPLE = ("ada", "grace", "linus")


@dataclass
class Call:
    method: str
    request: object
    authorization: str
    request_id: str = ""  # the id the call was bound to (the gateway's x-request-id)


@dataclass
class Fake:
    """What the fake saw and how it should answer."""

    calls: list[Call] = field(default_factory=list)
    failures: dict[str, tuple[grpc.StatusCode, str] | FacerecError] = field(default_factory=dict)
    hold: set[str] = field(default_factory=set)
    released: threading.Event = field(default_factory=threading.Event)

    def seen(self, method: str, request: object, context: grpc.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata() or ())
        self.calls.append(Call(method, request, str(metadata.get("authorization", "")), requestid.current()))
        if method in self.hold:
            # Held until the test releases it, after the caller's deadline has passed.
            self.released.wait(60)
        if method in self.failures:
            failure = self.failures[method]
            if isinstance(failure, FacerecError):
                abort(context, failure)  # as a facerec server fails: with the reason in the details
            code, message = failure
            context.abort(code, message)

    def last(self, method: str) -> Call:
        return [c for c in self.calls if c.method == method][-1]


def _box() -> common_pb2.Box:
    return common_pb2.Box(x=10, y=20, width=30, height=40)


class FakeGallery(gallery_pb2_grpc.GalleryServicer):
    def __init__(self, fake: Fake) -> None:
        self.fake = fake

    def Enroll(self, request, context):
        self.fake.seen("Enroll", request, context)
        results = []
        for i, image in enumerate(request.images):
            if image.data.startswith(FACE):
                results.append(
                    gallery_pb2.EnrollResult(
                        outcome=gallery_pb2.ENROLLED, face_id=BIG_FACE_ID + i, box=_box(), faces_found=1
                    )
                )
            else:
                results.append(gallery_pb2.EnrollResult(outcome=gallery_pb2.NO_FACE))
        results += [
            gallery_pb2.EnrollResult(outcome=gallery_pb2.ENROLLED, face_id=5) for _ in request.embeddings
        ]
        return gallery_pb2.EnrollResponse(identity=request.identity, results=results)

    def Identify(self, request, context):
        self.fake.seen("Identify", request, context)
        face = gallery_pb2.IdentifiedFace(
            box=_box(),
            identity="ada",
            known=True,
            distance=0.5,
            confidence=0.9,
            candidates=[gallery_pb2.Candidate(identity="ada", distance=0.5, face_id=BIG_FACE_ID)],
            detection_confidence=0.99,
        )
        return gallery_pb2.IdentifyResponse(
            faces=[face], threshold=1.06, method="nearest-neighbour", width=100, height=120
        )

    def Verify(self, request, context):
        self.fake.seen("Verify", request, context)
        return gallery_pb2.VerifyResponse(
            match=True,
            distance=0.4,
            threshold=1.2,
            box_a=_box(),
            operating_point=request.operating_point or "far_1e-3",
        )

    def Search(self, request, context):
        self.fake.seen("Search", request, context)
        return gallery_pb2.SearchResponse(
            hits=[gallery_pb2.SearchHit(face_id=BIG_FACE_ID, identity="ada", distance=0.3)]
        )

    def ListIdentities(self, request, context):
        self.fake.seen("ListIdentities", request, context)
        start = int(request.page_token or 0)
        size = request.page_size or 100
        page = PEOPLE[start : start + size]
        more = start + size < len(PEOPLE)
        return gallery_pb2.ListIdentitiesResponse(
            identities=[gallery_pb2.IdentitySummary(identity=p, face_count=2, created_at_ms=1) for p in page],
            next_page_token=str(start + size) if more else "",
        )

    def GetIdentity(self, request, context):
        self.fake.seen("GetIdentity", request, context)
        if request.identity not in PEOPLE:
            context.abort(grpc.StatusCode.NOT_FOUND, f"No identity named {request.identity!r}.")
        return gallery_pb2.GetIdentityResponse(
            identity=gallery_pb2.IdentitySummary(identity=request.identity, face_count=1, created_at_ms=1),
            faces=[gallery_pb2.FaceRecord(face_id=BIG_FACE_ID, identity=request.identity, box=_box())],
        )

    def RemoveIdentity(self, request, context):
        self.fake.seen("RemoveIdentity", request, context)
        return gallery_pb2.RemoveIdentityResponse(faces_removed=2)

    def RemoveFace(self, request, context):
        self.fake.seen("RemoveFace", request, context)
        return gallery_pb2.RemoveFaceResponse(identity="ada")

    def Train(self, request, context):
        self.fake.seen("Train", request, context)
        return gallery_pb2.TrainResponse(identities=3, faces=6, train_accuracy=1.0)

    def Represent(self, request, context):
        self.fake.seen("Represent", request, context)
        face = gallery_pb2.RepresentedFace(
            box=_box(),
            quality=gallery_pb2.FaceQuality(size_px=30, detection_confidence=0.99, identifiable=True),
            embedding=common_pb2.Embedding(values=[0.6, 0.8], model="fake"),
        )
        return gallery_pb2.RepresentResponse(faces=[face], width=100, height=120, model="fake")

    def Stats(self, request, context):
        self.fake.seen("Stats", request, context)
        return gallery_pb2.StatsResponse(
            identities=3, faces=6, index_kind="flat", model="fake", threshold=1.2
        )

    def RenameIdentity(self, request, context):
        self.fake.seen("RenameIdentity", request, context)
        return gallery_pb2.RenameIdentityResponse(
            identity=gallery_pb2.IdentitySummary(identity=request.new_name, face_count=2, created_at_ms=1)
        )

    def GetFacePicture(self, request, context):
        self.fake.seen("GetFacePicture", request, context)
        if request.face_id != BIG_FACE_ID:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Face {request.face_id} keeps no picture.")
        return gallery_pb2.FacePicture(
            face_id=request.face_id, media_type="image/webp", data=PICTURE, width=2, height=3
        )

    def CreateCollection(self, request, context):
        self.fake.seen("CreateCollection", request, context)
        return _collection(request.name, request.contract.model or "fake")

    def GetCollection(self, request, context):
        self.fake.seen("GetCollection", request, context)
        return _collection(request.name)

    def ListCollections(self, request, context):
        self.fake.seen("ListCollections", request, context)
        return gallery_pb2.ListCollectionsResponse(
            collections=[_collection("archive"), _collection("default")]
        )

    def DeleteCollection(self, request, context):
        self.fake.seen("DeleteCollection", request, context)
        return gallery_pb2.DeleteCollectionResponse(identities_removed=3, faces_removed=6)

    def SetOperatingPoints(self, request, context):
        self.fake.seen("SetOperatingPoints", request, context)
        return _collection(request.collection or "default")

    def Reembed(self, request, context):
        self.fake.seen("Reembed", request, context)
        return _operation(request.collection, done=False)

    def GetOperation(self, request, context):
        self.fake.seen("GetOperation", request, context)
        return _operation("archive", done=True)


# The bytes of a face's kept picture (GetFacePicture).
PICTURE = b"RIFF\x00\x00\x00\x00WEBPfake"


def _collection(name: str, model: str = "fake") -> gallery_pb2.Collection:
    return gallery_pb2.Collection(
        name=name,
        contract=gallery_pb2.EmbeddingContract(detector="mtcnn", alignment="similarity", model=model),
        identities=3,
        faces=6,
        state=gallery_pb2.COLLECTION_READY,
        threshold=1.1,
    )


def _operation(collection: str, done: bool) -> gallery_pb2.Operation:
    metadata = gallery_pb2.OperationMetadata(
        kind="reembed",
        collection=collection,
        faces_total=6,
        faces_done=6 if done else 0,
        stage="done" if done else "queued",
        failed_faces=[gallery_pb2.FailedFace(face_id=5, identity="ada", reason="No kept picture.")],
    )
    return gallery_pb2.Operation(name="operations/7", metadata=metadata, done=done)


class FakeDetector(detector_pb2_grpc.DetectorServicer):
    def __init__(self, fake: Fake) -> None:
        self.fake = fake

    def Detect(self, request, context):
        self.fake.seen("Detect", request, context)
        results = []
        for image in request.images:
            if image.data.startswith(FACE):
                face = detector_pb2.Face(box=_box(), confidence=0.99)
                results.append(detector_pb2.ImageResult(width=100, height=120, faces=[face]))
            else:
                error = common_pb2.Error(code=3, message="The picture is not an image.")
                results.append(detector_pb2.ImageResult(error=error))
        return detector_pb2.DetectResponse(results=results)


@contextmanager
def fake_services(credentials: grpc.ServerCredentials | None = None) -> Iterator[tuple[Fake, str]]:
    """A fake Gallery and Detector on one real server (TLS with credentials); yields (fake, "127.0.0.1:PORT")."""
    fake = Fake()
    # The embedder's name too: the gateway's /readyz asks all three (one fake server stands for them).
    health = Health(["facerec.v1.Gallery", "facerec.v1.Detector", "facerec.v1.Embedder"])
    services = [
        Service(
            "facerec.v1.Gallery",
            lambda server: gallery_pb2_grpc.add_GalleryServicer_to_server(FakeGallery(fake), server),
        ),
        Service(
            "facerec.v1.Detector",
            lambda server: detector_pb2_grpc.add_DetectorServicer_to_server(FakeDetector(fake), server),
        ),
    ]
    server, port = build_server(services, ServerOptions(host="127.0.0.1", port=0), health, (), credentials)
    server.start()
    health.set_serving()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        fake.released.set()
        server.stop(0).wait()


def seventeen_pixel_face(http: httpx.Client, path: Path) -> bytes:
    """The picture shrunk until its largest face's shorter side is about 17 px (the gallery's floor is
    20), on a plain canvas, as PNG: the detector (asked through the gateway at http) still finds it."""
    found = http.post("/v1/detect", files={"image": (path.name, path.read_bytes())}).json()
    box = max(found["images"][0]["faces"], key=lambda f: f["box"]["width"] * f["box"]["height"])["box"]
    return shrunk(path, 17.0 / min(box["width"], box["height"]))

"""A stand-in gallery for fast CLI tests: a real gRPC server on port 0 whose "pictures" say what to do.

Picture bytes starting with b"face" are enrolled; b"no face" finds no face; b"too large" is refused as
too large (RESOURCE_EXHAUSTED), b"gone" as if the gallery went away (UNAVAILABLE); b"busy face" is refused
once as busy (RESOURCE_EXHAUSTED with reason BUSY and a RetryInfo, as facerec.status sends it), then
enrolled; anything else is an INVALID picture. Verify answers "No face was found on image_b." when image_b holds no face."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

from facerec import errors
from facerec.status import abort
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc


@dataclass
class FakeGallery(gallery_pb2_grpc.GalleryServicer):
    """faces: face id -> (identity, picture bytes); enrolled in the order the calls arrived."""

    faces: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    # Pictures refused as busy once already, and how many times Enroll was called.
    refused_busy: set[bytes] = field(default_factory=set)
    enroll_calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def Enroll(self, request, context):  # noqa: N802 - gRPC's name
        results = []
        with self._lock:
            self.enroll_calls += 1
        for image in request.images:
            data = image.data
            if data.startswith(b"busy") and data not in self.refused_busy:
                self.refused_busy.add(data)
                abort(
                    context, errors.Overloaded("The detector queue is full; retry later.", retry_after_s=0.01)
                )
            if data.startswith(b"busy "):
                data = data[len(b"busy ") :]
            if data.startswith(b"too large"):
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, "The picture is larger than a request may be."
                )
            if data.startswith(b"gone"):
                context.abort(grpc.StatusCode.UNAVAILABLE, "The detector is not reachable.")
            if data.startswith(b"no face"):
                results.append(gallery_pb2.EnrollResult(outcome=gallery_pb2.NO_FACE))
            elif data.startswith(b"face"):
                with self._lock:
                    face_id = len(self.faces) + 1
                    self.faces[face_id] = (request.identity, data)
                results.append(gallery_pb2.EnrollResult(outcome=gallery_pb2.ENROLLED, face_id=face_id))
            else:
                error = common_pb2.Error(code=3, message="The image could not be decoded.")
                results.append(gallery_pb2.EnrollResult(outcome=gallery_pb2.INVALID, error=error))
        return gallery_pb2.EnrollResponse(identity=request.identity, results=results)

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for identity, _ in self.faces.values():
            counts[identity] = counts.get(identity, 0) + 1
        return counts

    def ListIdentities(self, request, context):  # noqa: N802
        return gallery_pb2.ListIdentitiesResponse(
            identities=[
                gallery_pb2.IdentitySummary(identity=name, face_count=n)
                for name, n in sorted(self._counts().items())
            ]
        )

    def GetIdentity(self, request, context):  # noqa: N802
        faces = [
            gallery_pb2.FaceRecord(face_id=i, identity=who)
            for i, (who, _) in self.faces.items()
            if who == request.identity
        ]
        if not faces:
            context.abort(grpc.StatusCode.NOT_FOUND, f"No identity {request.identity!r} is enrolled.")
        summary = gallery_pb2.IdentitySummary(identity=request.identity, face_count=len(faces))
        return gallery_pb2.GetIdentityResponse(identity=summary, faces=faces)

    def RemoveFace(self, request, context):  # noqa: N802
        with self._lock:
            if request.face_id not in self.faces:
                context.abort(grpc.StatusCode.NOT_FOUND, f"No face {request.face_id} is enrolled.")
            identity, _ = self.faces.pop(request.face_id)
        return gallery_pb2.RemoveFaceResponse(identity=identity)

    def RemoveIdentity(self, request, context):  # noqa: N802
        with self._lock:
            gone = [i for i, (who, _) in self.faces.items() if who == request.identity]
            for i in gone:
                del self.faces[i]
        return gallery_pb2.RemoveIdentityResponse(faces_removed=len(gone))

    def Identify(self, request, context):  # noqa: N802
        return gallery_pb2.IdentifyResponse(threshold=1.0)

    def Verify(self, request, context):  # noqa: N802
        for label, image in (("image_a", request.image_a), ("image_b", request.image_b)):
            if image.data.startswith(b"no face"):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"No face was found on {label}.")
        return gallery_pb2.VerifyResponse(match=True, distance=0.5, threshold=1.0, faces_a=1, faces_b=2)


@contextmanager
def fake_gallery() -> Iterator[tuple[FakeGallery, str]]:
    """A FakeGallery served on a free loopback port; yields (servicer, address)."""
    servicer = FakeGallery()
    server = grpc.server(futures.ThreadPoolExecutor(8))
    gallery_pb2_grpc.add_GalleryServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(0)

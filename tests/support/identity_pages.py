"""Every face of an identity over gRPC, following GetIdentity's pages (at most 1000 faces a page)."""

from __future__ import annotations

from typing import Any

from facerec.v1 import gallery_pb2


def all_faces(stub: Any, identity: str, timeout_s: float = 30) -> list[gallery_pb2.FaceRecord]:
    """The identity's faces from every page, in the gallery's order. stub: a GalleryStub."""
    faces: list[gallery_pb2.FaceRecord] = []
    token = ""
    while True:
        request = gallery_pb2.GetIdentityRequest(identity=identity, page_token=token)
        reply = stub.GetIdentity(request, timeout=timeout_s)
        faces.extend(reply.faces)
        token = reply.next_page_token
        if not token:
            return faces

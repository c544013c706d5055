"""Who may call which Gallery method with which token (facerec.security.TokenAuthInterceptor): the write
methods, the admin ones, and where each request names its collection for tokens scoped to some."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facerec.security import AccessPolicy, Grant
from facerec.v1 import gallery_pb2

SERVICE_NAME = "facerec.v1.Gallery"


def _reads_templates(request: bytes | gallery_pb2.GetIdentityRequest) -> bool:
    if isinstance(request, bytes):
        request = gallery_pb2.GetIdentityRequest.FromString(request)
    return request.include_embeddings


def _field(message: Any, name: str) -> Callable[[Any], str]:
    """Reads one string field of a request, raw bytes (parsed here) or message."""

    def read(request: Any) -> str:
        if isinstance(request, bytes):
            request = message.FromString(request)
        return str(getattr(request, name))

    return read


def _method(name: str) -> str:
    return f"/{SERVICE_NAME}/{name}"


def _collection_fields() -> dict[str, Callable[[Any], str]]:
    """Per method, where its request names its collection: `collection`, or `name` for the RPCs on one
    collection itself. ListCollections and GetOperation name none (their answers are checked instead)."""
    found: dict[str, Callable[[Any], str]] = {}
    service = gallery_pb2.DESCRIPTOR.services_by_name["Gallery"]
    for method in service.methods:
        fields = method.input_type.fields_by_name
        message = getattr(gallery_pb2, method.input_type.name)
        if "collection" in fields:
            found[_method(method.name)] = _field(message, "collection")
        elif method.name in ("CreateCollection", "GetCollection", "DeleteCollection"):
            found[_method(method.name)] = _field(message, "name")
    return found


def _listed_in_scope(response: gallery_pb2.ListCollectionsResponse, grant: Grant) -> Any:
    """ListCollections shows a scoped token only its collections (a page may then hold fewer)."""
    kept = [c for c in response.collections if grant.may_use(c.name)]
    del response.collections[:]
    response.collections.extend(kept)
    return response


# Who may call what (facerec.security.TokenAuthInterceptor). Writes (an rw token at least): the methods
# that change a gallery, and GetIdentity asking for the stored embeddings (biometric templates). Represent
# is not among them: the templates it answers are computed from the caller's own picture, as the
# detector's and the embedder's Detect and Embed (open to read-only tokens) would compute them; it reads
# nothing stored. Admin only: creating, deleting and re-embedding collections, and storing their operating
# points. A token scoped to some collections may use only those (each request's collection, an
# operation's), and lists only those.
WRITE_METHODS = AccessPolicy(
    {
        **{
            _method(name): None
            for name in ("Enroll", "RemoveIdentity", "RemoveFace", "Train", "RenameIdentity")
        },
        _method("GetIdentity"): _reads_templates,
    },
    admin=[
        _method(name) for name in ("CreateCollection", "DeleteCollection", "Reembed", "SetOperatingPoints")
    ],
    collection_of=_collection_fields(),
    response_collection={_method("GetOperation"): lambda op: str(op.metadata.collection)},
    narrow={_method("ListCollections"): _listed_in_scope},
)

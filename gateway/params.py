"""What every route shares: the caller's token (passed on as it came), the collection its path names, and
an operation's description from its RPC's comment."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.contract import doc

# Documents the scheme (the docs page's Authorize button); the header itself is passed on as it came.
_bearer = HTTPBearer(
    auto_error=False, description="A token, when the gateway or the gallery requires one (docs/limits.md)."
)


def authorization(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    return request.headers.get("authorization", "")


Auth = Annotated[str, Depends(authorization)]


def collection_in_path(request: Request) -> str:
    """The {collection} of a /v1/collections/{collection}/… route; "" (the default) for the others."""
    return str(request.path_params.get("collection", ""))


# The collection a gallery route works on: the same handler serves /v1/x ("") and
# /v1/collections/{collection}/x, so it reads the path rather than declaring a parameter.
Collection = Annotated[str, Depends(collection_in_path)]

COLLECTION_DOC = (
    "The collection (see CreateCollection); the routes without /collections/{collection} work on `default`."
)
CollectionName = Annotated[str, Path(min_length=1, max_length=128, description=COLLECTION_DOC)]


def named_collection(collection: CollectionName) -> None:
    """Documents and bounds {collection} once for every route under /v1/collections/{collection}."""


def rpc(name: str) -> str:
    """An operation's description: its RPC's comment in protos/."""
    return doc(name) + f" (gRPC: facerec.v1.{name}.)"

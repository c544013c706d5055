"""The routes of the collections themselves, their long-running operations, and the face routes the
collections brought (renaming an identity, a face's kept picture).

A collection is a resource (`/v1/collections/{collection}`); what is not a read, a write or a removal of
one is a custom method after a colon, as Google's API design has it: `:reembed` on a collection, `:rename`
on an identity (its name may hold "/", so a sub-path could not end it). Re-embedding answers an operation,
polled at `/v1/operations/{id}`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from google.protobuf import json_format
from starlette.requests import Request

from facerec.v1 import gallery_pb2
from gateway import models
from gateway.contract import answer, doc
from gateway.guard import check_collection
from gateway.params import Auth, Collection, CollectionName, rpc
from gateway.requests import json_body
from gateway.upstream import Channels

REEMBED = ":reembed"
RENAME = ":rename"
OPERATIONS = "operations/"
# A face's picture is a biometric: neither the browser nor a proxy keeps a copy.
_PICTURE_HEADERS = {"Cache-Control": "no-store"}
_IMAGE = {"schema": {"type": "string", "format": "binary"}}
_PICTURE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The picture's bytes, with its media type as Content-Type "
        + "(gRPC: FacePicture.media_type).",
        "content": {"image/webp": _IMAGE, "image/jpeg": _IMAGE, "image/png": _IMAGE},
    }
}


def _json_body_of(model: type[Any]) -> dict[str, Any]:
    """openapi_extra for a JSON body: its schema with the nested models written in place (a schema's own
    $defs are not where the document's $refs are resolved from)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


def add_face_routes(router: APIRouter, channels: Channels, suffix: str) -> None:
    """Rename and picture, beside the other gallery routes of router (operation ids RPC + suffix)."""

    @router.post(
        "/identities/{identity:path}" + RENAME,
        response_model=models.RenameIdentityResponse,
        tags=["identities"],
        operation_id="RenameIdentity" + suffix,
        description=rpc("Gallery.RenameIdentity"),
        summary="Rename an identity, keeping its faces",
        openapi_extra=_json_body_of(models.RenameJson),
    )
    async def rename_identity(
        identity: Annotated[str, Path(description=doc("RenameIdentityRequest.identity"))],
        request: Request,
        auth: Auth,
        collection: Collection,
    ) -> Any:
        body = await json_body(request, models.RenameJson)
        message = gallery_pb2.RenameIdentityRequest(
            collection=collection, identity=identity, new_name=body.new_name
        )
        return answer(await channels.gallery.call("RenameIdentity", message, auth))

    @router.get(
        "/faces/{face_id}/picture",
        response_class=Response,
        responses=_PICTURE_RESPONSE,
        tags=["faces"],
        operation_id="GetFacePicture" + suffix,
        description=rpc("Gallery.GetFacePicture"),
        summary="One face's kept picture, as an image",
    )
    async def face_picture(
        face_id: Annotated[int, Path(ge=1, le=2**63 - 1, description=doc("GetFacePictureRequest.face_id"))],
        auth: Auth,
        collection: Collection,
    ) -> Response:
        message = gallery_pb2.GetFacePictureRequest(collection=collection, face_id=face_id)
        picture = await channels.gallery.call("GetFacePicture", message, auth)
        return Response(picture.data, media_type=picture.media_type, headers=_PICTURE_HEADERS)


def add_routes(router: APIRouter, scoped: APIRouter, channels: Channels) -> None:
    """The collections' routes on router (/v1) and on scoped (/v1/collections/{collection})."""

    @router.get(
        "/collections",
        response_model=models.ListCollectionsResponse,
        tags=["collections"],
        operation_id="ListCollections",
        description=rpc("Gallery.ListCollections"),
        summary="The collections in name order, a page at a time",
    )
    async def list_collections(
        auth: Auth,
        page_size: Annotated[
            int, Query(ge=0, le=1000, description=doc("ListCollectionsRequest.page_size"))
        ] = 0,
        page_token: Annotated[
            str, Query(max_length=1024, description=doc("ListCollectionsRequest.page_token"))
        ] = "",
    ) -> Any:
        message = gallery_pb2.ListCollectionsRequest(page_size=page_size, page_token=page_token)
        return answer(await channels.gallery.call("ListCollections", message, auth))

    @router.post(
        "/collections",
        response_model=models.Collection,
        tags=["collections"],
        operation_id="CreateCollection",
        description=rpc("Gallery.CreateCollection"),
        summary="Create a collection pinned to its embedding contract",
        openapi_extra=_json_body_of(models.CreateCollectionJson),
    )
    async def create_collection(request: Request, auth: Auth) -> Any:
        body = await json_body(request, models.CreateCollectionJson)
        check_collection(request.scope, body.name)  # the name is in the body: the guard could not see it
        message = json_format.ParseDict(body.model_dump(), gallery_pb2.CreateCollectionRequest())
        return answer(await channels.gallery.call("CreateCollection", message, auth))

    @router.get(
        "/collections/{collection}",
        response_model=models.Collection,
        tags=["collections"],
        operation_id="GetCollection",
        description=rpc("Gallery.GetCollection"),
        summary="One collection: counts, contract, operating points, state",
    )
    async def get_collection(collection: CollectionName, auth: Auth) -> Any:
        message = gallery_pb2.GetCollectionRequest(name=collection)
        return answer(await channels.gallery.call("GetCollection", message, auth))

    @router.delete(
        "/collections/{collection}",
        response_model=models.DeleteCollectionResponse,
        tags=["collections"],
        operation_id="DeleteCollection",
        description=rpc("Gallery.DeleteCollection"),
        summary="Remove a collection with everything it holds",
    )
    async def delete_collection(collection: CollectionName, auth: Auth) -> Any:
        message = gallery_pb2.DeleteCollectionRequest(name=collection)
        return answer(await channels.gallery.call("DeleteCollection", message, auth))

    @router.post(
        "/collections/{collection}" + REEMBED,
        response_model=models.Operation,
        tags=["collections"],
        operation_id="Reembed",
        description=rpc("Gallery.Reembed"),
        summary="Start re-embedding a collection under a new contract (an operation)",
        openapi_extra=_json_body_of(models.ReembedJson),
    )
    async def reembed(collection: CollectionName, request: Request, auth: Auth) -> Any:
        body = await json_body(request, models.ReembedJson)
        message = json_format.ParseDict(body.model_dump(), gallery_pb2.ReembedRequest())
        message.collection = collection
        return answer(await channels.gallery.call("Reembed", message, auth))

    @scoped.post(
        "/operating-points",
        response_model=models.Collection,
        tags=["collections"],
        operation_id="SetOperatingPoints",
        description=rpc("Gallery.SetOperatingPoints"),
        summary="Store the collection's operating points for every replica",
        openapi_extra=_json_body_of(models.OperatingPointsJson),
    )
    async def set_operating_points(request: Request, auth: Auth, collection: Collection) -> Any:
        body = await json_body(request, models.OperatingPointsJson)
        message = json_format.ParseDict(
            body.model_dump(exclude_none=True), gallery_pb2.SetOperatingPointsRequest()
        )
        message.collection = collection
        return answer(await channels.gallery.call("SetOperatingPoints", message, auth))

    @router.get(
        "/operations/{operation_id}",
        response_model=models.Operation,
        tags=["operations"],
        operation_id="GetOperation",
        description=rpc("Gallery.GetOperation"),
        summary="A long-running operation's progress and outcome",
    )
    async def get_operation(
        operation_id: Annotated[
            str,
            Path(
                min_length=1,
                max_length=256,
                description="The operation's id: its name (Operation.name) without `operations/`.",
            ),
        ],
        request: Request,
        auth: Auth,
    ) -> Any:
        message = gallery_pb2.GetOperationRequest(name=OPERATIONS + operation_id)
        operation = await channels.gallery.call("GetOperation", message, auth)
        check_collection(request.scope, operation.metadata.collection)  # known only from the answer
        return answer(operation)

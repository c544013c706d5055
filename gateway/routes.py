"""The /v1 routes: one per gallery RPC, plus detect (answered by the detector itself).

Every gallery route is served twice: as it always was (`/v1/identify`: the `default` collection) and under
`/v1/collections/{collection}/…`, whose {collection} becomes the gRPC request's `collection`. The routes
of the collections themselves are gateway.collection_routes'. Pictures come as multipart files or as
base64 strings in a JSON body; both are documented in the OpenAPI schema. Every route passes the caller's
`Authorization` header on to the gallery.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from facerec.v1 import common_pb2, detector_pb2, gallery_pb2
from gateway import collection_routes, models
from gateway.config import Settings
from gateway.contract import answer, doc, to_json
from gateway.errors import invalid
from gateway.openapi import ERRORS, ok
from gateway.params import Auth, Collection, named_collection, rpc
from gateway.requests import (
    JSON,
    MULTIPART,
    Picture,
    decoded,
    file,
    files,
    form,
    json_body,
    kind,
    number,
    text,
)
from gateway.uploads import (
    check_count,
    enroll_base64,
    enroll_upload,
    parts,
    picture_bytes,
    picture_name,
)
from gateway.upstream import Channels

DEFAULT_COLLECTION = "default"
# The operation ids of a gallery route served under /v1/collections/{collection}: the RPC's name and this.
IN_COLLECTION = "InCollection"
SCOPED_PREFIX = "/v1/collections/"


def collection_of(method: str, path: str) -> str | None:
    """The collection a request works on, from its method and (decoded) path alone, before any route runs
    (gateway.guard's per-collection token scopes): {collection} of /v1/collections/{collection}[/…|:verb],
    "default" for the other gallery routes, None where no one collection is named (listing or creating
    collections, operations, detect, and everything outside /v1)."""
    if path.startswith(SCOPED_PREFIX):
        head, slash, _ = path[len(SCOPED_PREFIX) :].partition("/")
        if not slash and method == "POST" and head.endswith(collection_routes.REEMBED):
            head = head[: -len(collection_routes.REEMBED)]
        return head or None
    if path in ("/v1/collections", "/v1/detect") or path.startswith("/v1/operations/"):
        return None
    return DEFAULT_COLLECTION if path.startswith("/v1/") else None


def _body(json_model: type[BaseModel], fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """openapi_extra for a body that is either JSON (json_model) or multipart (fields); a multipart field
    is described as the JSON field of the same name is (a file where JSON has base64)."""
    schema = json_model.model_json_schema()
    described = {
        name: {**kind, "description": schema["properties"][name]["description"]}
        if name in schema["properties"]
        else kind
        for name, kind in fields.items()
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                MULTIPART: {"schema": {"type": "object", "properties": described}},
                JSON: {"schema": schema},
            },
        }
    }


_FILE = {"type": "string", "format": "binary"}
_FILES = {"type": "array", "items": _FILE}
_INT = {"type": "integer", "default": 0}
_FLOAT = {"type": "number", "default": 0}
_TEXT = {"type": "string"}


def build_router(settings: Settings, channels: Channels) -> APIRouter:
    """The /v1 routes over the two channels: the gallery's twice (default, and by collection), detect, and
    the collections' own."""
    router = APIRouter(prefix="/v1", responses=ERRORS)
    _detect_route(router, settings, channels)
    _gallery_routes(router, settings, channels, "")
    scoped = APIRouter(prefix="/collections/{collection}", dependencies=[Depends(named_collection)])
    _gallery_routes(scoped, settings, channels, IN_COLLECTION)
    collection_routes.add_routes(router, scoped, channels)
    router.include_router(scoped)
    return router


def _detect_route(router: APIRouter, settings: Settings, channels: Channels) -> None:
    max_bytes = settings.max_image_bytes
    max_files = max(settings.max_images_per_enroll, settings.max_images_per_detect, 2) + 1

    @router.post(
        "/detect",
        response_model=models.DetectResponse,
        tags=["detection"],
        operation_id="Detect",
        description=rpc("Detector.Detect"),
        summary="Every face's box and landmarks (asked of the detector directly)",
        openapi_extra=_body(
            models.DetectJson,
            {"images": _FILES, "min_face_size_px": _INT, "min_confidence": _FLOAT, "max_faces": _INT},
        ),
    )
    async def detect(request: Request, auth: Auth) -> Any:
        if kind(request) == MULTIPART:
            data = await form(request, max_files)
            pictures = await files(data, "images", max_bytes, required=False) or await files(
                data, "image", max_bytes
            )
            options = detector_pb2.DetectOptions(
                min_face_size_px=number(data, "min_face_size_px", int, 0),
                min_confidence=number(data, "min_confidence", float, 0.0, high=1.0),
                max_faces=number(data, "max_faces", int, 0),
            )
        else:
            body = await json_body(request, models.DetectJson)
            pictures = [decoded(p, f"images[{i}]", max_bytes) for i, p in enumerate(body.images)]
            options = detector_pb2.DetectOptions(
                min_face_size_px=body.min_face_size_px,
                min_confidence=body.min_confidence,
                max_faces=body.max_faces,
            )
            del body
        if not pictures or len(pictures) > settings.max_images_per_detect:
            raise invalid(
                f"Give 1 to {settings.max_images_per_detect} pictures to detect faces on.", "images"
            )
        message = detector_pb2.DetectRequest(
            images=[common_pb2.Image(data=p.data) for p in pictures], options=options
        )
        return answer(await channels.detector.call("Detect", message, auth))


def _gallery_routes(router: APIRouter, settings: Settings, channels: Channels, suffix: str) -> None:
    """The gallery's routes on router, with operation ids RPC + suffix; the collection is the router's
    {collection} when it has one (Collection)."""
    max_bytes = settings.max_image_bytes
    max_files = max(settings.max_images_per_enroll, settings.max_images_per_detect, 2) + 1

    @router.post(
        "/identify",
        response_model=models.IdentifyResponse,
        tags=["recognition"],
        operation_id="Identify" + suffix,
        responses=ok("Identify"),
        description=rpc("Gallery.Identify"),
        summary="Who is on this picture: every face, named or unknown",
        openapi_extra=_body(
            models.IdentifyJson,
            {"image": _FILE, "top_k": _INT, "threshold": _FLOAT, "operating_point": _TEXT},
        ),
    )
    async def identify(request: Request, auth: Auth, collection: Collection) -> Any:
        if kind(request) == MULTIPART:
            data = await form(request, max_files)
            picture = await file(data.get("image"), "image", max_bytes)
            message = gallery_pb2.IdentifyRequest(
                image=common_pb2.Image(data=picture.data),
                top_k=number(data, "top_k", int, 0, high=100),
                threshold=number(data, "threshold", float, 0.0, high=2.0),
                operating_point=text(data, "operating_point"),
                collection=collection,
            )
        else:
            body = await json_body(request, models.IdentifyJson)
            message = gallery_pb2.IdentifyRequest(
                top_k=body.top_k,
                threshold=body.threshold,
                operating_point=body.operating_point,
                collection=collection,
            )
            if body.image:
                message.image.data = decoded(body.image, "image", max_bytes).data
            elif body.embedding:
                message.embedding.values.extend(body.embedding)
            else:
                raise invalid("Give image (base64) or embedding.", "image")
            del body  # the base64 text, while the gallery works
        return answer(await channels.gallery.call("Identify", message, auth))

    @router.post(
        "/verify",
        response_model=models.VerifyResponse,
        tags=["recognition"],
        operation_id="Verify" + suffix,
        responses=ok("Verify"),
        description=rpc("Gallery.Verify"),
        summary="Same person? Two pictures, or a picture and an enrolled identity",
        openapi_extra=_body(
            models.VerifyJson,
            {
                "image_a": _FILE,
                "image_b": _FILE,
                "identity": _TEXT,
                "threshold": _FLOAT,
                "operating_point": _TEXT,
            },
        ),
    )
    async def verify(request: Request, auth: Auth, collection: Collection) -> Any:
        if kind(request) == MULTIPART:
            data = await form(request, max_files)
            a = await file(data.get("image_a"), "image_a", max_bytes)
            b = await file(data["image_b"], "image_b", max_bytes) if data.get("image_b") else None
            identity, threshold = text(data, "identity"), number(data, "threshold", float, 0.0, high=2.0)
            point = text(data, "operating_point")
        else:
            body = await json_body(request, models.VerifyJson)
            a = decoded(body.image_a, "image_a", max_bytes)
            b = decoded(body.image_b, "image_b", max_bytes) if body.image_b else None
            identity, threshold, point = body.identity, body.threshold, body.operating_point
            del body
        if b is None and not identity:
            raise invalid("Give image_b or an identity to compare image_a with.", "image_b")
        message = gallery_pb2.VerifyRequest(
            image_a=common_pb2.Image(data=a.data),
            identity=identity,
            threshold=threshold,
            operating_point=point,
            collection=collection,
        )
        if b is not None:
            message.image_b.data = b.data
        return answer(await channels.gallery.call("Verify", message, auth))

    @router.post(
        "/represent",
        response_model=models.RepresentResponse,
        tags=["detection"],
        operation_id="Represent" + suffix,
        responses=ok("Represent"),
        description=rpc("Gallery.Represent"),
        summary="Every face of a picture with its box, landmarks, quality and embedding; nothing stored",
        openapi_extra=_body(
            models.RepresentJson,
            {"image": _FILE, "min_face_size_px": _INT, "min_confidence": _FLOAT, "max_faces": _INT},
        ),
    )
    async def represent(request: Request, auth: Auth, collection: Collection) -> Any:
        """For callers who keep their own vector database: the embeddings are of the gallery's model, so
        identify, search and enroll take them as they are. A read-only token suffices (docs/limits.md)."""
        if kind(request) == MULTIPART:
            data = await form(request, max_files)
            picture = await file(data.get("image"), "image", max_bytes)
            options = detector_pb2.DetectOptions(
                min_face_size_px=number(data, "min_face_size_px", int, 0),
                min_confidence=number(data, "min_confidence", float, 0.0, high=1.0),
                max_faces=number(data, "max_faces", int, 0),
            )
        else:
            body = await json_body(request, models.RepresentJson)
            picture = decoded(body.image, "image", max_bytes)
            options = detector_pb2.DetectOptions(
                min_face_size_px=body.min_face_size_px,
                min_confidence=body.min_confidence,
                max_faces=body.max_faces,
            )
            del body
        message = gallery_pb2.RepresentRequest(
            image=common_pb2.Image(data=picture.data), detect_options=options, collection=collection
        )
        return answer(await channels.gallery.call("Represent", message, auth))

    @router.post(
        "/enroll",
        response_model=models.EnrollResponse,
        tags=["identities"],
        operation_id="Enroll" + suffix,
        description=rpc("Gallery.Enroll"),
        summary="Add pictures of one person; each picture gets its own outcome",
        openapi_extra=_body(models.EnrollJson, {"identity": _TEXT, "images": _FILES}),
    )
    async def enroll(request: Request, auth: Auth, collection: Collection) -> Any:
        """Pictures go to the gallery in parts of at most enroll_part_bytes (one picture at least), read
        from the spooled upload only when their part is sent: the gateway holds one part at a time, not
        the whole request (the gallery serves a part as it would a request of its own)."""
        embeddings: list[list[float]] = []
        pictures: list[Picture | UploadFile | dict[str, Any]] = []
        if kind(request) == MULTIPART:
            data = await form(request, max_files)
            identity = text(data, "identity")
            uploads = data.getlist("images") + data.getlist("image")
            check_count(len(uploads), settings.max_images_per_enroll)
            pictures = [enroll_upload(upload, i, max_bytes) for i, upload in enumerate(uploads)]
        else:
            body = await json_body(request, models.EnrollJson)
            identity, embeddings = body.identity, body.embeddings
            check_count(len(body.images), settings.max_images_per_enroll)
            pictures = [enroll_base64(p, i, max_bytes) for i, p in enumerate(body.images)]
            del body  # the base64 text: only the decoded pictures are kept while the gallery works
        results: list[dict[str, Any] | None] = [p if isinstance(p, dict) else None for p in pictures]
        sent = [(i, p) for i, p in enumerate(pictures) if not isinstance(p, dict)]
        if not sent and not embeddings and pictures:
            return {"identity": identity, "results": results}
        answered = identity
        tail: list[dict[str, Any]] = []
        for part_index, part in enumerate(parts(sent, settings.enroll_part_bytes) or [[]]):
            message = gallery_pb2.EnrollRequest(identity=identity, collection=collection)
            for _, picture in part:
                message.images.add(data=await picture_bytes(picture))
            if part_index == 0:  # the embeddings once, with the first part
                message.embeddings.extend(common_pb2.Embedding(values=e) for e in embeddings)
            reply = await channels.gallery.call("Enroll", message, auth)
            del message
            answered = reply.identity
            answers = iter(reply.results)
            for (index, picture), result in zip(part, answers, strict=False):
                results[index] = to_json(result, filename=picture_name(picture, index))
            tail += [to_json(r, filename=f"embeddings[{i}]") for i, r in enumerate(answers)]
        return {"identity": answered, "results": [*results, *tail]}

    @router.post(
        "/search",
        response_model=models.SearchResponse,
        tags=["recognition"],
        operation_id="Search" + suffix,
        description=rpc("Gallery.Search"),
        summary="The nearest enrolled faces to an embedding",
        openapi_extra=_body(models.SearchJson, {}),
    )
    async def search(request: Request, auth: Auth, collection: Collection) -> Any:
        body = await json_body(request, models.SearchJson)
        message = gallery_pb2.SearchRequest(
            embedding=common_pb2.Embedding(values=body.embedding), top_k=body.top_k, collection=collection
        )
        return answer(await channels.gallery.call("Search", message, auth))

    @router.get(
        "/identities",
        response_model=models.ListIdentitiesResponse,
        tags=["identities"],
        operation_id="ListIdentities" + suffix,
        description=rpc("Gallery.ListIdentities"),
        summary="Enrolled identities in name order, a page at a time",
    )
    async def list_identities(
        auth: Auth,
        collection: Collection,
        page_size: Annotated[
            int, Query(ge=0, le=1000, description=doc("ListIdentitiesRequest.page_size"))
        ] = 0,
        page_token: Annotated[
            str, Query(max_length=1024, description=doc("ListIdentitiesRequest.page_token"))
        ] = "",
    ) -> Any:
        message = gallery_pb2.ListIdentitiesRequest(
            page_size=page_size, page_token=page_token, collection=collection
        )
        return answer(await channels.gallery.call("ListIdentities", message, auth))

    @router.get(
        "/identities/{identity:path}",
        response_model=models.GetIdentityResponse,
        tags=["identities"],
        operation_id="GetIdentity" + suffix,
        description=rpc("Gallery.GetIdentity"),
        summary="One identity and a page of its faces (with their embeddings for an rw token)",
    )
    async def get_identity(
        identity: Annotated[str, Path(description=doc("GetIdentityRequest.identity"))],
        auth: Auth,
        collection: Collection,
        include_embeddings: Annotated[
            bool,
            Query(
                description=doc("GetIdentityRequest.include_embeddings")
                + " A biometric template: needs an rw token."
            ),
        ] = False,
        include_pictures: Annotated[
            bool, Query(description=doc("GetIdentityRequest.include_pictures") + " Base64 in JSON.")
        ] = False,
        page_size: Annotated[int, Query(ge=0, le=1000, description=doc("GetIdentityRequest.page_size"))] = 0,
        page_token: Annotated[
            str, Query(max_length=1024, description=doc("GetIdentityRequest.page_token"))
        ] = "",
    ) -> Any:
        message = gallery_pb2.GetIdentityRequest(
            identity=identity,
            include_embeddings=include_embeddings,
            include_pictures=include_pictures,
            collection=collection,
            page_size=page_size,
            page_token=page_token,
        )
        return answer(await channels.gallery.call("GetIdentity", message, auth))

    @router.delete(
        "/identities/{identity:path}",
        response_model=models.RemoveIdentityResponse,
        tags=["identities"],
        operation_id="RemoveIdentity" + suffix,
        description=rpc("Gallery.RemoveIdentity"),
        summary="Remove an identity and all its faces",
    )
    async def remove_identity(
        identity: Annotated[str, Path(description=doc("RemoveIdentityRequest.identity"))],
        auth: Auth,
        collection: Collection,
    ) -> Any:
        message = gallery_pb2.RemoveIdentityRequest(identity=identity, collection=collection)
        return answer(await channels.gallery.call("RemoveIdentity", message, auth))

    @router.delete(
        "/faces/{face_id}",
        response_model=models.RemoveFaceResponse,
        tags=["faces"],
        operation_id="RemoveFace" + suffix,
        description=rpc("Gallery.RemoveFace"),
        summary="Remove one face",
    )
    async def remove_face(
        face_id: Annotated[int, Path(ge=1, le=2**63 - 1, description=doc("RemoveFaceRequest.face_id"))],
        auth: Auth,
        collection: Collection,
    ) -> Any:
        message = gallery_pb2.RemoveFaceRequest(face_id=face_id, collection=collection)
        return answer(await channels.gallery.call("RemoveFace", message, auth))

    @router.post(
        "/train",
        response_model=models.TrainResponse,
        summary="Refit the SVM on every enrolled face",
        tags=["gallery"],
        operation_id="Train" + suffix,
        description=rpc("Gallery.Train"),
    )
    async def train(auth: Auth, collection: Collection) -> Any:
        message = gallery_pb2.TrainRequest(collection=collection)
        return answer(await channels.gallery.call("Train", message, auth))

    @router.get(
        "/stats",
        response_model=models.StatsResponse,
        summary="Counts, index, model and thresholds",
        tags=["gallery"],
        operation_id="Stats" + suffix,
        description=rpc("Gallery.Stats"),
    )
    async def stats(auth: Auth, collection: Collection) -> Any:
        message = gallery_pb2.StatsRequest(collection=collection)
        return answer(await channels.gallery.call("Stats", message, auth))

    collection_routes.add_face_routes(router, channels, suffix)

"""The /v1 routes: one per gallery RPC, plus detect (answered by the detector itself).

Pictures come as multipart files or as base64 strings in a JSON body; both are documented in the
OpenAPI schema. Every route passes the caller's `Authorization` header on to the gallery.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from facerec.v1 import common_pb2, detector_pb2, gallery_pb2
from gateway import models
from gateway.config import Settings
from gateway.errors import GatewayError, invalid
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
from gateway.upstream import Channels

# Documents the scheme (the docs page's Authorize button); the header itself is passed on as it came.
_bearer = HTTPBearer(auto_error=False, description="A gallery token, when the gallery requires one.")


def authorization(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    return request.headers.get("authorization", "")


Auth = Annotated[str, Depends(authorization)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": models.ErrorBody, "description": description}
    for status, description in (
        (400, "INVALID_ARGUMENT: a bad picture or field"),
        (401, "UNAUTHENTICATED: a token is required"),
        (403, "PERMISSION_DENIED: a read-only token"),
        (404, "NOT_FOUND"),
        (409, "FAILED_PRECONDITION"),
        (413, "the request or a picture is over the limit"),
        (429, "RESOURCE_EXHAUSTED: the gallery is busy"),
        (503, "UNAVAILABLE: the gallery or a service behind it is down"),
        (504, "DEADLINE_EXCEEDED"),
    )
}


def _body(json_model: type[BaseModel], fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """openapi_extra for a body that is either JSON (json_model) or multipart (fields)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                MULTIPART: {"schema": {"type": "object", "properties": fields}},
                JSON: {"schema": json_model.model_json_schema()},
            },
        }
    }


_FILE = {"type": "string", "format": "binary"}
_FILES = {"type": "array", "items": _FILE}
_INT = {"type": "integer", "default": 0}
_FLOAT = {"type": "number", "default": 0}
_TEXT = {"type": "string"}


def build_router(settings: Settings, channels: Channels) -> APIRouter:
    """The /v1 routes over the two channels."""
    router = APIRouter(prefix="/v1", responses=_ERRORS)
    max_bytes = settings.max_image_bytes
    max_files = max(settings.max_images_per_enroll, settings.max_images_per_detect, 2) + 1

    @router.post(
        "/identify",
        response_model=models.IdentifyResponse,
        summary="Who is on this picture: every face, named or unknown",
        openapi_extra=_body(
            models.IdentifyJson,
            {"image": _FILE, "top_k": _INT, "threshold": _FLOAT, "operating_point": _TEXT},
        ),
    )
    async def identify(request: Request, auth: Auth) -> models.IdentifyResponse:
        if kind(request) == MULTIPART:
            data = await form(request, max_files)
            picture = await file(data.get("image"), "image", max_bytes)
            message = gallery_pb2.IdentifyRequest(
                image=common_pb2.Image(data=picture.data),
                top_k=number(data, "top_k", int, 0),
                threshold=number(data, "threshold", float, 0.0),
                operating_point=text(data, "operating_point"),
            )
        else:
            body = await json_body(request, models.IdentifyJson)
            message = gallery_pb2.IdentifyRequest(
                top_k=body.top_k, threshold=body.threshold, operating_point=body.operating_point
            )
            if body.image:
                message.image.data = decoded(body.image, "image", max_bytes).data
            elif body.embedding:
                message.embedding.values.extend(body.embedding)
            else:
                raise invalid("Give image (base64) or embedding.")
        return models.identify_response(await channels.gallery.call("Identify", message, auth))

    @router.post(
        "/verify",
        response_model=models.VerifyResponse,
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
    async def verify(request: Request, auth: Auth) -> models.VerifyResponse:
        if kind(request) == MULTIPART:
            data = await form(request, max_files)
            a = await file(data.get("image_a"), "image_a", max_bytes)
            b = await file(data["image_b"], "image_b", max_bytes) if data.get("image_b") else None
            identity, threshold = text(data, "identity"), number(data, "threshold", float, 0.0)
            point = text(data, "operating_point")
        else:
            body = await json_body(request, models.VerifyJson)
            a = decoded(body.image_a, "image_a", max_bytes)
            b = decoded(body.image_b, "image_b", max_bytes) if body.image_b else None
            identity, threshold, point = body.identity, body.threshold, body.operating_point
        if b is None and not identity:
            raise invalid("Give image_b or an identity to compare image_a with.")
        message = gallery_pb2.VerifyRequest(
            image_a=common_pb2.Image(data=a.data),
            identity=identity,
            threshold=threshold,
            operating_point=point,
        )
        if b is not None:
            message.image_b.data = b.data
        return models.verify_response(await channels.gallery.call("Verify", message, auth))

    @router.post(
        "/detect",
        response_model=models.DetectResponse,
        summary="Every face's box and landmarks (asked of the detector directly)",
        openapi_extra=_body(
            models.DetectJson,
            {"images": _FILES, "min_face_size_px": _INT, "min_confidence": _FLOAT, "max_faces": _INT},
        ),
    )
    async def detect(request: Request, auth: Auth) -> models.DetectResponse:
        if kind(request) == MULTIPART:
            data = await form(request, max_files)
            pictures = await files(data, "images", max_bytes, required=False) or await files(
                data, "image", max_bytes
            )
            options = detector_pb2.DetectOptions(
                min_face_size_px=number(data, "min_face_size_px", int, 0),
                min_confidence=number(data, "min_confidence", float, 0.0),
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
        if not pictures or len(pictures) > settings.max_images_per_detect:
            raise invalid(f"Give 1 to {settings.max_images_per_detect} pictures to detect faces on.")
        message = detector_pb2.DetectRequest(
            images=[common_pb2.Image(data=p.data) for p in pictures], options=options
        )
        return models.detect_response(await channels.detector.call("Detect", message, auth))

    @router.post(
        "/enroll",
        response_model=models.EnrollResponse,
        summary="Add pictures of one person; each picture gets its own outcome",
        openapi_extra=_body(models.EnrollJson, {"identity": _TEXT, "images": _FILES}),
    )
    async def enroll(request: Request, auth: Auth) -> models.EnrollResponse:
        embeddings: list[list[float]] = []
        if kind(request) == MULTIPART:
            data = await form(request, max_files)
            identity = text(data, "identity")
            uploads = data.getlist("images") + data.getlist("image")
            _check_count(len(uploads), settings.max_images_per_enroll)
            pictures: list[Picture | models.EnrollResult] = []
            for i, upload in enumerate(uploads):
                pictures.append(await _enroll_file(upload, i, max_bytes))
        else:
            body = await json_body(request, models.EnrollJson)
            identity, embeddings = body.identity, body.embeddings
            _check_count(len(body.images), settings.max_images_per_enroll)
            pictures = [_enroll_base64(p, i, max_bytes) for i, p in enumerate(body.images)]
        sent = [p for p in pictures if isinstance(p, Picture)]
        if not sent and not embeddings and pictures:
            return models.EnrollResponse(
                identity=identity, results=[p for p in pictures if not isinstance(p, Picture)]
            )
        message = gallery_pb2.EnrollRequest(
            identity=identity,
            images=[common_pb2.Image(data=p.data) for p in sent],
            embeddings=[common_pb2.Embedding(values=e) for e in embeddings],
        )
        reply = await channels.gallery.call("Enroll", message, auth)
        answers = iter(reply.results)
        results = [
            models.enroll_result(next(answers), p.name) if isinstance(p, Picture) else p for p in pictures
        ]
        results += [models.enroll_result(r, f"embeddings[{i}]") for i, r in enumerate(answers)]
        return models.EnrollResponse(identity=reply.identity, results=results)

    @router.post(
        "/search",
        response_model=models.SearchResponse,
        summary="The nearest enrolled faces to an embedding",
    )
    async def search(body: models.SearchJson, auth: Auth) -> models.SearchResponse:
        message = gallery_pb2.SearchRequest(
            embedding=common_pb2.Embedding(values=body.embedding), top_k=body.top_k
        )
        reply = await channels.gallery.call("Search", message, auth)
        return models.SearchResponse(
            hits=[
                models.SearchHit(face_id=h.face_id, identity=h.identity, distance=h.distance)
                for h in reply.hits
            ]
        )

    @router.get(
        "/identities",
        response_model=models.ListIdentitiesResponse,
        summary="Enrolled identities in name order, a page at a time",
    )
    async def list_identities(
        auth: Auth,
        page_size: Annotated[int, Query(description="1..1000; 0 = 100")] = 0,
        page_token: Annotated[str, Query(description="next_page_token of the previous page")] = "",
    ) -> models.ListIdentitiesResponse:
        message = gallery_pb2.ListIdentitiesRequest(page_size=page_size, page_token=page_token)
        reply = await channels.gallery.call("ListIdentities", message, auth)
        return models.ListIdentitiesResponse(
            identities=[models.summary(s) for s in reply.identities], next_page_token=reply.next_page_token
        )

    @router.get(
        "/identities/{identity:path}",
        response_model=models.GetIdentityResponse,
        summary="One identity and its faces",
    )
    async def get_identity(identity: str, auth: Auth) -> models.GetIdentityResponse:
        reply = await channels.gallery.call(
            "GetIdentity", gallery_pb2.GetIdentityRequest(identity=identity), auth
        )
        return models.GetIdentityResponse(
            identity=models.summary(reply.identity), faces=[models.face_record(f) for f in reply.faces]
        )

    @router.delete(
        "/identities/{identity:path}",
        response_model=models.RemoveIdentityResponse,
        summary="Remove an identity and all its faces",
    )
    async def remove_identity(identity: str, auth: Auth) -> models.RemoveIdentityResponse:
        message = gallery_pb2.RemoveIdentityRequest(identity=identity)
        reply = await channels.gallery.call("RemoveIdentity", message, auth)
        return models.RemoveIdentityResponse(faces_removed=reply.faces_removed)

    @router.delete(
        "/faces/{face_id}",
        response_model=models.RemoveFaceResponse,
        summary="Remove one face",
    )
    async def remove_face(face_id: int, auth: Auth) -> models.RemoveFaceResponse:
        reply = await channels.gallery.call(
            "RemoveFace", gallery_pb2.RemoveFaceRequest(face_id=face_id), auth
        )
        return models.RemoveFaceResponse(identity=reply.identity)

    @router.post(
        "/train", response_model=models.TrainResponse, summary="Refit the SVM on every enrolled face"
    )
    async def train(auth: Auth) -> models.TrainResponse:
        reply = await channels.gallery.call("Train", gallery_pb2.TrainRequest(), auth)
        return models.TrainResponse(
            identities=reply.identities, faces=reply.faces, train_accuracy=reply.train_accuracy
        )

    @router.get("/stats", response_model=models.StatsResponse, summary="Counts, index, model and thresholds")
    async def stats(auth: Auth) -> models.StatsResponse:
        return models.stats_response(await channels.gallery.call("Stats", gallery_pb2.StatsRequest(), auth))

    return router


def _check_count(count: int, limit: int) -> None:
    if count > limit:
        raise invalid(f"At most {limit} pictures per enroll, not {count}.")


async def _enroll_file(upload: object, index: int, max_bytes: int) -> Picture | models.EnrollResult:
    """The picture to send, or its INVALID outcome when it is over the limit (the others are still enrolled)."""
    try:
        return await file(upload, f"images[{index}]", max_bytes)
    except GatewayError as exc:
        return _refused(exc, getattr(upload, "filename", None) or f"images[{index}]")


def _enroll_base64(text_: str, index: int, max_bytes: int) -> Picture | models.EnrollResult:
    try:
        return decoded(text_, f"images[{index}]", max_bytes)
    except GatewayError as exc:
        return _refused(exc, f"images[{index}]")


def _refused(exc: GatewayError, name: str) -> models.EnrollResult:
    return models.EnrollResult(
        outcome="INVALID",
        face_id=0,
        box=None,
        error=models.ErrorBody(**exc.body()),
        faces_found=0,
        filename=name,
    )

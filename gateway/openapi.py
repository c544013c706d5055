"""The gateway's OpenAPI document, made to generate clients from: a tag per resource, operation ids that are
the RPC names, every field described by its comment in protos/ (gateway.contract), the error answers the
gateway really gives with their body and Retry-After, and examples.

FastAPI documents a 422 for every route with parameters; the gateway answers a bad parameter with 400
(gateway.app's handlers), so the 422 and its schemas are taken out of the document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.contract import ErrorBody

TAGS: list[dict[str, str]] = [
    {"name": "recognition", "description": "Who is on a picture, are two faces one person, nearest faces."},
    {
        "name": "detection",
        "description": "Faces, boxes, landmarks and embeddings of a picture; nothing stored.",
    },
    {"name": "identities", "description": "Enrolled people: enroll, list, get, remove."},
    {"name": "faces", "description": "One enrolled face."},
    {"name": "gallery", "description": "The gallery as a whole: its SVM and its figures."},
    {
        "name": "collections",
        "description": "Galleries of their own in one deployment, each pinned to its embedding contract; "
        "every gallery route also answers under /v1/collections/{collection}.",
    },
    {"name": "operations", "description": "Long-running operations (a collection's re-embedding)."},
    {"name": "system", "description": "Liveness and readiness."},
]

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying (the RetryInfo of details, rounded up).",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _info(reason: str) -> dict[str, str]:
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "facerec"}


def _example(code: str, message: str, reason: str, *extra: dict[str, Any]) -> dict[str, Any]:
    body = {"code": code, "message": message, "reason": reason, "details": [_info(reason), *extra]}
    return {"application/json": {"example": {**body, "request_id": "3f9a0c2e7b1d4e58"}}}


_RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retry_delay": "1s"}
_TOP_K_SENTENCE = "top_k must be between 1 and 100 (0 for 5), not 500."
_TOP_K = {
    "@type": "type.googleapis.com/google.rpc.BadRequest",
    "field_violations": [
        {"field": "top_k", "description": "top_k must be between 1 and 100 (0 for 5), not 500."}
    ],
}

# status → (description, example body, headers): what the gateway answers, gateway.errors' table.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description, "content": content, **extra}
    for status, description, content, extra in (
        (
            400,
            "INVALID_ARGUMENT (also NO_FACE, HOST_NOT_ALLOWED): a bad picture or field, a number out of range",
            _example("INVALID_ARGUMENT", _TOP_K_SENTENCE, "INVALID_ARGUMENT", _TOP_K),
            {},
        ),
        (
            401,
            "UNAUTHENTICATED: a token is required, or the Authorization header cannot be used",
            _example("UNAUTHENTICATED", "A valid token is required.", "UNAUTHENTICATED"),
            {"headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}},
        ),
        (
            403,
            "PERMISSION_DENIED (also CROSS_SITE): a read-only token, or an unsafe method from another site",
            _example("PERMISSION_DENIED", "This token may only read.", "PERMISSION_DENIED"),
            {},
        ),
        (
            404,
            "NOT_FOUND: no such identity, face, collection or operation",
            _example("NOT_FOUND", "No identity 'ada'.", "NOT_FOUND"),
            {},
        ),
        (
            408,
            "DEADLINE_EXCEEDED (REQUEST_TIMEOUT): the body did not arrive in time",
            _example("DEADLINE_EXCEEDED", "The body did not arrive within 30 s.", "REQUEST_TIMEOUT"),
            {},
        ),
        (
            409,
            "FAILED_PRECONDITION (also MODEL_MISMATCH): valid, but not in this state; ALREADY_EXISTS: the name is taken",
            _example("FAILED_PRECONDITION", "Training needs at least two identities.", "FAILED_PRECONDITION"),
            {},
        ),
        (
            413,
            "RESOURCE_EXHAUSTED (REQUEST_TOO_LARGE, IMAGE_TOO_LARGE): over a limit, ever; send less",
            _example(
                "RESOURCE_EXHAUSTED", "The picture image is larger than 20971520 bytes.", "IMAGE_TOO_LARGE"
            ),
            {},
        ),
        (
            429,
            "RESOURCE_EXHAUSTED (BUSY): full now; retry after Retry-After",
            _example("RESOURCE_EXHAUSTED", "The embedder's queue is full.", "BUSY", _RETRY),
            {"headers": _RETRY_AFTER},
        ),
        (
            500,
            "INTERNAL: a server fault (its log has the details)",
            _example("INTERNAL", "Internal error.", "INTERNAL"),
            {},
        ),
        (
            503,
            "UNAVAILABLE (also MODEL_FAULT): a service is down; retry after Retry-After",
            _example("UNAVAILABLE", "The gallery at gallery:50053 is not reachable.", "UNAVAILABLE", _RETRY),
            {"headers": _RETRY_AFTER},
        ),
        (
            504,
            "DEADLINE_EXCEEDED: a service did not answer in time",
            _example(
                "DEADLINE_EXCEEDED",
                "The gallery at gallery:50053 did not answer within 30 s.",
                "DEADLINE_EXCEEDED",
            ),
            {},
        ),
    )
}


_BOX = {"x": 57.0, "y": 63.0, "width": 78.0, "height": 108.0}
_LANDMARKS = {
    "left_eye": {"x": 70.0, "y": 102.3},
    "right_eye": {"x": 106.3, "y": 104.0},
    "nose": {"x": 82.0, "y": 123.1},
    "mouth_left": {"x": 73.9, "y": 145.2},
    "mouth_right": {"x": 102.3, "y": 145.8},
}
# Answers as the tour's pictures give them (README), shortened: a 200's example per route that has one.
OK_EXAMPLES: dict[str, dict[str, Any]] = {
    "Identify": {
        "faces": [
            {
                "box": _BOX,
                "identity": "madonna",
                "known": True,
                "distance": 0.568,
                "confidence": 0.98,
                "candidates": [{"identity": "madonna", "distance": 0.568, "face_id": 59}],
                "landmarks": _LANDMARKS,
                "detection_confidence": 0.9999,
                "not_identifiable": "NOT_IDENTIFIABLE_UNSPECIFIED",
                "not_identifiable_reason": "",
            }
        ],
        "threshold": 1.0596,
        "method": "svm",
        "width": 218,
        "height": 218,
        "operating_point": "identification",
        "classifier_stale": False,
    },
    "Verify": {
        "match": True,
        "distance": 0.71,
        "threshold": 1.09,
        "box_a": _BOX,
        "box_b": _BOX,
        "faces_a": 1,
        "faces_b": 1,
        "operating_point": "far_1e-3",
    },
    "Represent": {
        "faces": [
            {
                "box": _BOX,
                "landmarks": _LANDMARKS,
                "quality": {
                    "size_px": 78.0,
                    "detection_confidence": 0.9999,
                    "identifiable": True,
                    "not_identifiable": "NOT_IDENTIFIABLE_UNSPECIFIED",
                    "not_identifiable_reason": "",
                },
                "embedding": {"values": [0.0883, -0.0123, 0.0417], "model": "facenet-keras-128-int8"},
            }
        ],
        "width": 218,
        "height": 218,
        "model": "facenet-keras-128-int8",
    },
}


def ok(rpc: str) -> dict[int | str, dict[str, Any]]:
    """The responses argument of a route whose 200 has an example (OK_EXAMPLES)."""
    return {200: {"content": {"application/json": {"example": OK_EXAMPLES[rpc]}}}}


def install(app: FastAPI) -> None:
    """Makes app.openapi() answer the document this module describes (built once)."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=TAGS,
            )
            app.openapi_schema = _without_422(schema)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]  # FastAPI's documented way to customize it


def _without_422(schema: dict[str, Any]) -> dict[str, Any]:
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema

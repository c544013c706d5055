"""The one mapping from facerec errors to HTTP statuses, and the JSON body every error answers with.

The gateway raises the ground's errors (facerec.errors) and reads the gallery's and the detector's
answers with the ground's inverse of the status table (facerec.remote), so a reason the services send
reaches the HTTP caller as it was sent. The body of every error is JSON
`{"code": "NOT_FOUND", "message": "<one sentence>", "reason": "NOT_FOUND", "details": [...],
"request_id": "..."}`: the gRPC code's name, the service's own sentence (or the gateway's, where the
failure is its own), the stable reason, the same google.rpc details a gRPC caller gets (ErrorInfo,
BadRequest, RetryInfo; each as its proto JSON with an "@type", field names as in the proto), and the id
the request is logged under. Busy and unavailable answers carry `Retry-After`.
"""

from __future__ import annotations

import math
from typing import Any

import grpc
from google.protobuf import json_format
from starlette.types import Scope

from facerec import errors, remote
from facerec.status import STATUS, details_of, status_of

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# By class, not by code: RESOURCE_EXHAUSTED is 413 when too large (send less, ever) and 429 when busy.
HTTP_OF_ERROR: dict[type[errors.FacerecError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.Precondition: 409,
    errors.TooLarge: 413,
    errors.Overloaded: 429,
    errors.Unimplemented: 501,
    errors.Internal: 500,
    errors.Unavailable: 503,
    errors.ModelFault: 503,
    errors.DeadlineExceeded: 504,
}


def http_status(exc: errors.FacerecError) -> int:
    """The HTTP status of a facerec error (its nearest mapped class)."""
    if exc.reason == errors.Reason.REQUEST_TIMEOUT:
        return 408  # the client's own slowness, not a service's
    if exc.reason == errors.Reason.METHOD_NOT_ALLOWED:
        return 405
    for cls in type(exc).__mro__:
        if cls in HTTP_OF_ERROR:
            return HTTP_OF_ERROR[cls]
    return 500


def body(exc: errors.FacerecError, request_id: str = "") -> dict[str, Any]:
    """The JSON body of an error answer (the module's docstring)."""
    return {
        "code": status_of(exc).name,
        "message": str(exc),
        "reason": exc.reason,
        "details": [json_format.MessageToDict(d, preserving_proto_field_name=True) for d in details_of(exc)],
        "request_id": request_id,
    }


def request_id_of(scope: Scope) -> str:
    """The id the gateway logs this request under (set by its request-id middleware), else the caller's
    x-request-id header, else ""."""
    found = scope.get("state", {}).get("request_id")
    if found:
        return str(found)
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return str(value.decode("latin-1"))[:128]
    return ""


def headers(exc: errors.FacerecError) -> dict[str, str]:
    """Retry-After where retrying later helps; WWW-Authenticate where a token is wanted."""
    found: dict[str, str] = {}
    if exc.retry_after_s is not None:
        found["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if isinstance(exc, errors.Unauthenticated):
        found["WWW-Authenticate"] = "Bearer"
    return found


def too_large(
    message: str, reason: errors.Reason = errors.Reason.REQUEST_TOO_LARGE, field: str = ""
) -> errors.TooLarge:
    """A request or picture over a limit: 413."""
    return errors.TooLarge(message, reason=reason, field=field)


def invalid(message: str, field: str = "") -> errors.InvalidInput:
    """A bad request (400); field: the request field at fault, where one is."""
    return errors.InvalidInput(message, field=field)


def from_rpc(exc: BaseException, what: str, timeout_s: float) -> errors.FacerecError:
    """A failed call to `what` ("the gallery at HOST:PORT") as the caller's error, in one sentence."""
    return remote.error_from_rpc(exc, what, timeout_s)


def reasons_table() -> str:
    """The README's table of reasons (a row per facerec.errors.Reason), from the tables of this module,
    facerec.status and facerec.errors, so it cannot say other than the code does."""
    rows = ["| reason | gRPC status | HTTP | meaning |", "|---|---|---|---|"]
    for cls in STATUS:
        for reason in cls.reasons:
            exc = cls("x", reason=reason)
            http = f"{http_status(exc)}" + (" + `Retry-After`" if exc.retry_after_s is not None else "")
            rows.append(f"| `{reason}` | {status_of(exc).name} | {http} | {errors.MEANING[reason]} |")
    return "\n".join(rows) + "\n"

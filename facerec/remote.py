"""The inverse of facerec.status: a failed call (status, sentence, rich details) as the FacerecError it
stands for, so the gallery's clients, the CLI and the gateway read a service's answer the same way.

The class comes from the ErrorInfo reason the server sent (facerec.status adds one to every status);
without one (gRPC's own refusals, another server) from the status code alone. The sentence is the
server's own when it wrote one; gRPC's transport messages ("failed to connect to all addresses; ...")
are replaced by one naming the service.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from facerec import errors
from facerec.status import DOMAIN, STATUS
from facerec.v1 import common_pb2

log = logging.getLogger(__name__)

# Trailing metadata key of the google.rpc.Status that carries the details.
DETAILS_KEY = "grpc-status-details-bin"

# A reason names its class: every class's own reasons, the inverse of facerec.errors.
CLASS_OF_REASON: dict[str, type[errors.FacerecError]] = {
    reason: cls for cls in STATUS for reason in cls.reasons
}

# Without a reason, the code alone. RESOURCE_EXHAUSTED without one comes from gRPC itself (a message over
# a channel's or a server's size limit): too large, and no "try again", which only a server may say.
CLASS_OF_CODE: dict[grpc.StatusCode, type[errors.FacerecError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidInput,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidInput,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.Precondition,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.ABORTED: errors.Precondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.TooLarge,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.CANCELLED: errors.DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNKNOWN: errors.Internal,
    grpc.StatusCode.UNIMPLEMENTED: errors.Unimplemented,
    grpc.StatusCode.INTERNAL: errors.Internal,
    grpc.StatusCode.DATA_LOSS: errors.Internal,
}


def code_of(exc: BaseException) -> grpc.StatusCode:
    """The status code of a failed call (sync or asyncio), UNKNOWN for anything else."""
    code = exc.code() if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def details_of(exc: BaseException) -> tuple[str, str, float | None]:
    """(sentence, reason, retry_after_s) of a failed call; reason "" when the server sent none."""
    if not isinstance(exc, grpc.Call | grpc.aio.AioRpcError):
        return "", "", None
    reason, retry = "", None
    for detail in _details(exc):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == DOMAIN:
                reason = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            delay = error_details_pb2.RetryInfo()
            detail.Unpack(delay)
            retry = delay.retry_delay.ToNanoseconds() / 1e9
    return exc.details() or "", reason, retry


def field_of(exc: BaseException) -> str:
    """The request field a failed call's google.rpc.BadRequest names (its first violation); "" for none."""
    for detail in _details(exc):
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return next((v.field for v in bad.field_violations), "")
    return ""


def _details(exc: BaseException) -> list[any_pb2.Any]:
    """The rich details (google.rpc.Status.details) a failed call's trailer carries."""
    if not isinstance(exc, grpc.Call | grpc.aio.AioRpcError):
        return []
    found: list[any_pb2.Any] = []
    trailer: Sequence[tuple[str, Any]] = exc.trailing_metadata() or ()  # type: ignore[assignment]
    for key, value in trailer:
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            found.extend(status_pb2.Status.FromString(value).details)
        except Exception:  # a malformed trailer is no reason to fail the caller differently
            log.warning("a status with unreadable details; ignored")
    return found


def is_sentence(text: str) -> bool:
    """Whether a status message is a service's own sentence (facerec's are one, capitalized, with a
    period), rather than a gRPC transport message."""
    return text.endswith(".") and text[:1].isupper()


def error_from_rpc(exc: BaseException, what: str, timeout_s: float | None = None) -> errors.FacerecError:
    """A failed call to `what` ("the gallery at HOST:PORT") as the FacerecError it stands for, with the
    server's sentence, or one naming `what` where the message is gRPC's own."""
    code = code_of(exc)
    sentence, reason, retry = details_of(exc)
    cls = CLASS_OF_REASON.get(reason) or CLASS_OF_CODE.get(code, errors.Internal)
    ours = bool(reason) or is_sentence(sentence)
    if not ours:
        sentence = _sentence(code, what, timeout_s)
    elif not reason:
        reason = cls.reasons[0]
    return cls(sentence, reason=reason or None, retry_after_s=retry, field=field_of(exc))


def _sentence(code: grpc.StatusCode, what: str, timeout_s: float | None) -> str:
    subject = what[:1].upper() + what[1:]
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"{subject} is not reachable."
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        within = f"within {timeout_s:g} s" if timeout_s is not None else "in time"
        return f"{subject} did not answer {within}."
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return f"The request is larger than {what} accepts."
    if code == grpc.StatusCode.CANCELLED:
        return "The call was cancelled."
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"{subject} needs a valid token."
    return f"{subject} failed ({code.name})."


def error_of_item(item: common_pb2.Error) -> errors.FacerecError:
    """A per-item error of a batch reply (facerec.v1.Error: code number, sentence, reason) as its class."""
    code = next((c for c in grpc.StatusCode if c.value[0] == item.code), grpc.StatusCode.UNKNOWN)
    cls = CLASS_OF_REASON.get(item.reason) or CLASS_OF_CODE.get(code, errors.InvalidInput)
    return cls(item.message, reason=item.reason or None, field=item.field)

"""One exception class per gRPC status, built from a failed call: the server's sentence, the stable
machine-readable reason (google.rpc.ErrorInfo, domain "facerec") and when to retry (google.rpc.RetryInfo),
read from the `grpc-status-details-bin` trailer with protobuf alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory

from facerec_client.v1 import rpc_details

# Trailing metadata key of the google.rpc.Status that carries the details.
DETAILS_KEY = "grpc-status-details-bin"
# ErrorInfo.domain of every reason facerec sends.
DOMAIN = "facerec"
# How gRPC says a call never left this process: no connection could be made to any address.
_NOT_SENT = ("failed to connect", "connection refused", "dns resolution failed", "name resolution")


class FacerecError(Exception):
    """Base of every failure of a call. str(error) is one sentence (the server's own where it sent one).

    code: the call's gRPC status. reason: the server's stable reason (e.g. "IMAGE_TOO_LARGE", "NO_FACE",
    "BUSY"), "" when it sent none. retry_after_s: the server's RetryInfo, None when it gave none.
    never_sent: the call never reached a server (no connection), so sending it again is always safe.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        retry_after_s: float | None = None,
        code: grpc.StatusCode | None = None,
        never_sent: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.never_sent = never_sent
        if code is not None:
            self.code = code

    @property
    def never_reached_model(self) -> bool:
        """Whether the server did none of the request's work: never sent, or refused as busy (a full queue,
        a spent budget, a full disk: "nothing of this request was stored"). Only then is a write retried."""
        return self.never_sent or isinstance(self, Busy)


class InvalidArgument(FacerecError):
    """The request holds something unusable: an undecodable picture, a bad embedding, an empty name."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(FacerecError):
    """A collection, identity, face id or operation that is not in the gallery."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(FacerecError):
    """A name that is taken: a collection to create, or an identity's new name."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(FacerecError):
    """Valid, but the gallery cannot serve it now (the SVM with one identity, another model's embedding)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(FacerecError):
    """RESOURCE_EXHAUSTED: TooLarge (never, send less) or Busy (now, retry later)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class TooLarge(ResourceExhausted):
    """The request or a picture in it is over a limit by itself: it will never be served."""


class Busy(ResourceExhausted):
    """The server is busy (reason BUSY): the same request may succeed later (retry_after_s)."""


class Unavailable(FacerecError):
    """The gallery, or a service behind it, cannot be reached now."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(FacerecError):
    """No token, or an unknown one."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(FacerecError):
    """A valid token that may not do this (a read-only token asked to write)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(FacerecError):
    """The call's deadline passed (or it was cancelled) before an answer came."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(FacerecError):
    """The server failed in a way that is not the caller's doing (its log holds the details)."""

    code = grpc.StatusCode.INTERNAL


# Every status but OK has its class (a test holds the table to it).
CLASS_OF_CODE: dict[grpc.StatusCode, type[FacerecError]] = {
    grpc.StatusCode.CANCELLED: DeadlineExceeded,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: TooLarge,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: FailedPrecondition,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.UNIMPLEMENTED: Internal,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DATA_LOSS: Internal,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}
# Reasons that pick a finer class than the code alone.
CLASS_OF_REASON: dict[str, type[FacerecError]] = {"BUSY": Busy}


def _details_pool() -> tuple[type[Any], type[Any], type[Any]]:
    """(Status, ErrorInfo, RetryInfo) classes from a descriptor pool of this package's own: the default
    pool may hold googleapis-common-protos' google/rpc files already, of another version."""
    pool = descriptor_pool.DescriptorPool()
    for dependency in (any_pb2, duration_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(dependency.DESCRIPTOR.serialized_pb))
    for file in descriptor_pb2.FileDescriptorSet.FromString(rpc_details.FILE_DESCRIPTOR_SET).file:
        pool.Add(file)
    return tuple(  # type: ignore[return-value]
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"google.rpc.{name}"))
        for name in ("Status", "ErrorInfo", "RetryInfo")
    )


Status, ErrorInfo, RetryInfo = _details_pool()


def parse_details(trailer: Sequence[tuple[str, Any]]) -> tuple[str, float | None]:
    """(reason, retry_after_s) from a call's trailing metadata; ("", None) without facerec details."""
    reason, retry = "", None
    for key, value in trailer:
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = Status.FromString(value)
        except Exception:  # a malformed trailer is no reason to fail the caller differently
            continue
        for detail in status.details:
            name = detail.type_url.rpartition("/")[2]
            if name == "google.rpc.ErrorInfo":
                info = ErrorInfo.FromString(detail.value)
                if info.domain == DOMAIN:
                    reason = info.reason
            elif name == "google.rpc.RetryInfo":
                delay = RetryInfo.FromString(detail.value).retry_delay
                retry = delay.seconds + delay.nanos / 1e9
    return reason, retry


def is_sentence(text: str) -> bool:
    """Whether a status message is a server's own sentence (facerec's are capitalized, with a period),
    rather than a gRPC transport message."""
    return text.endswith(".") and text[:1].isupper()


def from_rpc_error(
    exc: grpc.RpcError | grpc.aio.AioRpcError, what: str, timeout_s: float | None
) -> FacerecError:
    """A failed call (sync or asyncio) to `what` ("the gallery at HOST:PORT") as its FacerecError."""
    code = exc.code() if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    text = (exc.details() if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else "") or ""
    trailer = exc.trailing_metadata() if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else ()
    reason, retry = parse_details(cast(Sequence[tuple[str, Any]], tuple(trailer or ())))
    cls = CLASS_OF_REASON.get(reason) or CLASS_OF_CODE.get(code, Internal)
    never_sent = code == grpc.StatusCode.UNAVAILABLE and any(m in text.lower() for m in _NOT_SENT)
    sentence = text if reason or is_sentence(text) else _sentence(code, what, timeout_s)
    return cls(sentence, reason=reason, retry_after_s=retry, code=code, never_sent=never_sent)


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

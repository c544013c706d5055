"""The one mapping from facerec errors to gRPC status codes, and the interceptor that applies it.

Every status a server sends for a FacerecError carries rich details (google.rpc.Status in the
`grpc-status-details-bin` trailer): an ErrorInfo with the error's stable reason, a BadRequest field
violation where the error is one request field's, and a RetryInfo where retrying later helps.
facerec.remote reads them back on the client side; the gateway sends the same details as JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from facerec import errors
from facerec.v1 import common_pb2

log = logging.getLogger(__name__)

STATUS: dict[type[errors.FacerecError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Precondition: grpc.StatusCode.FAILED_PRECONDITION,
    # "Too large, ever" and "busy now" share the code; the ErrorInfo reason tells them apart.
    errors.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    # Another replica, or this one restarted (its exports re-checked), can serve: retrying is right.
    errors.ModelFault: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    errors.Internal: grpc.StatusCode.INTERNAL,
}
# ErrorInfo.domain of every reason facerec sends.
DOMAIN = "facerec"


def status_of(exc: errors.FacerecError) -> grpc.StatusCode:
    """The status code for a facerec error (its nearest mapped class)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.INTERNAL


def details_of(exc: errors.FacerecError) -> list[any_pb2.Any]:
    """The rich details of `exc`, in this order: ErrorInfo (always), BadRequest (when the error names a
    field), RetryInfo (when retrying later helps). Both faces send these: gRPC packed, HTTP as JSON."""
    details = [_packed(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN))]
    if exc.field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=str(exc))
        details.append(_packed(error_details_pb2.BadRequest(field_violations=[violation])))
    if exc.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(exc.retry_after_s * 1e9))
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    return details


def _packed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(exc: errors.FacerecError) -> grpc.Status:
    """The status for `exc`: its code, its sentence, and its details (details_of)."""
    status = status_pb2.Status(code=status_of(exc).value[0], message=str(exc), details=details_of(exc))
    answer: grpc.Status = rpc_status.to_status(status)
    return answer


def abort(context: grpc.ServicerContext, exc: errors.FacerecError) -> None:
    """Ends the call with exc's status, sentence and details (raises, as context.abort does)."""
    context.abort_with_status(rich_status(exc))


def error_proto(exc: errors.FacerecError, field: str = "") -> common_pb2.Error:
    """A per-item error for a response that answers the other items normally. field: the item's place in
    the request ("images[2]"); it names the field better than the error can, which knows only its kind."""
    return common_pb2.Error(
        code=status_of(exc).value[0], message=str(exc), reason=exc.reason, field=field or exc.field
    )


def _wrap(
    method: Callable[[Any, grpc.ServicerContext], Any],
    name: str,
    deserialize: Callable[[bytes], Any] | None,
) -> Callable[..., Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            if deserialize is not None:
                # Parsed here rather than by grpc, which answers INTERNAL for bytes that are not the message.
                try:
                    request = deserialize(request)
                except Exception:
                    raise errors.InvalidInput(
                        f"The request is not a valid {name.rsplit('/', 1)[-1]} request message."
                    ) from None
            return method(request, context)
        except errors.FacerecError as exc:
            abort(context, exc)
        except Exception:
            code = context.code()  # type: ignore[attr-defined]  # grpc >= 1.38 has it; grpc-stubs not
            if code is not None and code != grpc.StatusCode.OK:
                raise  # the servicer aborted on purpose; grpc already holds the status
            log.exception("unexpected error in %s", name)
            abort(context, errors.Internal("Internal error; the server has logged the details."))

    return handle


class ErrorInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """Turns a FacerecError into its status and one-sentence message; anything else into INTERNAL."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _wrap(handler.unary_unary, handler_call_details.method, handler.request_deserializer),
            request_deserializer=None,  # raw bytes: _wrap parses them and maps a bad message to INVALID_ARGUMENT
            response_serializer=handler.response_serializer,
        )

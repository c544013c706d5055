"""The one mapping from facerec errors to gRPC status codes, and the interceptor that applies it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from facerec import errors
from facerec.v1 import common_pb2

log = logging.getLogger(__name__)

STATUS: dict[type[errors.FacerecError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Precondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,  # before Overloaded: a code's last class wins when read back
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    # Another replica, or this one restarted (its exports re-checked), can serve: retrying is right.
    errors.ModelFault: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}


def status_of(exc: errors.FacerecError) -> grpc.StatusCode:
    """The status code for a facerec error (its nearest mapped class)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.INTERNAL


def error_proto(exc: errors.FacerecError) -> common_pb2.Error:
    """A per-item error for a response that answers the other items normally."""
    return common_pb2.Error(code=status_of(exc).value[0], message=str(exc))


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
            context.abort(status_of(exc), str(exc))
        except Exception:
            code = context.code()  # type: ignore[attr-defined]  # grpc >= 1.38 has it; grpc-stubs not
            if code is not None and code != grpc.StatusCode.OK:
                raise  # the servicer aborted on purpose; grpc already holds the status
            log.exception("unexpected error in %s", name)
            context.abort(grpc.StatusCode.INTERNAL, "Internal error; the server has logged the details.")

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

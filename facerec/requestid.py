"""The request id: one id per request, from the caller's `x-request-id` or made at the edge, carried
gateway → gallery → detector/embedder in gRPC metadata, echoed back (HTTP header, gRPC trailing
metadata) and written in every log line (facerec.logs reads it).

The id lives in a context variable. gRPC's synchronous servers run calls on a thread pool, so the
server interceptor sets it for each call; a channel opened by facerec.channels sends it on with every
call made while it is set. Work handed to another thread must carry the context along
(contextvars.copy_context().run), as a thread does not inherit it.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc

log = logging.getLogger(__name__)
# One line per call at INFO: a logger of its own, so operators can quiet it alone.
calls_log = logging.getLogger("facerec.calls")

# gRPC metadata keys are lower case; HTTP headers are matched without regard to case.
METADATA_KEY = "x-request-id"
HTTP_HEADER = "X-Request-Id"
# An id goes into every log line: longer ones, or ones with other characters (newlines, quotes,
# escapes that would forge log lines or break JSON-minded parsers), are replaced, never logged.
MAX_LENGTH = 128
_VALID = re.compile(r"[A-Za-z0-9._:-]+")

_current: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def is_valid(candidate: str) -> bool:
    """Whether a caller's id may be kept: 1 to 128 characters of A-Z a-z 0-9 . _ : -."""
    return 0 < len(candidate) <= MAX_LENGTH and _VALID.fullmatch(candidate) is not None


def new() -> str:
    """A fresh id: 128 random bits as 32 hex digits."""
    return uuid.uuid4().hex


def accept(candidate: str | None) -> str:
    """The caller's id when it is valid, else a fresh one (a missing, too long or odd id is replaced)."""
    return candidate if candidate and is_valid(candidate) else new()


def current() -> str:
    """The id of the request being handled in this context; "" outside any request."""
    return _current.get()


@contextmanager
def bound(request_id: str) -> Iterator[str]:
    """Sets the id for the code run inside (and what it calls in this context), then restores it."""
    token = _current.set(request_id)
    try:
        yield request_id
    finally:
        _current.reset(token)


def from_metadata(metadata: Any) -> str | None:
    """The x-request-id value in gRPC metadata (a sequence of (key, value)), or None."""
    for key, value in metadata or ():
        if key == METADATA_KEY and isinstance(value, str):
            return value
    return None


class ServerRequestId(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """Binds each unary call to its request id (the caller's x-request-id or a fresh one), echoes the id
    in the call's trailing metadata, and logs one line per call at INFO: method, code and time.

    facerec.server.build_server installs it outside the others, so whatever they log (a refused token,
    an INTERNAL's traceback) carries the id, and an error's status keeps the id in its trailers.
    """

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method
        given = from_metadata(handler_call_details.invocation_metadata)

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            request_id = accept(given)
            start = time.perf_counter()
            with bound(request_id):
                if given is not None and given != request_id:
                    # INFO, not WARNING: anyone can send odd ids, and each would otherwise cost a log line.
                    log.info("replaced a caller's x-request-id that was too long or held odd characters")
                try:
                    return inner(request, context)
                finally:
                    _echo(context, request_id)
                    calls_log.info(
                        "%s %s in %.1f ms",
                        method,
                        _code_name(context),
                        (time.perf_counter() - start) * 1000,
                    )

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _echo(context: grpc.ServicerContext, request_id: str) -> None:
    # Added to what is already there: an error's status (abort_with_status) replaces the trailing
    # metadata with its details, which must stay beside the id.
    existing = tuple(context.trailing_metadata() or ())
    if not any(key == METADATA_KEY for key, _ in existing):
        context.set_trailing_metadata((*existing, (METADATA_KEY, request_id)))


def _code_name(context: grpc.ServicerContext) -> str:
    code = context.code()  # type: ignore[attr-defined]  # grpc >= 1.38 has it; grpc-stubs not
    return code.name if isinstance(code, grpc.StatusCode) else "OK"


class _CallDetails(grpc.ClientCallDetails):
    def __init__(
        self, details: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]
    ) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class ClientRequestId(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """Sends the current request id (when one is bound and the call names none) as x-request-id."""

    def _with_id(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        request_id = current()
        metadata = list(details.metadata or ())
        if not request_id or from_metadata(metadata) is not None:
            return details
        return _CallDetails(details, (*metadata, (METADATA_KEY, request_id)))

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return continuation(self._with_id(client_call_details), request)

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return continuation(self._with_id(client_call_details), request)


def metadata(*entries: tuple[str, str]) -> tuple[tuple[str, str], ...] | None:
    """`entries` plus the current request id, as gRPC metadata for a call (None when empty): for
    channels that take no interceptor, such as the gateway's grpc.aio ones."""
    request_id = current()
    both = (*entries, *(((METADATA_KEY, request_id),) if request_id else ()))
    return both or None

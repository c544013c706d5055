"""The one mapping from gRPC status codes to HTTP statuses, and the error every route answers with.

The body of every error is JSON `{"code": "NOT_FOUND", "message": "<one sentence>"}`: the gRPC code's
name and the gallery's own sentence, or the gateway's where the failure is its own (the gallery cannot
be reached, the deadline passed, a limit was hit).
"""

from __future__ import annotations

import grpc

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
# RESOURCE_EXHAUSTED means two things in the gallery: a full queue (429: try again later) and a
# message or picture over a limit (413: send less). The second is told apart by its sentence.
TOO_LARGE = 413
_TOO_LARGE_WORDS = ("too large", "larger than", "exceeds")


class GatewayError(Exception):
    """An answer other than success: the gRPC code it stands for and one sentence for the caller."""

    def __init__(self, code: grpc.StatusCode, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.too_large = too_large

    @property
    def http_status(self) -> int:
        return http_status(self.code, self.message, self.too_large)

    def body(self) -> dict[str, str]:
        return {"code": self.code.name, "message": self.message}


def http_status(code: grpc.StatusCode, message: str = "", too_large: bool = False) -> int:
    """The HTTP status for a gRPC status code (and, for RESOURCE_EXHAUSTED, whether it was about size)."""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and (
        too_large or any(word in message.lower() for word in _TOO_LARGE_WORDS)
    ):
        return TOO_LARGE
    return HTTP_STATUS[code]


def too_large(message: str) -> GatewayError:
    """A request or picture over a limit: 413."""
    return GatewayError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, too_large=True)


def invalid(message: str) -> GatewayError:
    return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, message)


def from_rpc(exc: grpc.RpcError, what: str, timeout_s: float) -> GatewayError:
    """A failed call to `what` ("the gallery at HOST:PORT") as the caller's error, in one sentence.

    The services' own messages are one sentence ending with a period and are passed on as they are;
    gRPC's transport messages ("failed to connect to all addresses; ...") are replaced by one.
    """
    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError | grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.aio.AioRpcError | grpc.Call) else "") or ""
    ours = details.endswith(".") and details[:1].isupper()
    if code == grpc.StatusCode.UNAVAILABLE and not ours:
        return GatewayError(code, f"{_capital(what)} is not reachable.")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not ours:
        return GatewayError(code, f"{_capital(what)} did not answer within {timeout_s:g} s.")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and not ours:
        return too_large(f"The request is larger than {what} accepts.")
    if code == grpc.StatusCode.CANCELLED:
        return GatewayError(code, "The call was cancelled.")
    if not ours:
        return GatewayError(code, f"{_capital(what)} failed ({code.name}).")
    return GatewayError(code, details)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]

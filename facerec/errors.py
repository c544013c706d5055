"""The facerec error family. Pure: domain code raises these; facerec.status maps them to gRPC codes.

Every class has a stable machine-readable reason (sent as a google.rpc.ErrorInfo beside the status, and
in the gateway's JSON), so a program tells "too large, ever" from "busy now" without reading the words.
A raiser may name a finer reason of the same class (`InvalidInput(..., reason=Reason.NO_FACE)`), and the
request field at fault where it knows it (`InvalidInput(..., field="top_k")`: a google.rpc.BadRequest
field violation beside the ErrorInfo).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """The stable reasons (google.rpc.ErrorInfo.reason, domain "facerec"). Add freely, never rename."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NO_FACE = "NO_FACE"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    MODEL_MISMATCH = "MODEL_MISMATCH"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    BUSY = "BUSY"
    UNAVAILABLE = "UNAVAILABLE"
    MODEL_FAULT = "MODEL_FAULT"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    INTERNAL = "INTERNAL"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    # The HTTP gateway's own refusals.
    HOST_NOT_ALLOWED = "HOST_NOT_ALLOWED"
    CROSS_SITE = "CROSS_SITE"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"


# What each reason means to a caller, in a few words (the README's table of reasons is generated from it).
MEANING: dict[Reason, str] = {
    Reason.INVALID_ARGUMENT: "the request holds something unusable (the field is named where one is)",
    Reason.NO_FACE: "a picture that must hold a face (Verify's) holds none",
    Reason.HOST_NOT_ALLOWED: "the gateway does not serve that `Host`",
    Reason.NOT_FOUND: "no such collection, identity, face, operation or route",
    Reason.ALREADY_EXISTS: "the name is taken (a collection, or an identity's new name)",
    Reason.FAILED_PRECONDITION: "valid, but not in this state (e.g. Train with one identity)",
    Reason.MODEL_MISMATCH: "an embedding, or an embedder, of another model than the gallery's",
    Reason.REQUEST_TOO_LARGE: "the request is over a limit by itself: never retry it, send less",
    Reason.IMAGE_TOO_LARGE: "a picture is over a limit (bytes or pixels): never retry it, send less",
    Reason.BUSY: "full now (a queue, a budget): retry after the delay",
    Reason.UNAVAILABLE: "a service cannot be reached: retry (another replica may answer)",
    Reason.MODEL_FAULT: "the server's model gave unusable output: retry (another replica may answer)",
    Reason.DEADLINE_EXCEEDED: "the caller's deadline passed before the work was done",
    Reason.REQUEST_TIMEOUT: "the body did not arrive in time",
    Reason.UNAUTHENTICATED: "no token, an unknown one, or an unusable `Authorization` header",
    Reason.PERMISSION_DENIED: "a token that may not call this (e.g. a read-only token)",
    Reason.CROSS_SITE: "an unsafe method sent by another site's page",
    Reason.UNIMPLEMENTED: "a method this server does not serve",
    Reason.METHOD_NOT_ALLOWED: "an HTTP method the path does not answer",
    Reason.INTERNAL: "a server fault (its log has the details)",
}


class FacerecError(Exception):
    """Base of every error a client should see. The message is one sentence, safe to send.

    reason: the class's own unless the raiser names a finer one (one of the class's `reasons`).
    retry_after_s: set where retrying later helps (busy, unavailable); None = retrying will not help.
    field: the request field at fault, as the request names it ("top_k", "image_a", "images[2]"); "" when
    the error is not one field's.
    """

    reasons: tuple[Reason, ...] = (Reason.INTERNAL,)
    retry_after_s: float | None = None

    def __init__(
        self,
        message: str = "",
        *,
        reason: str | None = None,
        retry_after_s: float | None = None,
        field: str = "",
    ) -> None:
        super().__init__(message)
        self.field = field
        # A str, not only a Reason: a newer server may send a reason this client does not know yet.
        self.reason: str = reason or self.reasons[0]
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class InvalidInput(FacerecError):
    """The request holds something unusable: an undecodable image, a NaN embedding, an empty identity."""

    reasons = (Reason.INVALID_ARGUMENT, Reason.NO_FACE, Reason.HOST_NOT_ALLOWED)


class NotFound(FacerecError):
    """A collection, identity, face id or operation that is not in the gallery."""

    reasons = (Reason.NOT_FOUND,)


class AlreadyExists(FacerecError):
    """A name that is taken: a collection to create, or an identity's new name."""

    reasons = (Reason.ALREADY_EXISTS,)


class Precondition(FacerecError):
    """The request is valid but the system is not in a state to serve it (e.g. SVM with one identity)."""

    reasons = (Reason.FAILED_PRECONDITION, Reason.MODEL_MISMATCH)


class TooLarge(FacerecError):
    """The request, or a picture in it, is over a limit by itself: it will never be served; send less."""

    reasons = (Reason.REQUEST_TOO_LARGE, Reason.IMAGE_TOO_LARGE)


class Overloaded(FacerecError):
    """Busy now (a full queue, a spent budget): the same request may succeed later."""

    reasons = (Reason.BUSY,)
    retry_after_s = 1.0


# The name that says what it means; Overloaded stays for the code that raises it.
Busy = Overloaded


class Unavailable(FacerecError):
    """A downstream service cannot be reached."""

    reasons = (Reason.UNAVAILABLE,)
    retry_after_s = 1.0


class DeadlineExceeded(FacerecError):
    """The caller's deadline passed before the work could be done."""

    reasons = (Reason.DEADLINE_EXCEEDED, Reason.REQUEST_TIMEOUT)


class ModelFault(FacerecError):
    """The server's own model gave unusable output (NaN or infinite values): a server fault, not the caller's."""

    reasons = (Reason.MODEL_FAULT,)
    retry_after_s = 1.0


class Unauthenticated(FacerecError):
    """No token, or an unknown one."""

    reasons = (Reason.UNAUTHENTICATED,)


class PermissionDenied(FacerecError):
    """A valid token that may not call this method."""

    reasons = (Reason.PERMISSION_DENIED, Reason.CROSS_SITE)


class Unimplemented(FacerecError):
    """A method this server does not serve (an older server, or an HTTP method a path does not answer)."""

    reasons = (Reason.UNIMPLEMENTED, Reason.METHOD_NOT_ALLOWED)


class Internal(FacerecError):
    """A server failed in a way that is not the caller's doing (its log holds the details)."""

    reasons = (Reason.INTERNAL,)

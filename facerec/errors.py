"""The facerec error family. Pure: domain code raises these; facerec.status maps them to gRPC codes."""

from __future__ import annotations


class FacerecError(Exception):
    """Base of every error a client should see. The message is one sentence, safe to send."""


class InvalidInput(FacerecError):
    """The request holds something unusable: an undecodable image, a NaN embedding, an empty identity."""


class NotFound(FacerecError):
    """An identity or face id that is not in the gallery."""


class Precondition(FacerecError):
    """The request is valid but the system is not in a state to serve it (e.g. SVM with one identity)."""


class Overloaded(FacerecError):
    """Too large a request or image, or a full queue: try again later or send less."""


class TooLarge(Overloaded):
    """A request or picture over a limit by itself: sending it again never helps; send less."""


class Unavailable(FacerecError):
    """A downstream service cannot be reached."""


class DeadlineExceeded(FacerecError):
    """The caller's deadline passed before the work could be done."""


class ModelFault(FacerecError):
    """The server's own model gave unusable output (NaN or infinite values): a server fault, not the caller's."""


class Unauthenticated(FacerecError):
    """No token, or an unknown one."""


class PermissionDenied(FacerecError):
    """A valid token that may not call this method."""

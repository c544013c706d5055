"""TLS and bearer tokens for every service and client: credentials from PEM files, and the token check.

Everything is off unless configured, so the local demo runs as before. Per service (PREFIX is
DETECTOR_, EMBEDDER_ or GALLERY_):

  PREFIX + TLS_CERT, TLS_KEY   serve TLS with this PEM certificate chain and private key
  PREFIX + TLS_CLIENT_CA       also require client certificates signed by this CA (mutual TLS)
  PREFIX + TOKENS_FILE         require `authorization: Bearer <token>`; one `token role` per line
  PREFIX + TOKENS              the same entries inline, separated by commas or newlines

A role is `rw` (every method) or `ro` (every method but the ones that change the gallery, and but
reading stored embeddings: biometric templates). Health and reflection stay open to anyone, so probes
and grpcurl's discovery work without a token. docs/limits.md has the table of who may do what.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from facerec import errors
from facerec.settings import SettingError, TlsSettings
from facerec.status import abort

log = logging.getLogger(__name__)

ROLES = ("rw", "ro")
# Tokens shorter than this are guessable; refuse them rather than run with a weak secret.
MIN_TOKEN_CHARS = 16
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without space: fits an HTTP header

# Methods open without a token: probes (grpc.health.v1) and discovery (reflection).
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise SettingError(f"Cannot read the {what} {path}: {exc.strerror or exc}.") from None


def server_credentials(tls: TlsSettings, prefix: str = "") -> grpc.ServerCredentials | None:
    """TLS credentials for build_server (None = plaintext); client certificates required when client_ca."""
    tls.checked(prefix)
    if not tls.enabled:
        return None
    pair = (_read(tls.key, "TLS key"), _read(tls.cert, "TLS certificate"))
    if tls.client_ca:
        return grpc.ssl_server_credentials(
            [pair], root_certificates=_read(tls.client_ca, "client CA"), require_client_auth=True
        )
    return grpc.ssl_server_credentials([pair])


def channel_credentials(ca: str = "", cert: str = "", key: str = "") -> grpc.ChannelCredentials | None:
    """TLS credentials for a client channel (None = plaintext). ca: the CA to trust (it turns TLS on);
    cert and key: this client's own certificate, for servers that require one."""
    if bool(cert) != bool(key):
        raise SettingError("A client certificate and its key must be given together.")
    if not ca:
        if cert:
            raise SettingError("A client certificate needs the CA to trust as well.")
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "CA certificate"),
        private_key=_read(key, "client key") if key else None,
        certificate_chain=_read(cert, "client certificate") if cert else None,
    )


def parse_tokens(text: str, source: str) -> dict[str, str]:
    """{token: role} from lines (or comma-separated entries) `token role`; blank lines and # comments skipped."""
    tokens: dict[str, str] = {}
    for number, raw in enumerate(re.split(r"[\n,]", text), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ROLES:
            raise SettingError(f"Entry {number} of {source} must be `token role` with role rw or ro.")
        token, role = parts
        if len(token) < MIN_TOKEN_CHARS or not _TOKEN_CHARS.match(token):
            raise SettingError(
                f"Entry {number} of {source}: a token must be at least {MIN_TOKEN_CHARS} printable "
                "ASCII characters without spaces."
            )
        tokens[token] = role
    return tokens


def load_tokens(tokens_file: str = "", tokens: str = "", prefix: str = "") -> dict[str, str]:
    """The tokens of a service: from the file and the inline setting together. Empty = no authentication."""
    found: dict[str, str] = {}
    if tokens_file:
        text = _read(tokens_file, "tokens file").decode("utf-8", errors="strict")
        found.update(parse_tokens(text, f"{prefix}TOKENS_FILE"))
        if not found:
            raise SettingError(f"{prefix}TOKENS_FILE {tokens_file} holds no tokens.")
    if tokens:
        found.update(parse_tokens(tokens, f"{prefix}TOKENS"))
    return found


def bearer(metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The token of an `authorization: Bearer <token>` entry, or ""."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class TokenAuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """Lets a call through only with a known bearer token, and a write method only with an `rw` one.

    Install it after the metrics interceptor (so denials are counted) and it sits outside
    facerec.status.ErrorInterceptor; hence it answers denials itself, with the status that
    facerec.status maps Unauthenticated and PermissionDenied to.
    """

    def __init__(
        self,
        tokens: Mapping[str, str],
        write_methods: Iterable[str] | Mapping[str, Callable[[Any], bool] | None] = (),
    ) -> None:
        """write_methods: the methods that need an `rw` token; as a mapping, a method's predicate (of its
        request, raw bytes or message) says which of its requests do (GetIdentity with embeddings: reading
        biometric templates needs more than read-only), None that all do."""
        if not tokens:
            raise ValueError("TokenAuthInterceptor needs at least one token.")
        self._tokens = [(token.encode(), role) for token, role in tokens.items()]
        self._write: dict[str, Callable[[Any], bool] | None] = (
            dict(write_methods) if isinstance(write_methods, Mapping) else dict.fromkeys(write_methods)
        )

    def role_of(self, token: str) -> str | None:
        """The role of `token`, or None. Compares with every known token in constant time."""
        given = token.encode()
        role = None
        for known, known_role in self._tokens:
            if hmac.compare_digest(given, known):
                role = known_role
        return role

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if method.startswith(OPEN_PREFIXES):
            return continuation(handler_call_details)
        role = self.role_of(bearer(handler_call_details.invocation_metadata))
        if role is None:
            return _denied(
                errors.Unauthenticated("A valid token is required: send `authorization: Bearer <token>`.")
            )
        if role != "rw" and method in self._write:
            denied = errors.PermissionDenied(f"A read-only token may not call {method.lstrip('/')}.")
            predicate = self._write[method]
            if predicate is None:
                return _denied(denied)
            handler = continuation(handler_call_details)
            return handler if handler is None else _checked(handler, predicate, denied)
        return continuation(handler_call_details)


def _denied(exc: errors.FacerecError) -> grpc.RpcMethodHandler[Any, Any]:
    # The request is never deserialized: a caller without a token gets no parsing of its payload.
    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        abort(context, exc)

    return grpc.unary_unary_rpc_method_handler(deny)


def _checked(
    handler: grpc.RpcMethodHandler[Any, Any], needs_rw: Callable[[Any], bool], denied: errors.FacerecError
) -> grpc.RpcMethodHandler[Any, Any]:
    """The handler, refusing (denied) the requests for which needs_rw is true."""
    inner = handler.unary_unary
    if inner is None:
        return handler

    def check(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            refused = needs_rw(request)
        except Exception:  # an unreadable request: the servicer answers it (INVALID_ARGUMENT)
            refused = False
        if refused:
            abort(context, denied)
        return inner(request, context)

    return grpc.unary_unary_rpc_method_handler(
        check,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def token_interceptor(
    tokens_file: str,
    tokens: str,
    write_methods: Iterable[str] | Mapping[str, Callable[[Any], bool] | None] = (),
    prefix: str = "",
) -> list[grpc.ServerInterceptor[Any, Any]]:
    """[TokenAuthInterceptor] when tokens are configured, else [] (authentication off)."""
    found = load_tokens(tokens_file, tokens, prefix)
    if not found:
        return []
    log.info("token authentication on: %d token(s)", len(found))
    return [TokenAuthInterceptor(found, write_methods)]


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _Details(_CallDetails, grpc.ClientCallDetails):
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    """Adds `authorization: Bearer <token>` to every call of a channel (plaintext or TLS alike)."""

    def __init__(self, token: str) -> None:
        self._entry = ("authorization", f"Bearer {token}")

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._entry]
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return continuation(self._with_token(client_call_details), request)

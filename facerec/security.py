"""TLS and bearer tokens for every service and client: credentials from PEM files, and the token check.

Everything is off unless configured, so the local demo runs as before. Per service (PREFIX is
DETECTOR_, EMBEDDER_ or GALLERY_):

  PREFIX + TLS_CERT, TLS_KEY   serve TLS with this PEM certificate chain and private key
  PREFIX + TLS_CLIENT_CA       also require client certificates signed by this CA (mutual TLS)
  PREFIX + TOKENS_FILE         require `authorization: Bearer <token>`; one `TOKEN ROLE [COLLECTIONS]`
                               per line (`#` starts a comment)
  PREFIX + TOKENS              the same entries inline, separated by `;` or newlines

A role is `ro` (every method but the ones that change a gallery, and but reading stored embeddings:
biometric templates), `rw` (those too) or `admin` (also creating, deleting and re-embedding collections
and storing their operating points). COLLECTIONS is the collections the token may use, comma-separated
(`door,archive`; names may hold spaces, never commas), or `*` (every one, the default: a line without
it means what it always meant). A token used on another collection is PERMISSION_DENIED, and
ListCollections shows it only its own.

Older files separated entries by commas too (`tok1 rw, tok2 ro`): a line whose comma-separated pieces
are all `TOKEN ROLE` is still read that way. A line with COLLECTIONS is one entry, so its commas list
collections; a piece there that looks like `TOKEN ROLE` is refused (separate entries with `;`).
Health and reflection stay open to anyone, so probes and grpcurl's discovery work without a token.
docs/limits.md has the table of who may do what.
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

ROLES = ("rw", "ro", "admin")
ALL_COLLECTIONS = "*"
DEFAULT_COLLECTION = "default"  # a request naming no collection uses it (gallery.ports.DEFAULT_COLLECTION)
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


class Grant(NamedTuple):
    """What a token may do: its role, and the collections it may use (None = every one)."""

    role: str
    collections: frozenset[str] | None = None

    def may_use(self, collection: str) -> bool:
        return self.collections is None or (collection or DEFAULT_COLLECTION) in self.collections


def parse_grants(text: str, source: str, inline: bool = True) -> dict[str, Grant]:
    """{token: Grant} from entries `TOKEN ROLE [COLLECTIONS]` (see the module docstring); blank lines and
    # comments skipped. SettingError, naming the entry, for anything else. inline: `;` separates entries
    too (a setting's one line); a file's lines are its entries, so a token there may hold `;` as before."""
    grants: dict[str, Grant] = {}
    number = 0
    for raw_line in re.split(r"[\n;]" if inline else r"\n", text):
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        pieces = [p.strip() for p in line.split(",") if p.strip()]
        if "," in line and all(len(p.split()) == 2 for p in pieces):
            entries = pieces  # the older inline form: `tok1 rw, tok2 ro`
        else:
            entries = [line]
        for entry in entries:
            number += 1
            token, role, scope = _entry(entry, number, source)
            grants[token] = Grant(role, scope)
    return grants


def _entry(entry: str, number: int, source: str) -> tuple[str, str, frozenset[str] | None]:
    parts = entry.split(None, 2)
    if len(parts) < 2 or parts[1] not in ROLES:
        raise SettingError(
            f"Entry {number} of {source} must be `token role [collections]` with role ro, rw or admin."
        )
    token, role = parts[0], parts[1]
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN_CHARS.match(token):
        raise SettingError(
            f"Entry {number} of {source}: a token must be at least {MIN_TOKEN_CHARS} printable "
            "ASCII characters without spaces."
        )
    if len(parts) == 2 or parts[2].strip() == ALL_COLLECTIONS:
        return token, role, None
    names = [n.strip() for n in parts[2].split(",") if n.strip()]
    for name in names:
        words = name.split()
        if name == ALL_COLLECTIONS or (len(words) == 2 and words[1] in ROLES):
            raise SettingError(
                f"Entry {number} of {source}: list its collections separated by commas (or * for every "
                "one), and separate entries with `;` or a new line."
            )
    return token, role, frozenset(names)


def parse_tokens(text: str, source: str) -> dict[str, str]:
    """{token: role} of parse_grants' entries (their collections left out)."""
    return {token: grant.role for token, grant in parse_grants(text, source).items()}


def load_grants(tokens_file: str = "", tokens: str = "", prefix: str = "") -> dict[str, Grant]:
    """The tokens of a service, with their scopes: from the file and the inline setting together.
    Empty = no authentication."""
    found: dict[str, Grant] = {}
    if tokens_file:
        text = _read(tokens_file, "tokens file").decode("utf-8", errors="strict")
        found.update(parse_grants(text, f"{prefix}TOKENS_FILE", inline=False))
        if not found:
            raise SettingError(f"{prefix}TOKENS_FILE {tokens_file} holds no tokens.")
    if tokens:
        found.update(parse_grants(tokens, f"{prefix}TOKENS"))
    return found


def load_tokens(tokens_file: str = "", tokens: str = "", prefix: str = "") -> dict[str, str]:
    """The tokens of a service and their roles (load_grants without the scopes)."""
    return {token: grant.role for token, grant in load_grants(tokens_file, tokens, prefix).items()}


def out_of_scope(collection: str) -> errors.PermissionDenied:
    return errors.PermissionDenied(f"This token may not use collection {collection!r}.")


def bearer(metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The token of an `authorization: Bearer <token>` entry, or ""."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class AccessPolicy(dict[str, Callable[[Any], bool] | None]):
    """Who may call what, for TokenAuthInterceptor: as a mapping, the write methods (an `rw` token at
    least), each with a predicate of its request (raw bytes or message) saying which of its requests need
    one (None: all do); admin: the methods only an `admin` token may call; collection_of: per method, the
    collection its request names ("" = default), checked against a scoped token's collections;
    response_collection: per method, the collection its response is of (an operation's), checked after;
    narrow: per method, the response with what a scoped token may not see removed (ListCollections)."""

    def __init__(
        self,
        write: Mapping[str, Callable[[Any], bool] | None],
        admin: Iterable[str] = (),
        collection_of: Mapping[str, Callable[[Any], str]] | None = None,
        response_collection: Mapping[str, Callable[[Any], str]] | None = None,
        narrow: Mapping[str, Callable[[Any, Grant], Any]] | None = None,
    ) -> None:
        super().__init__(write)
        self.admin = frozenset(admin)
        self.collection_of = dict(collection_of or {})
        self.response_collection = dict(response_collection or {})
        self.narrow = dict(narrow or {})


class TokenAuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """Lets a call through only with a known bearer token; a write method only with an `rw` (or `admin`)
    one, an admin method only with an `admin` one, and a collection only with a token scoped to it.

    Install it after the metrics interceptor (so denials are counted) and it sits outside
    facerec.status.ErrorInterceptor; hence it answers denials itself, with the status that
    facerec.status maps Unauthenticated and PermissionDenied to.
    """

    def __init__(
        self,
        tokens: Mapping[str, str] | Mapping[str, Grant],
        write_methods: Iterable[str] | Mapping[str, Callable[[Any], bool] | None] = (),
    ) -> None:
        """tokens: token → role, or → Grant (role and collections). write_methods: the methods that need
        an `rw` token; as a mapping, a method's predicate (of its request, raw bytes or message) says which
        of its requests do (GetIdentity with embeddings: reading biometric templates needs more than
        read-only), None that all do; an AccessPolicy also names the admin methods and the collections."""
        if not tokens:
            raise ValueError("TokenAuthInterceptor needs at least one token.")
        self._tokens = [
            (token.encode(), grant if isinstance(grant, Grant) else Grant(grant))
            for token, grant in tokens.items()
        ]
        self._write: dict[str, Callable[[Any], bool] | None] = (
            dict(write_methods) if isinstance(write_methods, Mapping) else dict.fromkeys(write_methods)
        )
        self._policy = write_methods if isinstance(write_methods, AccessPolicy) else AccessPolicy({})

    def grant_of(self, token: str) -> Grant | None:
        """The grant of `token`, or None. Compares with every known token in constant time."""
        given = token.encode()
        found = None
        for known, grant in self._tokens:
            if hmac.compare_digest(given, known):
                found = grant
        return found

    def role_of(self, token: str) -> str | None:
        """The role of `token`, or None."""
        grant = self.grant_of(token)
        return grant.role if grant is not None else None

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if method.startswith(OPEN_PREFIXES):
            return continuation(handler_call_details)
        grant = self.grant_of(bearer(handler_call_details.invocation_metadata))
        if grant is None:
            return _denied(
                errors.Unauthenticated("A valid token is required: send `authorization: Bearer <token>`.")
            )
        policy = self._policy
        if method in policy.admin and grant.role != "admin":
            return _denied(errors.PermissionDenied(f"Only an admin token may call {method.lstrip('/')}."))
        needs_rw: Callable[[Any], bool] | None = None
        if grant.role == "ro" and method in self._write:
            denied = errors.PermissionDenied(f"A read-only token may not call {method.lstrip('/')}.")
            predicate = self._write[method]
            if predicate is None:
                return _denied(denied)
            needs_rw = predicate
        scoped = grant.collections is not None and (
            method in policy.collection_of or method in policy.response_collection or method in policy.narrow
        )
        if needs_rw is None and not scoped:
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        return _checked(handler, method, grant, needs_rw, policy if scoped else AccessPolicy({}))


def _denied(exc: errors.FacerecError) -> grpc.RpcMethodHandler[Any, Any]:
    # The request is never deserialized: a caller without a token gets no parsing of its payload.
    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        abort(context, exc)

    return grpc.unary_unary_rpc_method_handler(deny)


def _checked(
    handler: grpc.RpcMethodHandler[Any, Any],
    method: str,
    grant: Grant,
    needs_rw: Callable[[Any], bool] | None,
    policy: AccessPolicy,
) -> grpc.RpcMethodHandler[Any, Any]:
    """The handler, refusing the requests a read-only token may not make (needs_rw) and those on a
    collection outside the grant's, and narrowing the answers to the grant's collections."""
    inner = handler.unary_unary
    assert inner is not None
    collection_of = policy.collection_of.get(method)
    response_collection = policy.response_collection.get(method)
    narrow = policy.narrow.get(method)

    def check(request: Any, context: grpc.ServicerContext) -> Any:
        if needs_rw is not None and _holds(needs_rw, request):
            abort(context, errors.PermissionDenied(f"A read-only token may not call {method.lstrip('/')}."))
        if collection_of is not None:
            try:
                collection = collection_of(request) or DEFAULT_COLLECTION
            except Exception:  # an unreadable request: the servicer answers it (INVALID_ARGUMENT)
                collection = ""
            if collection and not grant.may_use(collection):
                abort(context, out_of_scope(collection))
        response = inner(request, context)
        if response_collection is not None:
            collection = response_collection(response)
            if not grant.may_use(collection):
                abort(context, out_of_scope(collection))
        return narrow(response, grant) if narrow is not None else response

    return grpc.unary_unary_rpc_method_handler(
        check,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _holds(predicate: Callable[[Any], bool], request: Any) -> bool:
    try:
        return predicate(request)
    except Exception:  # an unreadable request: the servicer answers it (INVALID_ARGUMENT)
        return False


def token_interceptor(
    tokens_file: str,
    tokens: str,
    write_methods: Iterable[str] | Mapping[str, Callable[[Any], bool] | None] = (),
    prefix: str = "",
) -> list[grpc.ServerInterceptor[Any, Any]]:
    """[TokenAuthInterceptor] when tokens are configured, else [] (authentication off)."""
    found = load_grants(tokens_file, tokens, prefix)
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

"""The gateway's doors, as ASGI middleware that runs before any route reads a byte of the body.

In order: the Host allow-list (DNS rebinding), the security headers on every answer, the refusal of
unsafe methods sent by another site (a browser sends a "simple" cross-site POST without asking first),
the token check, and the body's size and time limits while it streams in. Each refusal is the JSON error
body of gateway.errors, and a refusal sent before the body was read closes the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facerec import errors
from facerec.security import Grant, TokenAuthInterceptor, out_of_scope
from facerec.status import status_of
from gateway.errors import body, headers, http_status, request_id_of

# The probes answer without a Host check or a token: kubelet sends the pod's IP as Host, and they show
# nothing but up or down.
PROBES = frozenset({"/healthz", "/readyz"})
# The page, its files and the API's description hold no data: a browser loads them without a token.
PUBLIC_PREFIXES = ("/static/", "/docs-assets/")
PUBLIC = frozenset({"/", "/favicon.ico", "/docs", "/openapi.json"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Longer than any token the services accept (facerec.security) by far; longer ones are not read at all.
MAX_AUTHORIZATION_BYTES = 1024
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


async def send_error(scope: Scope, send: Send, exc: errors.FacerecError, close: bool = True) -> None:
    """Answers exc as JSON; close: the client may still be sending a body it announced, so stop it."""
    scope.setdefault("state", {})["grpc_code"] = status_of(exc).name
    answer = body(exc, request_id_of(scope))
    response = JSONResponse(answer, status_code=http_status(exc), headers=headers(exc))
    if close:
        response.headers["Connection"] = "close"
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class SecurityHeaders:
    """Adds the security headers to every answer, errors and files alike."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


class HostCheck:
    """Answers only requests whose Host is one of `names` (a page on a rebound DNS name carries its own)."""

    def __init__(self, app: ASGIApp, names: frozenset[str]) -> None:
        self.app = app
        self.any = "*" in names
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        host = (_header(scope, b"host") or b"").decode("latin-1").strip().lower()
        if _host_name(host) not in self.names:
            await send_error(
                scope,
                send,
                errors.InvalidInput(
                    "The Host header names a site this gateway does not serve (see GATEWAY_ALLOWED_HOSTS).",
                    reason=errors.Reason.HOST_NOT_ALLOWED,
                ),
            )
            return
        await self.app(scope, receive, send)


def _host_name(host: str) -> str:
    """The name of a Host header value without its port: "[::1]:8080" → "[::1]", "a:1" → "a"."""
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class CrossSite:
    """Refuses an unsafe method (POST, DELETE...) that a browser sent for another site's page: Origin
    names a site that is neither this one nor an allowed one, or Sec-Fetch-Site says cross-site. Callers
    that are not browsers send neither header and pass."""

    def __init__(self, app: ASGIApp, origins: frozenset[str]) -> None:
        self.app = app
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS or self._same_site(scope):
            await self.app(scope, receive, send)
            return
        await send_error(
            scope,
            send,
            errors.PermissionDenied(
                f"A {scope['method']} from another site's page is refused (see GATEWAY_ALLOWED_ORIGINS).",
                reason=errors.Reason.CROSS_SITE,
            ),
        )

    def _same_site(self, scope: Scope) -> bool:
        origin = _header(scope, b"origin")
        if origin is not None:
            text = origin.decode("latin-1").strip().rstrip("/").lower()
            if text in self.origins:
                return True
            host = (_header(scope, b"host") or b"").decode("latin-1").strip().lower()
            parts = urlsplit(text)
            return text != "null" and parts.scheme in ("http", "https") and parts.netloc == host
        fetch_site = _header(scope, b"sec-fetch-site")
        return fetch_site is None or fetch_site in (b"same-origin", b"none")


# The routes of one collection: /v1/collections/{collection}[/…|:verb]; the other gallery routes are the
# default collection's (gateway.routes).
SCOPED_PREFIX = "/v1/collections/"
GRANT = "facerec_grant"  # where Authentication leaves the caller's grant in the request's scope["state"]


def collection_of_path(method: str, path: str) -> str | None:
    """The collection a request works on, from its method and decoded path alone: {collection} of
    /v1/collections/{collection}[/…|:verb], "default" for the other /v1 gallery routes, None where no one
    collection is named (listing or creating collections, operations, detect, outside /v1). The gateway
    may pass its routes' own (gateway.routes.collection_of) to Authentication instead."""
    if path.startswith(SCOPED_PREFIX):
        head = path[len(SCOPED_PREFIX) :].partition("/")[0]
        if method == "POST" and ":" in head:
            head = head.rpartition(":")[0]
        return head or None
    if path in ("/v1/collections", "/v1/detect") or path.startswith("/v1/operations/"):
        return None
    return "default" if path.startswith("/v1/") else None


class Authentication:
    """With tokens on, every route but the probes and the page's files needs a known bearer token, a
    route that changes a gallery an `rw` one (or `admin`), reading embeddings (templates) an `rw` one as
    well, creating, deleting and re-embedding a collection or storing its points an `admin` one, and a
    collection's routes a token scoped to it (facerec.security), all decided from the headers and the
    path before any of the body is read. The caller's grant stays in scope["state"] for the routes that
    must narrow an answer (listing collections: `grant_of`, `check_collection`). With tokens on or off,
    an Authorization header that cannot be used (bytes outside printable ASCII, over-long) is 401."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: Mapping[str, str] | Mapping[str, Grant],
        collection_of: Callable[[str, str], str | None] = collection_of_path,
    ) -> None:
        self.app = app
        self.checker = TokenAuthInterceptor(tokens) if tokens else None
        self.collection_of = collection_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await send_error(scope, send, refusal)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> errors.FacerecError | None:
        raw = _header(scope, b"authorization")
        if raw is not None and (len(raw) > MAX_AUTHORIZATION_BYTES or any(b < 0x20 or b > 0x7E for b in raw)):
            return errors.Unauthenticated(
                f"The Authorization header cannot be used: send `Bearer <token>` in printable ASCII, "
                f"at most {MAX_AUTHORIZATION_BYTES} bytes."
            )
        path: str = scope["path"]
        if self.checker is None or path in PUBLIC or path.startswith(PUBLIC_PREFIXES):
            return None
        scheme, _, token = (raw or b"").decode("ascii").strip().partition(" ")
        grant = self.checker.grant_of(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None:
            return errors.Unauthenticated("A valid token is required: send `Authorization: Bearer <token>`.")
        if grant.role != "admin" and _needs_admin(scope):
            return errors.PermissionDenied(f"Only an admin token may {scope['method']} {path}.")
        if grant.role == "ro" and _needs_rw(scope):
            return errors.PermissionDenied(
                f"A read-only token may not {scope['method']} {path} (enrolling, removing, training and "
                "reading embeddings need an rw token)."
            )
        collection = self.collection_of(scope["method"], path)
        if collection is not None and not grant.may_use(collection):
            return out_of_scope(collection)
        scope.setdefault("state", {})[GRANT] = grant
        return None


def grant_of(scope: Scope) -> Grant | None:
    """The grant of the request's token (None when tokens are off: every collection may be used)."""
    grant = scope.get("state", {}).get(GRANT)
    return grant if isinstance(grant, Grant) else None


def check_collection(scope: Scope, collection: str) -> None:
    """For a route that learns its collection from the body (or an answer): PermissionDenied when the
    caller's token may not use it."""
    grant = grant_of(scope)
    if grant is not None and not grant.may_use(collection):
        raise out_of_scope(collection or "default")


def _needs_admin(scope: Scope) -> bool:
    """Creating or deleting a collection, re-embedding it, storing its operating points."""
    method: str = scope["method"]
    path: str = scope["path"]
    if path == "/v1/collections":
        return method == "POST"
    if not path.startswith(SCOPED_PREFIX):
        return False
    rest = path[len(SCOPED_PREFIX) :]
    name, slash, tail = rest.partition("/")
    if not slash:
        return method == "DELETE" or (method == "POST" and name.endswith(":reembed"))
    return tail == "operating-points" and method in ("POST", "PUT")


def _needs_rw(scope: Scope) -> bool:
    method: str = scope["method"]
    path = _default_path(scope["path"])
    if method == "DELETE" or (
        method == "POST" and (path in ("/v1/enroll", "/v1/train") or path.endswith(":rename"))
    ):
        return True
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    return any(v.lower() in ("1", "true", "yes") for v in query.get("include_embeddings", []))


def _default_path(path: str) -> str:
    """A collection's route as the default collection's: /v1/collections/c/enroll → /v1/enroll."""
    if path.startswith(SCOPED_PREFIX):
        _, slash, rest = path[len(SCOPED_PREFIX) :].partition("/")
        if slash:
            return "/v1/" + rest
    return path


class _Refused(Exception):
    def __init__(self, error: errors.FacerecError) -> None:
        self.error = error


class BodyLimit:
    """Bounds the body while it streams in: refused (413) at once from Content-Length before reading
    any of it, or as soon as the bytes read pass the limit (chunked bodies); and refused (408) when the
    whole body has not arrived within timeout_s of the first read. JSON bodies have their own, lower
    limit: parsing one costs a multiple of its size, where a multipart file is spooled to disk."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_type = (_header(scope, b"content-type") or b"").split(b";", 1)[0].strip().lower()
        json = content_type == b"application/json"
        limit = min(self.max_json_bytes, self.max_bytes) if json else self.max_bytes
        too_large = errors.TooLarge(
            f"The request is larger than the limit of {limit} bytes"
            + (
                " for JSON; send large pictures as multipart files."
                if json and limit < self.max_bytes
                else "."
            )
        )
        length = _header(scope, b"content-length") or b""
        if length.strip().isdigit() and int(length) > limit:
            await send_error(scope, send, too_large)
            return
        seen = 0
        done = False
        started = False
        deadline: float | None = None

        async def counted() -> Message:
            nonlocal seen, done, deadline
            if done:
                return await receive()
            if deadline is None:
                deadline = time.monotonic() + self.timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise _Refused(
                    errors.DeadlineExceeded(
                        f"The body did not arrive within {self.timeout_s:g} s.",
                        reason=errors.Reason.REQUEST_TIMEOUT,
                    )
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _Refused(too_large)
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _Refused as refused:
            if started:
                raise
            await send_error(scope, send, refused.error)

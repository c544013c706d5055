"""The gateway's token check per collection (gateway.guard.Authentication), in process over a stub route
that answers what it was let through with: the collection a path names, the admin routes, read-only
tokens on a collection's writes, and the grant left for routes that narrow their answers."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from facerec import errors
from facerec.security import parse_grants
from gateway.guard import Authentication, check_collection, collection_of_path, grant_of

ADMIN = "guard-admin-token-0123456789"
RW = "guard-rw-token-0123456789"
RO_A = "guard-ro-a-token-0123456789"
RW_A = "guard-rw-a-token-0123456789"


async def through(request: Request) -> JSONResponse:
    grant = grant_of(request.scope)
    try:
        if "body_collection" in request.query_params:
            check_collection(request.scope, request.query_params["body_collection"])
    except errors.PermissionDenied as exc:
        return JSONResponse({"denied": str(exc)}, status_code=403)
    return JSONResponse({"role": grant.role if grant else None})


class Client:
    """Calls the guarded app in process (httpx over ASGI)."""

    def __init__(self, app: Authentication) -> None:
        self.app = app

    def request(self, method: str, path: str, token: str) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
                return await http.request(method, path, headers={"Authorization": f"Bearer {token}"})

        return asyncio.run(call())


@pytest.fixture(scope="module")
def client() -> Client:
    app = Starlette(routes=[Route("/{path:path}", through, methods=["GET", "POST", "DELETE", "PUT"])])
    tokens = parse_grants(f"{ADMIN} admin\n{RW} rw\n{RO_A} ro a\n{RW_A} rw a", "GATEWAY_TOKENS")
    return Client(Authentication(app, tokens))


def _as(client: Client, token: str, method: str, path: str) -> tuple[int, str]:
    answer = client.request(method, path, token)
    body = answer.json()
    return answer.status_code, str(body.get("message", "") or body.get("denied", ""))


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/collections/door/enroll", "door"),
        ("GET", "/v1/collections/door", "door"),
        ("POST", "/v1/collections/door:reembed", "door"),
        ("GET", "/v1/identities", "default"),
        ("GET", "/v1/collections", None),
        ("GET", "/v1/operations/abc", None),
        ("GET", "/healthz", None),
    ],
)
def test_the_collection_of_a_path(method: str, path: str, expected: str | None) -> None:
    assert collection_of_path(method, path) == expected


def test_a_scoped_token_reaches_its_collection_alone(client: Client) -> None:
    assert _as(client, RO_A, "GET", "/v1/collections/a/identities") == (200, "")
    assert _as(client, RO_A, "GET", "/v1/collections/b/identities") == (
        403,
        "This token may not use collection 'b'.",
    )
    assert _as(client, RO_A, "GET", "/v1/identities") == (403, "This token may not use collection 'default'.")
    assert _as(client, RO_A, "POST", "/v1/collections/a/enroll")[0] == 403  # read-only within its scope
    assert _as(client, RW_A, "POST", "/v1/collections/a/enroll") == (200, "")
    assert _as(client, RW_A, "DELETE", "/v1/collections/a/identities/ann") == (200, "")
    assert _as(client, RW_A, "POST", "/v1/collections/b/enroll")[0] == 403
    # A route whose collection comes in the body asks the guard once it has read it.
    assert _as(client, RW_A, "POST", "/v1/collections/a/enroll?body_collection=b") == (
        403,
        "This token may not use collection 'b'.",
    )
    assert _as(client, RW, "GET", "/v1/collections/b/identities") == (200, "")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/collections"),
        ("DELETE", "/v1/collections/a"),
        ("POST", "/v1/collections/a:reembed"),
        ("POST", "/v1/collections/a/operating-points"),
    ],
)
def test_only_admin_tokens_manage_collections(client: Client, method: str, path: str) -> None:
    for token in (RW, RW_A, RO_A):
        status, message = _as(client, token, method, path)
        assert status == 403 and message.startswith("Only an admin token may"), (token, message)
    assert _as(client, ADMIN, method, path) == (200, "")

"""The gateway as a web-facing server: Host allow-list, cross-site refusals, security headers, tokens
checked before any body is read, bounded numbers and headers, and time limits for headers and bodies.

A real uvicorn gateway process in front of the fake gallery and detector (tests/support/gateway.py).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway import FACE, Fake, fake_services
from tests.support.servers import Running, start_service

RW = "guard-test-rw-token-0123456789"
RO = "guard-test-ro-token-0123456789"
OTHER_HOST = "faces.facerec.internal"
FRIEND = "http://friend.facerec.internal:8443"


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Fake, str]]:
    with fake_services() as served:
        yield served


@pytest.fixture(scope="module")
def gateway(upstream: tuple[Fake, str]) -> Iterator[Running]:
    """A gateway with tokens on, one more Host and one more origin allowed, and short time limits."""
    _, address = upstream
    service = start_service(
        "gateway",
        [
            *("--gallery", address, "--detector", address, "--embedder", address),
            *("--tokens", f"{RW} rw,{RO} ro", "--allowed-hosts", OTHER_HOST, "--allowed-origins", FRIEND),
            *("--header-timeout-s", "1", "--body-timeout-s", "1", "--max-request-bytes", "1000000"),
        ],
    )
    yield service
    service.stop()


@pytest.fixture(scope="module")
def open_gateway(upstream: tuple[Fake, str]) -> Iterator[Running]:
    """A gateway with tokens off (the default on one machine)."""
    _, address = upstream
    service = start_service("gateway", ["--gallery", address, "--detector", address, "--embedder", address])
    yield service
    service.stop()


@pytest.fixture(scope="module")
def http(gateway: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{gateway.address}", timeout=30) as client:
        yield client


def rw() -> dict[str, str]:
    return {"Authorization": f"Bearer {RW}"}


def ro() -> dict[str, str]:
    return {"Authorization": f"Bearer {RO}"}


def raw(gateway: Running, data: bytes, timeout_s: float = 30) -> tuple[int, dict[str, str], dict]:
    """Sends bytes on a fresh connection and reads the answer until the gateway closes it."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout_s) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(payload or b"null")


# ---------------------------------------------------------------- headers, Host, other sites


@pytest.mark.parametrize("path", ["/", "/healthz", "/static/app.js", "/v1/stats", "/v1/nothing", "/docs"])
def test_every_answer_carries_the_security_headers(http: httpx.Client, path: str) -> None:
    answer = http.get(path)
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp and "unsafe-inline'; img" in csp
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-frame-options"] == "DENY"


def test_the_page_and_the_docs_run_no_inline_script(http: httpx.Client) -> None:
    for path in ("/", "/docs"):
        page = http.get(path).text
        for part in page.split("<script")[1:]:
            assert part.split(">", 1)[0].strip().startswith("src="), (path, part[:80])
            assert part.split(">", 1)[1].startswith("</script>"), path


def test_a_host_not_allowed_is_refused_before_anything_reaches_the_gallery(
    gateway: Running, http: httpx.Client, upstream: tuple[Fake, str]
) -> None:
    fake = upstream[0]
    before = len(fake.calls)
    # A page on a rebound DNS name sends that name as Host.
    answer = http.get("/v1/stats", headers={**rw(), "Host": "rebound.example.invalid:8080"})
    assert answer.status_code == 400 and answer.json()["reason"] == "HOST_NOT_ALLOWED"
    assert len(fake.calls) == before
    for host in (f"localhost:{gateway.port}", f"{OTHER_HOST}:{gateway.port}", "[::1]"):
        assert http.get("/v1/stats", headers={**rw(), "Host": host}).status_code == 200, host
    # The probes answer whatever the Host: kubelet sends the pod's IP.
    assert http.get("/healthz", headers={"Host": "10.1.2.3:8080"}).status_code == 200


def test_a_cross_site_multipart_post_is_refused_and_enrolls_nothing(
    open_gateway: Running, upstream: tuple[Fake, str]
) -> None:
    fake = upstream[0]
    before = len([c for c in fake.calls if c.method == "Enroll"])
    with httpx.Client(base_url=f"http://{open_gateway.address}", timeout=30) as http:
        # What a page on another site makes a browser send: a "simple" multipart POST, no preflight.
        files = {"images": ("me.jpg", FACE, "image/jpeg")}
        for foreign in (
            {"Origin": "http://evil.example.invalid"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},  # another port on the same machine is "same-site"
            {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
        ):
            answer = http.post("/v1/enroll", data={"identity": "madonna"}, files=files, headers=foreign)
            assert answer.status_code == 403, foreign
            assert answer.json()["reason"] == "CROSS_SITE"
            assert http.delete("/v1/identities/madonna", headers=foreign).status_code == 403
        assert len([c for c in fake.calls if c.method == "Enroll"]) == before
        # The page's own requests, and callers that are not browsers, pass; so do reads from anywhere.
        own = {"Origin": f"http://{open_gateway.address}", "Sec-Fetch-Site": "same-origin"}
        assert http.post("/v1/enroll", data={"identity": "ada"}, files=files, headers=own).status_code == 200
        assert http.post("/v1/enroll", data={"identity": "ada"}, files=files).status_code == 200
        assert http.get("/v1/stats", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_an_allowed_origin_may_post(http: httpx.Client) -> None:
    answer = http.post("/v1/train", headers={**rw(), "Origin": FRIEND, "Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 200


# ---------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/detect"),
        ("POST", "/v1/identify"),
        ("POST", "/v1/enroll"),
        ("GET", "/v1/stats"),
        ("GET", "/v1/identities"),
        ("POST", "/v1/train"),
    ],
)
def test_with_tokens_every_route_but_the_probes_and_the_page_needs_one(
    http: httpx.Client, upstream: tuple[Fake, str], method: str, path: str
) -> None:
    fake = upstream[0]
    before = len(fake.calls)
    answer = http.request(method, path)
    assert answer.status_code == 401 and answer.json()["reason"] == "UNAUTHENTICATED"
    assert answer.headers["www-authenticate"] == "Bearer"
    wrong = http.request(method, path, headers={"Authorization": "Bearer not-a-known-token-at-all"})
    assert wrong.status_code == 401
    assert len(fake.calls) == before  # neither reached a service
    for open_path in ("/healthz", "/readyz", "/", "/static/app.js", "/openapi.json", "/favicon.ico"):
        assert http.get(open_path).status_code == 200, open_path


def test_detect_with_a_token_reaches_the_detector(http: httpx.Client, upstream: tuple[Fake, str]) -> None:
    answer = http.post("/v1/detect", json={"images": ["/9hmYWNl"]}, headers=ro())
    assert answer.status_code == 200 and upstream[0].last("Detect").authorization == f"Bearer {RO}"


def test_a_caller_without_a_token_is_refused_before_its_body_is_read(gateway: Running) -> None:
    # The head announces a body and none of it is sent: the answer can come from the headers alone.
    head = (
        b"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 900000\r\n\r\n"
    )
    status, _, body = raw(gateway, head)
    assert status == 401 and body["code"] == "UNAUTHENTICATED"


def test_a_read_only_token_may_not_write_nor_read_embeddings(
    http: httpx.Client, upstream: tuple[Fake, str]
) -> None:
    fake = upstream[0]
    files = {"images": ("a.jpg", FACE, "image/jpeg")}
    assert http.post("/v1/enroll", data={"identity": "x"}, files=files, headers=ro()).status_code == 403
    assert http.post("/v1/train", headers=ro()).status_code == 403
    assert http.delete("/v1/identities/ada", headers=ro()).status_code == 403
    templates = http.get("/v1/identities/ada", params={"include_embeddings": "true"}, headers=ro())
    assert templates.status_code == 403 and templates.json()["reason"] == "PERMISSION_DENIED"
    assert http.get("/v1/identities/ada", headers=ro()).status_code == 200
    got = http.get("/v1/identities/ada", params={"include_embeddings": "true"}, headers=rw())
    assert got.status_code == 200 and fake.last("GetIdentity").request.include_embeddings


@pytest.mark.parametrize(
    "value",
    [
        "Bearer caf\u00e9-token-0123456789".encode(),
        b"Bearer abc\x01def-0123456789",
        b"Bearer " + b"a" * 5000,
        b"\xff\xfe\xfd",
    ],
)
def test_an_authorization_header_it_cannot_use_is_401_with_tokens_on_or_off(
    gateway: Running, open_gateway: Running, value: bytes
) -> None:
    for served in (gateway, open_gateway):
        head = b"GET /v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + value + b"\r\n\r\n"
        status, _, body = raw(served, head)
        assert status == 401 and body["code"] == "UNAUTHENTICATED"
        with httpx.Client(timeout=30) as http:
            assert http.get(f"http://{served.address}/healthz").status_code == 200


# ---------------------------------------------------------------- numbers, lists, sizes, time


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v1/identify", {"json": {"image": "AAAA", "top_k": 10**6}}),
        ("POST", "/v1/identify", {"json": {"image": "AAAA", "top_k": -1}}),
        ("POST", "/v1/identify", {"json": {"image": "AAAA", "threshold": 1e300}}),
        ("POST", "/v1/identify", {"files": {"image": ("a.jpg", FACE)}, "data": {"top_k": str(2**40)}}),
        ("POST", "/v1/identify", {"files": {"image": ("a.jpg", FACE)}, "data": {"threshold": "nan"}}),
        ("POST", "/v1/search", {"json": {"embedding": [0.1] * 128, "top_k": 2**40}}),
        ("POST", "/v1/search", {"json": {"embedding": [0.1] * 5000}}),
        ("POST", "/v1/detect", {"json": {"images": ["AAAA"], "max_faces": 2**40}}),
        ("GET", "/v1/identities?page_size=1000000000000", {}),
        ("GET", "/v1/identities?page_size=-5", {}),
        ("DELETE", f"/v1/faces/{2**70}", {}),
        ("DELETE", "/v1/faces/0", {}),
        (
            "POST",
            "/v1/identify",
            {"content": b'{"embedding": [NaN]}', "headers": {"content-type": "application/json"}},
        ),
    ],
)
def test_a_number_or_list_out_of_range_is_400_json_never_500(
    http: httpx.Client, upstream: tuple[Fake, str], method: str, path: str, kwargs: dict
) -> None:
    headers = {**kwargs.pop("headers", {}), **rw()}
    answer = http.request(method, path, headers=headers, **kwargs)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "INVALID_ARGUMENT" and answer.json()["message"].endswith(".")


def test_a_json_body_of_tiny_items_is_refused_before_it_becomes_objects(open_gateway: Running) -> None:
    body = b'{"embedding": [' + b"0," * 600_000 + b"0]}"
    with httpx.Client(base_url=f"http://{open_gateway.address}", timeout=30) as http:
        answer = http.post("/v1/search", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 400 and "items" in answer.json()["message"]
        assert http.get("/healthz").status_code == 200


def test_a_body_that_stalls_is_408_and_the_connection_closed(gateway: Running, http: httpx.Client) -> None:
    head = (
        b"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {RW}\r\nContent-Length: 1000\r\n\r\n".encode()
    )
    status, headers, body = raw(gateway, head + b'{"image": "')
    assert status == 408 and body["reason"] == "REQUEST_TIMEOUT" and headers["connection"] == "close"
    assert http.get("/healthz").status_code == 200


def test_a_connection_that_trickles_its_headers_is_closed(gateway: Running, http: httpx.Client) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        # The gateway closes it (recv gives b""), well before this socket's own 30 s timeout.
        assert sock.recv(65536) == b""
    assert http.get("/healthz").status_code == 200


def test_readyz_says_ready_when_the_three_services_answer(http: httpx.Client) -> None:
    answer = http.get("/readyz")
    assert answer.status_code == 200 and answer.json() == {"status": "SERVING"}


def test_a_request_http_cannot_parse_is_400_json(gateway: Running, http: httpx.Client) -> None:
    # Headers still unfinished past the 32 KiB h11 buffers, and a request line that is not HTTP.
    for head in (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40_000,
        b"NOT HTTP AT ALL\r\n\r\n",
    ):
        status, headers, body = raw(gateway, head)
        assert status == 400 and body["code"] == "INVALID_ARGUMENT"
        assert headers["x-content-type-options"] == "nosniff"
    assert http.get("/healthz").status_code == 200

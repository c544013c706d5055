"""The gateway under bounded attacks: large and stalled bodies, slow headers, cross-site posts and a
rebound Host, against a real uvicorn gateway process in front of the fake gallery. Each checks that the
gateway's memory (VmHWM of its process), its health and its answers hold (docs/limits.md, "Attacks").
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import FACE, Fake, fake_services
from tests.support.servers import Running, start_service

MiB = 1024 * 1024
BODY = 64 * MiB
RESET = 0  # send_until_answered's status when a reset came before the answer was read


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Fake, str]]:
    with fake_services() as served:
        yield served


@pytest.fixture(scope="module")
def gateway(upstream: tuple[Fake, str]) -> Iterator[Running]:
    """Default limits (64 MiB bodies, 32 MiB JSON, 20 MiB pictures), short header and body deadlines."""
    _, address = upstream
    service = start_service(
        "gateway",
        [
            *("--gallery", address, "--detector", address, "--embedder", address),
            *("--header-timeout-s", "2", "--body-timeout-s", "10"),
        ],
    )
    yield service
    service.stop()


@pytest.fixture(scope="module")
def http(gateway: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{gateway.address}", timeout=60) as client:
        yield client


def peak_rss(gateway: Running) -> int:
    """The gateway process's peak resident memory so far, bytes (VmHWM)."""
    for line in Path(f"/proc/{gateway.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@contextmanager
def health_watch(gateway: Running) -> Iterator[list[int]]:
    """Asks /healthz every 50 ms on its own connection while the block runs; yields the statuses (0 for a
    failed call), filled in when the block ends."""
    statuses: list[int] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=f"http://{gateway.address}", timeout=30) as http:
            while True:
                try:
                    statuses.append(http.get("/healthz").status_code)
                except httpx.HTTPError:
                    statuses.append(0)
                if done.wait(0.05):
                    return

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        yield statuses
    finally:
        done.set()
        thread.join()


def answer_of(sock: socket.socket) -> tuple[int, bytes]:
    """The status and the raw answer read from sock until the gateway closes it."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def send_until_answered(sock: socket.socket, head: bytes, chunks: Iterator[bytes]) -> tuple[int, bytes]:
    """Sends head then chunks as an HTTP client should (RFC 9112, 9.6): it stops sending as soon as an
    answer comes, and reads it. The gateway discards a bounded part of a refused body after its answer
    (gateway.__main__.LINGER_BYTES), then closes: bytes still in flight then draw a TCP reset, which can
    reach this socket before its answer is read. HTTP allows that; it is the status RESET."""
    piece = 64 * 1024
    try:
        sock.sendall(head)
        for chunk in chunks:
            for start in range(0, len(chunk), piece):
                if select.select([sock], [], [], 0)[0]:
                    return answer_of(sock)
                sock.sendall(chunk[start : start + piece])
    except (BrokenPipeError, ConnectionResetError):
        pass  # the gateway answered and closed while the body was still coming: read what came
    try:
        return answer_of(sock)
    except ConnectionResetError:
        return RESET, b""


def test_a_large_json_body_costs_the_gateway_nothing_and_health_holds(gateway: Running) -> None:
    before = peak_rss(gateway)
    head = (
        b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % BODY
    )
    numbers = (b"0," * (MiB // 2) for _ in range(BODY // MiB))  # 64 MiB of "0,0,0,..."
    with health_watch(gateway) as statuses:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=60) as sock:
            status, data = send_until_answered(sock, head + b'{"embedding": [', numbers)
    assert status in (413, RESET) and (status == RESET or b"REQUEST_TOO_LARGE" in data)
    rise = peak_rss(gateway) - before
    logging.getLogger(__name__).info("64 MiB JSON: +%.0f MiB, status %d", rise / MiB, status)
    assert rise < 2 * BODY  # in fact nothing: refused from Content-Length
    assert statuses and set(statuses) == {200}


def test_a_large_chunked_body_is_refused_while_it_streams(gateway: Running) -> None:
    before = peak_rss(gateway)
    head = (
        b"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"A" * MiB
    chunks = (b"%x\r\n" % len(piece) + piece + b"\r\n" for _ in range(BODY // MiB + 8))
    with health_watch(gateway) as statuses:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=60) as sock:
            status, data = send_until_answered(sock, head + b'6\r\n{"a":"\r\n', chunks)
    assert status in (413, RESET) and (status == RESET or b"REQUEST_TOO_LARGE" in data)
    # Held up to the JSON limit (32 MiB) before the refusal, never the whole stream.
    rise = peak_rss(gateway) - before
    logging.getLogger(__name__).info("64 MiB chunked JSON: +%.0f MiB, status %d", rise / MiB, status)
    assert rise < 2 * BODY
    assert statuses and set(statuses) == {200}


def test_a_64_mib_enroll_raises_the_gateways_peak_by_less_than_twice_its_size(
    gateway: Running, upstream: tuple[Fake, str]
) -> None:
    fake = upstream[0]
    before_calls = len([c for c in fake.calls if c.method == "Enroll"])
    picture = FACE + bytes(20 * MiB - 4096)  # just under the picture limit
    files = [("images", (f"{i}.jpg", picture, "image/jpeg")) for i in range(3)]
    before = peak_rss(gateway)
    with health_watch(gateway) as statuses:
        with httpx.Client(base_url=f"http://{gateway.address}", timeout=120) as http:
            answer = http.post("/v1/enroll", data={"identity": "ada"}, files=files)
    assert answer.status_code == 200, answer.text
    assert [r["outcome"] for r in answer.json()["results"]] == ["ENROLLED"] * 3
    rise = peak_rss(gateway) - before
    logging.getLogger(__name__).info("64 MiB enroll: +%.0f MiB", rise / MiB)
    assert rise < 2 * len(picture) * 3, f"+{rise / MiB:.0f} MiB"
    assert len([c for c in fake.calls if c.method == "Enroll"]) - before_calls == 3  # one part each
    assert statuses and set(statuses) == {200}


def test_stalled_bodies_are_cut_off_and_health_holds(gateway: Running, http: httpx.Client) -> None:
    head = (
        b"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n" + b'{"image": "' + b"A" * 1000
    )
    sockets = [socket.create_connection(("127.0.0.1", gateway.port), timeout=60) for _ in range(20)]
    try:
        for sock in sockets:
            sock.sendall(head)  # and never the rest
        assert http.get("/healthz").status_code == 200  # answered while all 20 are held
        answers = [answer_of(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    assert [status for status, _ in answers] == [408] * 20
    assert all(b"REQUEST_TIMEOUT" in data for _, data in answers)
    assert http.get("/healthz").status_code == 200


def test_slow_headers_are_cut_off_and_health_holds(gateway: Running, http: httpx.Client) -> None:
    sockets = [socket.create_connection(("127.0.0.1", gateway.port), timeout=60) for _ in range(50)]
    try:
        for sock in sockets:
            sock.sendall(b"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # no end of headers
        assert http.get("/healthz").status_code == 200
        closed = [sock.recv(65536) for sock in sockets]  # b"": the gateway closed it
    finally:
        for sock in sockets:
            sock.close()
    assert closed == [b""] * 50
    # On a new connection: the client's pooled one has been idle as long as the slow ones and is cut by
    # the same header deadline, at any moment now (reusing it races that close: a reset, not a failure).
    assert httpx.get(f"http://{gateway.address}/healthz", timeout=60).status_code == 200


def test_cross_site_posts_enroll_nothing(http: httpx.Client, upstream: tuple[Fake, str]) -> None:
    fake = upstream[0]
    before = [c.method for c in fake.calls]
    # What a page on another site gets a browser to send to the gateway on localhost (tokens off).
    foreign = {"Origin": "http://attacker.example.invalid", "Sec-Fetch-Site": "cross-site"}
    files = {"images": ("stranger.jpg", FACE, "image/jpeg")}
    enroll = http.post("/v1/enroll", data={"identity": "madonna"}, files=files, headers=foreign)
    train = http.post("/v1/train", headers=foreign)
    removal = http.delete("/v1/identities/madonna", headers=foreign)
    assert [enroll.status_code, train.status_code, removal.status_code] == [403, 403, 403]
    assert enroll.json()["reason"] == "CROSS_SITE"
    assert [c.method for c in fake.calls] == before


def test_a_rebound_host_reaches_nothing(http: httpx.Client, upstream: tuple[Fake, str]) -> None:
    fake = upstream[0]
    before = len(fake.calls)
    for method, path in (("GET", "/v1/identities"), ("POST", "/v1/train"), ("GET", "/")):
        answer = http.request(method, path, headers={"Host": "attacker-rebound.example.invalid"})
        assert answer.status_code == 400 and answer.json()["reason"] == "HOST_NOT_ALLOWED"
    assert len(fake.calls) == before
    assert http.get("/healthz").status_code == 200


def test_a_refused_request_whose_body_is_unread_still_reads_the_answer(gateway: Running) -> None:
    """A client that sends its headers and a moderate body at once (httpx does, in two writes) must
    read the refusal, not a connection reset. The refusal comes from the headers, before the body is
    read; closing the socket with the body's bytes still unread in it makes the kernel send a TCP RST
    in place of the FIN, and the client's kernel then drops the answer it had not read yet. The gateway
    instead half-closes and reads and discards the body (bounded), so the answer and the FIN arrive."""
    body = b"-" * (512 * 1024)  # more than the gateway reads before it refuses (a 256 KiB read at most)
    head = (
        b"POST /v1/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://attacker.example.invalid\r\n"
        + b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(head + body)
        status, answer = answer_of(sock)
    assert status == 403 and b"CROSS_SITE" in answer
    assert b"connection: close" in answer.lower()


def test_what_follows_a_refusal_is_discarded_only_up_to_a_bound(gateway: Running) -> None:
    """The lingering close reads a bounded number of bytes: a client that goes on sending a 64 MiB body
    it was refused for, without reading the refusal, is cut off (a reset) long before the end of it."""
    head = (
        b"POST /v1/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://attacker.example.invalid\r\n"
        + b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: %d\r\n\r\n" % BODY
    )
    piece = b"-" * MiB
    sent = 0
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(head)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(BODY // MiB):
                sock.sendall(piece)
                sent += len(piece)
    assert sent < BODY // 2


def test_a_client_that_stays_after_a_refusal_is_closed(gateway: Running) -> None:
    """The lingering close is bounded in time too: a client that reads the refusal and its end (the
    gateway half-closed) but keeps the connection open, trickling a byte now and then, is closed."""
    head = (
        b"POST /v1/train HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://attacker.example.invalid\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(head)
        status, _ = answer_of(sock)  # until the gateway's FIN
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(300):  # 30 s at most, far beyond the linger's bound
                sock.sendall(b"-")
                time.sleep(0.1)
    assert status == 403

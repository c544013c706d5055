"""The gateway's request id: a real uvicorn process (-v, JSON logs) in front of a fake gallery on a real
gRPC server. The caller's X-Request-Id (or one made here) is echoed, sent to the gallery as gRPC
metadata, and written in the gateway's log lines."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway import Fake, fake_services
from tests.support.servers import Running, start_service

FRESH = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Fake, str]]:
    with fake_services() as served:
        yield served


@pytest.fixture(scope="module")
def gateway(upstream: tuple[Fake, str]) -> Iterator[Running]:
    _, address = upstream
    service = start_service(
        "gateway",
        ["--gallery", address, "--detector", address, "--timeout-s", "5", "-v"],
        env={"GATEWAY_LOG_FORMAT": "json"},
    )
    yield service
    service.stop()


@pytest.fixture(scope="module")
def http(gateway: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{gateway.address}", timeout=30) as client:
        yield client


def logged(gateway: Running) -> list[dict[str, str]]:
    """The gateway's JSON log lines so far (its other output, the start-up line, is not JSON)."""
    found = []
    for line in list(gateway.output):
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def test_a_callers_id_is_echoed_sent_to_the_gallery_and_logged(
    http: httpx.Client, upstream: tuple[Fake, str], gateway: Running
) -> None:
    fake, _ = upstream
    answer = http.get("/v1/stats", headers={"X-Request-Id": "from-the-caller-1"})
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "from-the-caller-1"
    assert fake.last("Stats").request_id == "from-the-caller-1"
    # uvicorn's access line (with -v) goes through the gateway's handler: JSON, with the id.
    lines = [entry for entry in logged(gateway) if entry["request_id"] == "from-the-caller-1"]
    assert any("/v1/stats" in entry["message"] for entry in lines), logged(gateway)[-5:]


def test_without_an_id_the_gateway_makes_one_and_the_gallery_gets_that_one(
    http: httpx.Client, upstream: tuple[Fake, str]
) -> None:
    fake, _ = upstream
    first = http.get("/v1/stats")
    second = http.get("/v1/stats")
    made = first.headers["x-request-id"]
    assert FRESH.fullmatch(made) and second.headers["x-request-id"] != made
    assert fake.last("Stats").request_id == second.headers["x-request-id"]


@pytest.mark.parametrize(
    "given",
    [b"x" * 129, b"new\\nline", b"caf\xe9", b"a b", b'"quoted"', b"<script>"],
    ids=["too-long", "escaped-newline", "latin-1", "space", "quotes", "markup"],
)
def test_an_unfit_id_is_replaced_never_logged_nor_sent_on(
    http: httpx.Client, upstream: tuple[Fake, str], gateway: Running, given: bytes
) -> None:
    fake, _ = upstream
    answer = http.get("/v1/stats", headers=[(b"X-Request-Id", given)])
    assert answer.status_code == 200
    made = answer.headers["x-request-id"]
    assert FRESH.fullmatch(made)
    assert fake.last("Stats").request_id == made
    assert not any(given.decode("latin-1") in line for line in gateway.output)


def test_refusals_and_errors_carry_the_id_too(http: httpx.Client) -> None:
    not_found = http.get("/v1/nothing", headers={"X-Request-Id": "lost-1"})
    assert not_found.status_code == 404 and not_found.headers["x-request-id"] == "lost-1"
    wrong_host = http.get("/v1/stats", headers={"X-Request-Id": "host-1", "Host": "evil.example"})
    assert wrong_host.status_code in (400, 421) and wrong_host.headers["x-request-id"] == "host-1"
    healthz = http.get("/healthz", headers={"X-Request-Id": "probe-1"})
    assert healthz.headers["x-request-id"] == "probe-1"

"""The gateway as a real uvicorn process in front of a fake gallery and detector on a real gRPC server."""

from __future__ import annotations

import base64
import json
import socket
import urllib.request
from collections.abc import Iterator

import grpc
import httpx
import pytest

from facerec import errors
from facerec.status import STATUS
from tests.support.gateway import BIG_FACE_ID, FACE, Fake, fake_services
from tests.support.pki import make_pki
from tests.support.servers import Running, dead_address, start_service

MAX_REQUEST = 1_000_000
MAX_IMAGE = 100_000
TOKEN = "Bearer a-long-enough-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Fake, str]]:
    with fake_services() as served:
        yield served


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def gateway(upstream: tuple[Fake, str], metrics_port: int) -> Iterator[Running]:
    _, address = upstream
    service = start_service(
        "gateway",
        [
            *("--gallery", address, "--detector", address, "--timeout-s", "2"),
            *("--max-request-bytes", str(MAX_REQUEST), "--max-image-bytes", str(MAX_IMAGE)),
            *("--max-images-per-enroll", "4", "--metrics-port", str(metrics_port)),
            *("--enroll-part-bytes", str(MAX_IMAGE)),
        ],
    )
    yield service
    service.stop()


@pytest.fixture
def fake(upstream: tuple[Fake, str]) -> Iterator[Fake]:
    fake = upstream[0]
    yield fake
    fake.failures.clear()
    fake.hold.clear()
    fake.released.set()
    fake.released.clear()


@pytest.fixture(scope="module")
def http(gateway: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{gateway.address}", timeout=30) as client:
        yield client


def core(reply: dict) -> dict:
    """An error body's code, sentence and reason (its details and request id are checked on their own)."""
    return {key: reply[key] for key in ("code", "message", "reason")}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------- identify, verify, detect


def test_identify_a_multipart_picture_answers_typed_json_with_the_face_id_as_an_exact_number(
    http: httpx.Client, fake: Fake
) -> None:
    answer = http.post("/v1/identify", files={"image": ("face.jpg", FACE + b"1")}, data={"top_k": "3"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["faces"][0]["identity"] == "ada" and body["faces"][0]["known"] is True
    assert body["faces"][0]["box"] == {"x": 10, "y": 20, "width": 30, "height": 40}
    assert body["threshold"] == pytest.approx(1.06) and body["width"] == 100
    # A JSON number, exact to the last digit (not a string, not rounded through a double).
    assert f'"face_id":{BIG_FACE_ID}' in answer.text.replace(" ", "")
    call = fake.last("Identify")
    assert call.request.image.data == FACE + b"1" and call.request.top_k == 3


def test_identify_a_base64_json_picture(http: httpx.Client, fake: Fake) -> None:
    answer = http.post("/v1/identify", json={"image": b64(FACE + b"2"), "threshold": 0.9})
    assert answer.status_code == 200, answer.text
    assert fake.last("Identify").request.image.data == FACE + b"2"
    assert fake.last("Identify").request.threshold == pytest.approx(0.9)


def test_identify_an_embedding(http: httpx.Client, fake: Fake) -> None:
    answer = http.post("/v1/identify", json={"embedding": [0.5] * 128})
    assert answer.status_code == 200, answer.text
    assert list(fake.last("Identify").request.embedding.values) == [0.5] * 128


@pytest.mark.parametrize(
    ("request_kwargs", "sentence"),
    [
        ({"json": {"image": "not base64!"}}, "The field image is not valid base64."),
        ({"json": {}}, "Give image (base64) or embedding."),
        ({"json": {"image": 5}}, "image: Input should be a valid string."),
        ({"content": b"{", "headers": {"content-type": "application/json"}}, None),
        ({"content": b"raw", "headers": {"content-type": "image/jpeg"}}, None),
        ({"files": {"picture": ("a.jpg", FACE)}}, "The field image must be a file."),
        ({"files": {"image": ("a.jpg", FACE)}, "data": {"top_k": "many"}}, None),
    ],
)
def test_a_bad_request_is_400_with_one_sentence_and_never_reaches_the_gallery(
    http: httpx.Client, fake: Fake, request_kwargs: dict, sentence: str | None
) -> None:
    before = len(fake.calls)
    answer = http.post("/v1/identify", **request_kwargs)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == "INVALID_ARGUMENT"
    assert body["message"].endswith(".") and "\n" not in body["message"]
    if sentence is not None:
        assert body["message"] == sentence
    assert len(fake.calls) == before


def test_verify_two_pictures_and_a_picture_against_an_identity(http: httpx.Client, fake: Fake) -> None:
    answer = http.post(
        "/v1/verify", files={"image_a": ("a.jpg", FACE + b"a"), "image_b": ("b.jpg", FACE + b"b")}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "match": True,
        "distance": pytest.approx(0.4),
        "threshold": pytest.approx(1.2),
        "box_a": {"x": 10, "y": 20, "width": 30, "height": 40},
        "box_b": None,
        "faces_a": 0,
        "faces_b": 0,
        "operating_point": "far_1e-3",
    }
    assert fake.last("Verify").request.image_b.data == FACE + b"b"
    answer = http.post("/v1/verify", json={"image_a": b64(FACE), "identity": "ada", "operating_point": "eer"})
    assert answer.status_code == 200 and answer.json()["operating_point"] == "eer"
    assert (fake.last("Verify").request.identity, fake.last("Verify").request.operating_point) == (
        "ada",
        "eer",
    )
    missing = http.post("/v1/verify", json={"image_a": b64(FACE)})
    assert missing.status_code == 400
    assert missing.json()["message"] == "Give image_b or an identity to compare image_a with."


def test_detect_goes_to_the_detector_with_a_per_picture_error(http: httpx.Client, fake: Fake) -> None:
    answer = http.post(
        "/v1/detect",
        files=[("images", ("a.jpg", FACE)), ("images", ("b.txt", b"text"))],
        data={"max_faces": "2"},
    )
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["images"]
    assert first["faces"][0]["confidence"] == pytest.approx(0.99) and first["error"] is None
    assert second["faces"] == [] and second["error"]["code"] == "INVALID_ARGUMENT"
    assert fake.last("Detect").request.options.max_faces == 2
    assert not fake.last("Detect").request.options.return_crops


def test_represent_sends_the_picture_and_options_and_answers_faces_with_embeddings(
    http: httpx.Client, fake: Fake
) -> None:
    multipart = http.post("/v1/represent", files={"image": ("a.jpg", FACE)}, data={"max_faces": "3"})
    sent = fake.last("Represent").request
    assert multipart.status_code == 200 and sent.image.data == FACE and sent.detect_options.max_faces == 3
    as_json = http.post("/v1/represent", json={"image": b64(FACE), "min_confidence": 0.5})
    assert fake.last("Represent").request.detect_options.min_confidence == pytest.approx(0.5)
    assert (
        as_json.json()
        == multipart.json()
        == {
            "faces": [
                {
                    "box": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0},
                    "landmarks": None,
                    "quality": {
                        "size_px": 30.0,
                        "detection_confidence": 0.99,
                        "identifiable": True,
                        "not_identifiable": "NOT_IDENTIFIABLE_UNSPECIFIED",
                        "not_identifiable_reason": "",
                    },
                    "embedding": {"values": [0.6, 0.8], "model": "fake"},
                }
            ],
            "width": 100,
            "height": 120,
            "model": "fake",
        }
    )
    missing = http.post("/v1/represent", json={"min_confidence": 0.5})
    assert (
        missing.status_code == 400 and missing.json()["details"][1]["field_violations"][0]["field"] == "image"
    )


# ---------------------------------------------------------------- enroll


def test_enroll_several_pictures_reports_each_picture_by_name(http: httpx.Client, fake: Fake) -> None:
    answer = http.post(
        "/v1/enroll",
        data={"identity": "ada"},
        files=[
            ("images", ("one.jpg", FACE + b"1")),
            ("images", ("huge.jpg", FACE + bytes(MAX_IMAGE))),
            ("images", ("cat.jpg", b"no face")),
        ],
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["identity"] == "ada"
    assert [(r["filename"], r["outcome"]) for r in body["results"]] == [
        ("one.jpg", "ENROLLED"),
        ("huge.jpg", "INVALID"),
        ("cat.jpg", "NO_FACE"),
    ]
    assert body["results"][0]["face_id"] == BIG_FACE_ID
    assert body["results"][1]["error"] == {
        "code": "RESOURCE_EXHAUSTED",
        "message": f"The picture huge.jpg is larger than {MAX_IMAGE} bytes.",
        "reason": "IMAGE_TOO_LARGE",
        "field": "images[1]",
    }
    # The picture over the limit never travels to the gallery; the others do, in order.
    assert [i.data for i in fake.last("Enroll").request.images] == [FACE + b"1", b"no face"]


def test_a_large_enroll_goes_to_the_gallery_in_parts_and_answers_in_picture_order(
    http: httpx.Client, fake: Fake
) -> None:
    before = len([c for c in fake.calls if c.method == "Enroll"])
    sizes = [60_000, 60_000, 10, 30_000]  # parts of at most MAX_IMAGE bytes: [0], [1, 2, 3]
    files = [("images", (f"{i}.jpg", FACE + bytes(size), "image/jpeg")) for i, size in enumerate(sizes)]
    answer = http.post("/v1/enroll", data={"identity": "ada"}, files=files)
    assert answer.status_code == 200, answer.text
    assert [r["filename"] for r in answer.json()["results"]] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    calls = [c for c in fake.calls if c.method == "Enroll"][before:]
    assert [len(c.request.images) for c in calls] == [1, 3]
    assert [len(image.data) for c in calls for image in c.request.images] == [len(FACE) + s for s in sizes]


def test_enroll_base64_pictures_and_embeddings(http: httpx.Client, fake: Fake) -> None:
    answer = http.post(
        "/v1/enroll", json={"identity": "grace", "images": [b64(FACE)], "embeddings": [[0.1] * 128]}
    )
    assert answer.status_code == 200, answer.text
    assert [r["filename"] for r in answer.json()["results"]] == ["images[0]", "embeddings[0]"]
    assert len(fake.last("Enroll").request.embeddings) == 1


def test_more_pictures_than_the_enroll_limit_is_400(http: httpx.Client, fake: Fake) -> None:
    before = len(fake.calls)
    files = [("images", (f"{i}.jpg", FACE)) for i in range(5)]
    answer = http.post("/v1/enroll", data={"identity": "ada"}, files=files)
    assert answer.status_code == 400
    assert answer.json()["message"] == "At most 4 pictures per enroll, not 5."
    assert len(fake.calls) == before


# ---------------------------------------------------------------- the other RPCs


def test_identities_are_paged(http: httpx.Client, fake: Fake) -> None:
    first = http.get("/v1/identities", params={"page_size": 2}).json()
    assert [p["identity"] for p in first["identities"]] == ["ada", "grace"]
    second = http.get(
        "/v1/identities", params={"page_size": 2, "page_token": first["next_page_token"]}
    ).json()
    assert [p["identity"] for p in second["identities"]] == ["linus"] and second["next_page_token"] == ""
    bad = http.get("/v1/identities", params={"page_size": "lots"})
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_ARGUMENT"


def test_get_remove_identity_remove_face_train_stats_search(http: httpx.Client, fake: Fake) -> None:
    got = http.get("/v1/identities/grace")
    assert got.status_code == 200 and got.json()["faces"][0]["face_id"] == BIG_FACE_ID
    missing = http.get("/v1/identities/nobody")
    assert missing.status_code == 404
    assert missing.json() == {
        "code": "NOT_FOUND",
        "message": "No identity named 'nobody'.",
        "reason": "NOT_FOUND",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "NOT_FOUND", "domain": "facerec"}
        ],
        # Made at the edge (the call sent no x-request-id): the one the answer's header names.
        "request_id": missing.headers["x-request-id"],
    }
    assert http.delete("/v1/identities/ada").json() == {"faces_removed": 2}
    assert fake.last("RemoveIdentity").request.identity == "ada"
    assert http.delete(f"/v1/faces/{BIG_FACE_ID}").json() == {"identity": "ada"}
    assert fake.last("RemoveFace").request.face_id == BIG_FACE_ID
    assert http.post("/v1/train").json() == {"identities": 3, "faces": 6, "train_accuracy": 1.0}
    assert http.get("/v1/stats").json()["index_kind"] == "flat"
    hits = http.post("/v1/search", json={"embedding": [0.1] * 128, "top_k": 1}).json()["hits"]
    assert hits == [{"face_id": BIG_FACE_ID, "identity": "ada", "distance": pytest.approx(0.3)}]


# ---------------------------------------------------------------- errors, tokens, deadlines


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInput, 400),
        (errors.Unauthenticated, 401),
        (errors.PermissionDenied, 403),
        (errors.NotFound, 404),
        (errors.Precondition, 409),
        (errors.TooLarge, 413),
        (errors.Overloaded, 429),
        (errors.Unavailable, 503),
        (errors.DeadlineExceeded, 504),
    ],
)
def test_the_gallerys_status_becomes_its_http_status_with_the_gallerys_sentence(
    http: httpx.Client, fake: Fake, error: type[errors.FacerecError], status: int
) -> None:
    code = STATUS[error]
    sentence = f"The gallery says {code.name.lower()}."
    fake.failures["Train"] = error(sentence)
    answer = http.post("/v1/train")
    assert answer.status_code == status
    reply = answer.json()
    assert {k: reply[k] for k in ("code", "message", "reason")} == {
        "code": code.name,
        "message": sentence,
        "reason": error.reasons[0],
    }
    assert reply["details"][0] == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": error.reasons[0],
        "domain": "facerec",
    }
    # Retry-After exactly where retrying later helps (busy, unavailable), never on "too large".
    assert ("retry-after" in answer.headers) == (error in (errors.Overloaded, errors.Unavailable))
    fake.failures.clear()
    assert http.post("/v1/train").status_code == 200  # and the gateway goes on answering


def test_a_message_over_the_gallerys_size_limit_is_413(http: httpx.Client, fake: Fake) -> None:
    fake.failures["Identify"] = errors.TooLarge(
        "Image 0 is too large (30 MiB).", reason=errors.Reason.IMAGE_TOO_LARGE
    )
    answer = http.post("/v1/identify", json={"image": b64(FACE)})
    assert answer.status_code == 413 and answer.json()["code"] == "RESOURCE_EXHAUSTED"
    assert answer.json()["reason"] == "IMAGE_TOO_LARGE" and "retry-after" not in answer.headers


def test_a_busy_gallery_is_429_with_retry_after_whatever_its_words(http: httpx.Client, fake: Fake) -> None:
    # Words that once meant "too large" to the gateway: the reason decides now, not the sentence.
    fake.failures["Identify"] = errors.Overloaded("The request is too large for the queue right now.")
    answer = http.post("/v1/identify", json={"image": b64(FACE)})
    assert answer.status_code == 429 and answer.json()["reason"] == "BUSY"
    assert answer.headers["retry-after"] == "1"


def test_the_callers_bearer_token_reaches_the_gallery_as_metadata(http: httpx.Client, fake: Fake) -> None:
    http.get("/v1/stats", headers={"Authorization": TOKEN})
    assert fake.last("Stats").authorization == TOKEN
    http.post("/v1/detect", json={"images": [b64(FACE)]}, headers={"Authorization": TOKEN})
    assert fake.last("Detect").authorization == TOKEN
    http.get("/v1/stats")
    assert fake.last("Stats").authorization == ""


def test_unauthenticated_asks_for_a_bearer_token(http: httpx.Client, fake: Fake) -> None:
    fake.failures["Stats"] = (grpc.StatusCode.UNAUTHENTICATED, "A valid token is required.")
    answer = http.get("/v1/stats")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"


def test_a_gallery_that_does_not_answer_in_time_is_504(
    http: httpx.Client, fake: Fake, upstream: tuple[Fake, str]
) -> None:
    fake.hold.add("Stats")
    answer = http.get("/v1/stats")
    fake.released.set()
    assert answer.status_code == 504
    assert core(answer.json()) == {
        "code": "DEADLINE_EXCEEDED",
        "message": f"The gallery at {upstream[1]} did not answer within 2 s.",
        "reason": "DEADLINE_EXCEEDED",
    }


def test_a_gallery_that_is_down_is_503_with_one_sentence_and_healthz_says_so() -> None:
    with dead_address() as dead:
        service = start_service("gateway", ["--gallery", dead, "--timeout-s", "5"])
        try:
            with httpx.Client(base_url=f"http://{service.address}", timeout=30) as http:
                answer = http.post("/v1/identify", files={"image": ("a.jpg", FACE)})
                assert answer.status_code == 503
                assert core(answer.json()) == {
                    "code": "UNAVAILABLE",
                    "message": f"The gallery at {dead} is not reachable.",
                    "reason": "UNAVAILABLE",
                }
                # Alive, not ready; and neither answer shows where the services are.
                assert http.get("/healthz").json() == {"status": "SERVING"}
                ready = http.get("/readyz")
                assert ready.status_code == 503 and ready.json()["code"] == "UNAVAILABLE"
                assert "gallery" in ready.json()["message"] and dead not in ready.text
        finally:
            service.stop()


def test_tls_towards_the_gallery_with_the_clis_ca_setting(tmp_path_factory: pytest.TempPathFactory) -> None:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    credentials = grpc.ssl_server_credentials([(pki.server_key.read_bytes(), pki.server_cert.read_bytes())])
    with fake_services(credentials) as (fake, address):
        # The gallery's certificate names localhost: the gateway must trust the CA given to the CLI.
        target = address.replace("127.0.0.1", "localhost")
        plain = start_service("gateway", ["--gallery", target, "--timeout-s", "5"])
        secure = start_service("gateway", ["--gallery", target], env={"FACEREC_TLS_CA": str(pki.ca)})
        try:
            with httpx.Client(timeout=30) as http:
                answer = http.get(f"http://{secure.address}/v1/stats")
                assert answer.status_code == 200, answer.text
                assert fake.last("Stats").request is not None
                refused = http.get(f"http://{plain.address}/v1/stats")
                assert refused.status_code == 503 and refused.json()["code"] == "UNAVAILABLE"
        finally:
            plain.stop()
            secure.stop()


def test_healthz_is_serving_while_the_gallery_is(http: httpx.Client) -> None:
    answer = http.get("/healthz")
    assert answer.status_code == 200 and answer.json()["status"] == "SERVING"


# ---------------------------------------------------------------- limits


def raw_request(gateway: Running, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """Sends head (and body) on a socket and reads the answer; returns (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    return int(header.split()[1]), json.loads(payload)


def test_a_body_announced_over_the_limit_is_refused_before_any_of_it_is_sent(
    gateway: Running, fake: Fake
) -> None:
    before = len(fake.calls)
    head = (
        b"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % (MAX_REQUEST + 1)
    )
    # No byte of the body is sent: the answer can only come from the Content-Length alone.
    status, body = raw_request(gateway, head)
    assert status == 413
    assert core(body) == {
        "code": "RESOURCE_EXHAUSTED",
        "message": f"The request is larger than the limit of {MAX_REQUEST} bytes.",
        "reason": "REQUEST_TOO_LARGE",
    }
    assert len(fake.calls) == before


def test_a_chunked_body_is_refused_once_it_passes_the_limit(gateway: Running, fake: Fake) -> None:
    before = len(fake.calls)
    head = (
        b"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    # One chunk over the limit and no last chunk: the answer comes before the body ends.
    chunk = b"%x\r\n" % (MAX_REQUEST + 1) + b" " * (MAX_REQUEST + 1) + b"\r\n"
    status, body = raw_request(gateway, head, chunk)
    assert status == 413 and body["code"] == "RESOURCE_EXHAUSTED"
    assert len(fake.calls) == before


def test_a_picture_over_the_image_limit_is_413(http: httpx.Client, fake: Fake) -> None:
    answer = http.post("/v1/identify", files={"image": ("big.jpg", FACE + bytes(MAX_IMAGE))})
    assert answer.status_code == 413
    assert answer.json()["message"] == f"The picture big.jpg is larger than {MAX_IMAGE} bytes."
    answer = http.post("/v1/identify", json={"image": b64(FACE + bytes(MAX_IMAGE))})
    assert answer.status_code == 413


# ---------------------------------------------------------------- docs, page, metrics


def test_openapi_lists_one_route_per_rpc_with_both_body_kinds(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert {
        "/v1/identify",
        "/v1/verify",
        "/v1/detect",
        "/v1/enroll",
        "/v1/search",
        "/v1/identities",
        "/v1/identities/{identity}",
        "/v1/faces/{face_id}",
        "/v1/train",
        "/v1/stats",
        "/healthz",
    } <= set(spec["paths"])
    content = spec["paths"]["/v1/enroll"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} == set(content)
    assert spec["paths"]["/v1/enroll"]["post"]["responses"]["200"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_docs_and_the_page_load_nothing_from_another_host(http: httpx.Client) -> None:
    for path in ("/docs", "/", "/static/app.js", "/static/style.css"):
        answer = http.get(path)
        assert answer.status_code == 200, path
        assert "http://" not in answer.text and "https://" not in answer.text, path
    assert http.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert http.get("/docs-assets/swagger-ui.css").status_code == 200


def test_an_unknown_route_is_404_json(http: httpx.Client) -> None:
    answer = http.get("/v1/nothing")
    assert answer.status_code == 404
    assert core(answer.json()) == {
        "code": "NOT_FOUND",
        "message": "No route GET /v1/nothing.",
        "reason": "NOT_FOUND",
    }


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def count(text: str, labels: str) -> float:
    """The value of facerec_http_requests_total{labels} in a scrape, 0 when absent."""
    for line in text.splitlines():
        if line.startswith(f"facerec_http_requests_total{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_calls_by_route_and_code(http: httpx.Client, fake: Fake, metrics_port: int) -> None:
    no_route = 'code="NOT_FOUND",route="GET (no route)",service="gateway"'
    missing = 'code="NOT_FOUND",route="GET /v1/identities/{identity:path}",service="gateway"'
    stats = 'code="OK",route="GET /v1/stats",service="gateway"'
    before = scrape(metrics_port)
    http.get("/v1/identities/nobody")
    http.get("/v1/stats")
    http.get("/v1/no-such-route-1")
    http.get("/v1/no-such-route-2")
    after = scrape(metrics_port)
    assert count(after, missing) - count(before, missing) == 1
    assert count(after, stats) - count(before, stats) == 1
    # Unknown paths share one label, so probing URLs cannot grow the metrics without bound.
    assert count(after, no_route) - count(before, no_route) == 2
    assert "no-such-route" not in after


@pytest.mark.parametrize(
    ("send", "field"),
    [
        ({"json": {"embedding": [0.5] * 128, "top_k": 500}}, "top_k"),
        ({"json": {"embedding": [0.5] * 128, "threshold": "far"}}, "threshold"),
        ({"files": {"image": ("face.jpg", FACE)}, "data": {"top_k": "lots"}}, "top_k"),
        ({"json": {"image": "not base64!"}}, "image"),
    ],
)
def test_the_gateways_own_refusal_names_the_field_and_the_request_id(
    http: httpx.Client, send: dict, field: str
) -> None:
    answer = http.post("/v1/identify", headers={"x-request-id": "req-42"}, **send)
    reply = answer.json()
    assert (
        answer.status_code == 400
        and reply["reason"] == "INVALID_ARGUMENT"
        and reply["request_id"] == "req-42"
    )
    violations = [d for d in reply["details"] if d["@type"] == "type.googleapis.com/google.rpc.BadRequest"]
    assert violations == [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "field_violations": [{"field": field, "description": reply["message"]}],
        }
    ]

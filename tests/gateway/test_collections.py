"""The gateway's collection face: every gallery route also answers under /v1/collections/{collection} and
hands the path's collection to the gallery (the old routes hand it "" = default), the collections' own
routes and operations, renaming, a face's picture as an image; a real uvicorn process in front of a fake
gallery on a real gRPC server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.routes import collection_of
from tests.support.gateway import BIG_FACE_ID, FACE, PICTURE, Fake, fake_services
from tests.support.servers import Running, start_service


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Fake, str]]:
    with fake_services() as served:
        yield served


@pytest.fixture(scope="module")
def http(upstream: tuple[Fake, str]) -> Iterator[httpx.Client]:
    _, address = upstream
    service: Running = start_service("gateway", ["--gallery", address, "--detector", address])
    try:
        with httpx.Client(base_url=f"http://{service.address}", timeout=30) as client:
            yield client
    finally:
        service.stop()


@pytest.fixture
def fake(upstream: tuple[Fake, str]) -> Fake:
    upstream[0].calls.clear()
    return upstream[0]


# (method, default path, keyword arguments, RPC) for every gallery route; the same under a collection.
GALLERY_ROUTES = [
    ("POST", "/identify", {"files": {"image": ("a.jpg", FACE)}}, "Identify"),
    ("POST", "/identify", {"json": {"embedding": [0.6, 0.8]}}, "Identify"),
    ("POST", "/verify", {"files": {"image_a": ("a.jpg", FACE), "image_b": ("b.jpg", FACE)}}, "Verify"),
    ("POST", "/represent", {"json": {"image": "/9j/"}}, "Represent"),
    ("POST", "/enroll", {"files": [("images", ("a.jpg", FACE))], "data": {"identity": "ada"}}, "Enroll"),
    ("POST", "/search", {"json": {"embedding": [0.6, 0.8]}}, "Search"),
    ("GET", "/identities", {}, "ListIdentities"),
    ("GET", "/identities/ada", {}, "GetIdentity"),
    ("DELETE", "/identities/ada", {}, "RemoveIdentity"),
    ("DELETE", f"/faces/{BIG_FACE_ID}", {}, "RemoveFace"),
    ("POST", "/train", {}, "Train"),
    ("GET", "/stats", {}, "Stats"),
    ("POST", "/identities/ada:rename", {"json": {"new_name": "Ada L"}}, "RenameIdentity"),
    ("GET", f"/faces/{BIG_FACE_ID}/picture", {}, "GetFacePicture"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "rpc"), GALLERY_ROUTES)
@pytest.mark.parametrize("collection", ["", "archive", "café ü"])
def test_every_gallery_route_hands_its_collection_to_the_gallery(
    http: httpx.Client, fake: Fake, method: str, path: str, kwargs: dict, rpc: str, collection: str
) -> None:
    prefix = f"/v1/collections/{collection}" if collection else "/v1"
    reply = http.request(method, prefix + path, **kwargs)
    assert reply.status_code == 200, reply.text
    assert fake.last(rpc).request.collection == collection


def test_the_old_routes_and_the_collection_routes_answer_alike(http: httpx.Client, fake: Fake) -> None:
    old = http.get("/v1/identities/grace").json()
    new = http.get("/v1/collections/default/identities/grace").json()
    assert old == new and new["faces"][0]["face_id"] == BIG_FACE_ID


def test_include_pictures_reaches_the_gallery(http: httpx.Client, fake: Fake) -> None:
    http.get("/v1/collections/archive/identities/ada", params={"include_pictures": "true"})
    sent = fake.last("GetIdentity").request
    assert sent.include_pictures and not sent.include_embeddings and sent.collection == "archive"


def test_a_faces_picture_is_its_bytes_with_its_media_type_and_never_cached(
    http: httpx.Client, fake: Fake
) -> None:
    reply = http.get(f"/v1/collections/archive/faces/{BIG_FACE_ID}/picture")
    assert reply.status_code == 200 and reply.content == PICTURE
    assert reply.headers["content-type"] == "image/webp" and reply.headers["cache-control"] == "no-store"
    missing = http.get("/v1/faces/5/picture")
    assert missing.status_code == 404 and missing.json()["message"] == "Face 5 keeps no picture."


def test_rename_sends_the_identity_and_its_new_name(http: httpx.Client, fake: Fake) -> None:
    reply = http.post("/v1/collections/archive/identities/a/b:rename", json={"new_name": "Ada"})
    assert reply.json()["identity"]["identity"] == "Ada"
    sent = fake.last("RenameIdentity").request
    assert (sent.collection, sent.identity, sent.new_name) == ("archive", "a/b", "Ada")
    bad = http.post("/v1/identities/ada:rename", json={})
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_ARGUMENT"


def test_collections_are_created_listed_got_and_deleted(http: httpx.Client, fake: Fake) -> None:
    created = http.post(
        "/v1/collections",
        json={"name": "archive", "contract": {"model": "m-int8"}, "keep_source_pictures": True},
    )
    assert created.status_code == 200 and created.json()["contract"]["model"] == "m-int8"
    sent = fake.last("CreateCollection").request
    assert (sent.name, sent.contract.model, sent.keep_source_pictures) == ("archive", "m-int8", True)
    listed = http.get("/v1/collections", params={"page_size": 10}).json()
    assert [c["name"] for c in listed["collections"]] == ["archive", "default"]
    assert listed["collections"][0]["state"] == "COLLECTION_READY"
    assert fake.last("ListCollections").request.page_size == 10
    assert http.get("/v1/collections/archive").json()["name"] == "archive"
    assert http.delete("/v1/collections/archive").json() == {"identities_removed": 3, "faces_removed": 6}
    assert fake.last("DeleteCollection").request.name == "archive"
    nameless = http.post("/v1/collections", json={"contract": {"model": "m"}})
    assert nameless.status_code == 400 and nameless.json()["code"] == "INVALID_ARGUMENT"


def test_reembed_starts_an_operation_that_is_polled(http: httpx.Client, fake: Fake) -> None:
    started = http.post(
        "/v1/collections/archive:reembed", json={"contract": {"model": "m-int8"}, "drop_failed": True}
    )
    assert started.status_code == 200 and started.json()["name"] == "operations/7"
    sent = fake.last("Reembed").request
    assert (sent.collection, sent.contract.model, sent.drop_failed) == ("archive", "m-int8", True)
    polled = http.get("/v1/operations/7").json()
    assert fake.last("GetOperation").request.name == "operations/7"
    assert polled["done"] and polled["metadata"]["failed_faces"][0]["face_id"] == 5


def test_operating_points_are_stored_through_the_gallery(http: httpx.Client, fake: Fake) -> None:
    reply = http.post(
        "/v1/collections/archive/operating-points",
        json={
            "model": "m",
            "operating_points": [{"name": "far_1e-3", "threshold": 0.9, "far": 0.001}],
            "operating_point": "far_1e-3",
        },
    )
    assert reply.status_code == 200, reply.text
    sent = fake.last("SetOperatingPoints").request
    assert sent.collection == "archive" and sent.operating_point == "far_1e-3"
    assert [(p.name, round(p.threshold, 3)) for p in sent.operating_points] == [("far_1e-3", 0.9)]
    assert not sent.HasField("identification_point")
    out_of_range = http.post(
        "/v1/collections/archive/operating-points",
        json={"model": "m", "operating_points": [{"name": "x", "threshold": 7}]},
    )
    assert out_of_range.status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "collection"),
    [
        ("POST", "/v1/identify", "default"),
        ("GET", "/v1/identities/a/b", "default"),
        ("POST", "/v1/collections/archive/identify", "archive"),
        ("GET", "/v1/collections/archive", "archive"),
        ("DELETE", "/v1/collections/archive", "archive"),
        ("POST", "/v1/collections/archive:reembed", "archive"),
        ("GET", "/v1/collections/a:reembed", "a:reembed"),
        ("POST", "/v1/collections/archive/operating-points", "archive"),
        ("GET", "/v1/collections", None),
        ("POST", "/v1/collections", None),
        ("GET", "/v1/operations/7", None),
        ("POST", "/v1/detect", None),
        ("GET", "/healthz", None),
    ],
)
def test_the_collection_of_a_request_is_known_from_its_path(method: str, path: str, collection: str) -> None:
    assert collection_of(method, path) == collection


def test_a_collection_name_over_128_characters_is_400_and_never_reaches_the_gallery(
    http: httpx.Client, fake: Fake
) -> None:
    reply = http.get("/v1/collections/" + "x" * 129 + "/stats")
    assert reply.status_code == 400 and reply.json()["code"] == "INVALID_ARGUMENT"
    assert not [c for c in fake.calls if c.method == "Stats"]


DOOR_ADMIN = "surfaces-door-admin-token-0123456789"
DOOR_RW = "surfaces-door-rw-token-0123456789"


@pytest.fixture(scope="module")
def scoped(upstream: tuple[Fake, str]) -> Iterator[httpx.Client]:
    """A gateway whose tokens are scoped to the collection `door`."""
    _, address = upstream
    tokens = f"{DOOR_ADMIN} admin door;{DOOR_RW} rw door"
    service = start_service("gateway", ["--gallery", address, "--detector", address, "--tokens", tokens])
    try:
        with httpx.Client(base_url=f"http://{service.address}", timeout=30) as client:
            yield client
    finally:
        service.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_scoped_to_a_collection_reaches_only_its_routes(scoped: httpx.Client, fake: Fake) -> None:
    ok = scoped.get("/v1/collections/door/identities", headers=bearer(DOOR_RW))
    assert ok.status_code == 200 and fake.last("ListIdentities").request.collection == "door"
    for path in ("/v1/collections/archive/identities", "/v1/identities"):  # the latter: default's
        refused = scoped.get(path, headers=bearer(DOOR_RW))
        assert refused.status_code == 403 and refused.json()["code"] == "PERMISSION_DENIED", path
    assert [c.request.collection for c in fake.calls if c.method == "ListIdentities"] == ["door"]


def test_what_names_its_collection_in_the_body_or_the_answer_is_checked_there(
    scoped: httpx.Client, fake: Fake
) -> None:
    made = scoped.post("/v1/collections", json={"name": "door"}, headers=bearer(DOOR_ADMIN))
    assert made.status_code == 200
    other = scoped.post("/v1/collections", json={"name": "archive"}, headers=bearer(DOOR_ADMIN))
    assert other.status_code == 403 and other.json()["code"] == "PERMISSION_DENIED"
    assert [c.request.name for c in fake.calls if c.method == "CreateCollection"] == ["door"]
    # The fake's operation works on `archive`: the door's token may not read it.
    polled = scoped.get("/v1/operations/7", headers=bearer(DOOR_ADMIN))
    assert polled.status_code == 403 and polled.json()["code"] == "PERMISSION_DENIED"


def test_an_identitys_page_reaches_the_gallery(http: httpx.Client, fake: Fake) -> None:
    params = {"include_pictures": "true", "page_size": "32", "page_token": "MTA="}
    assert http.get("/v1/collections/archive/identities/ada", params=params).status_code == 200
    sent = fake.last("GetIdentity").request
    assert (sent.page_size, sent.page_token, sent.include_pictures) == (32, "MTA=", True)

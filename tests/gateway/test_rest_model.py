"""The REST routes against the real gateway, gallery, detector and embedder, with the real weights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from tests.gateway.conftest import RO_TOKEN, RW_TOKEN, Stack
from tests.support.gateway import seventeen_pixel_face

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=180) as client:
        yield client


def pictures(images: list[tuple[str, Path]], who: str, count: int) -> list[Path]:
    return [path for person, path in images if person == who][:count]


def enroll(
    http: httpx.Client, who: str, paths: list[Path], headers: dict[str, str] | None = None
) -> httpx.Response:
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    return http.post("/v1/enroll", data={"identity": who}, files=files, headers=headers or {})


def test_enroll_then_identify_verify_detect_list_get_train_stats_remove(
    http: httpx.Client, train_images, val_images
) -> None:
    for who in ("madonna", "elton_john"):
        answer = enroll(http, who, pictures(train_images, who, 3))
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert len(results) == 3
        assert all(r["outcome"] in ("ENROLLED", "MULTIPLE_FACES") and r["face_id"] > 0 for r in results)

    val = pictures(val_images, "madonna", 2)
    answer = http.post("/v1/identify", files={"image": (val[0].name, val[0].read_bytes())})
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    best = max(reply["faces"], key=lambda f: f["box"]["width"] * f["box"]["height"])
    assert best["known"] and best["identity"] == "madonna"
    assert best["distance"] <= reply["threshold"]

    pair = {"image_a": ("a.jpg", val[0].read_bytes()), "image_b": ("b.jpg", val[1].read_bytes())}
    verified = http.post("/v1/verify", files=pair).json()
    # These two lie 1.12 apart: beyond the default far_1e-3 (1.09), within far_1e-2 (1.22).
    assert verified["operating_point"] == "far_1e-3"
    assert verified["match"] == (verified["distance"] <= verified["threshold"])
    loose = http.post("/v1/verify", files=pair, data={"operating_point": "far_1e-2"}).json()
    assert loose["match"] and loose["operating_point"] == "far_1e-2"
    assert loose["distance"] <= loose["threshold"]

    detected = http.post("/v1/detect", files={"image": ("a.jpg", val[0].read_bytes())}).json()
    assert len(detected["images"]) == 1 and detected["images"][0]["faces"]

    names = {p["identity"] for p in http.get("/v1/identities").json()["identities"]}
    assert {"madonna", "elton_john"} <= names
    faces = http.get("/v1/identities/elton_john").json()["faces"]
    assert len(faces) == 3
    assert http.post("/v1/train").status_code == 200
    stats = http.get("/v1/stats").json()
    assert stats["faces"] >= 6 and stats["identities"] >= 2
    assert "far_1e-3" in {p["name"] for p in stats["operating_points"]}

    assert http.delete(f"/v1/faces/{faces[0]['face_id']}").json() == {"identity": "elton_john"}
    assert http.delete("/v1/identities/elton_john").json() == {"faces_removed": 2}
    missing = http.get("/v1/identities/elton_john")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"


def test_a_file_that_is_not_a_picture_is_400_with_the_gallerys_sentence(http: httpx.Client) -> None:
    answer = http.post("/v1/identify", files={"image": ("notes.jpg", b"these are notes, not a picture")})
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == "INVALID_ARGUMENT"
    assert body["message"].endswith(".") and "\n" not in body["message"]
    assert http.get("/healthz").status_code == 200  # and the gateway still answers
    assert http.get("/readyz").json() == {"status": "SERVING"}  # the three real services answer


def test_tokens_pass_through_to_a_secured_gallery(secured: Stack, train_images) -> None:
    with httpx.Client(base_url=secured.url, timeout=180) as http:
        refused = http.get("/v1/identities")
        assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHENTICATED"
        rw = {"Authorization": f"Bearer {RW_TOKEN}"}
        ro = {"Authorization": f"Bearer {RO_TOKEN}"}
        paths = pictures(train_images, "mindy_kaling", 2)
        assert enroll(http, "mindy_kaling", paths, rw).status_code == 200
        denied = enroll(http, "mindy_kaling", paths, ro)
        assert denied.status_code == 403 and denied.json()["code"] == "PERMISSION_DENIED"
        listed = http.get("/v1/identities", headers=ro).json()["identities"]
        assert "mindy_kaling" in {p["identity"] for p in listed}
        assert http.get("/healthz").status_code == 200  # health needs no token


def test_a_17_pixel_face_is_answered_not_identifiable_with_its_reason(http: httpx.Client, val_images) -> None:
    small = seventeen_pixel_face(http, pictures(val_images, "madonna", 1)[0])
    answer = http.post("/v1/identify", files={"image": ("small.png", small)})
    assert answer.status_code == 200, answer.text
    faces = answer.json()["faces"]
    assert faces, "the detector should still find the shrunk face"
    face = faces[0]
    assert face["not_identifiable"] == "FACE_TOO_SMALL"
    assert (
        face["not_identifiable_reason"].startswith("The face is ") and "px" in face["not_identifiable_reason"]
    )
    assert (face["identity"], face["known"], face["candidates"]) == ("", False, [])


def test_represent_over_grpc_and_http_gives_the_real_faces_and_embeddings_and_stores_nothing(
    stack: Stack, http: httpx.Client, val_images
) -> None:
    path = pictures(val_images, "elton_john", 1)[0]
    tiny = seventeen_pixel_face(http, pictures(val_images, "madonna", 1)[0])
    before = http.get("/v1/stats").json()
    answer = http.post("/v1/represent", files={"image": (path.name, path.read_bytes())})
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["model"] == before["model"] and reply["width"] > 0 and reply["faces"]
    best = max(reply["faces"], key=lambda f: f["quality"]["size_px"])
    assert best["quality"]["identifiable"] and best["quality"]["size_px"] >= 20
    assert 0.8 <= best["quality"]["detection_confidence"] <= 1 and best["landmarks"]["left_eye"]["x"] > 0
    vector = np.asarray(best["embedding"]["values"])
    assert vector.shape == (128,) and abs(np.linalg.norm(vector) - 1) < 1e-4
    assert best["embedding"]["model"] == before["model"]
    with grpc.insecure_channel(stack.services.gallery) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        sent = stub.Represent(
            gallery_pb2.RepresentRequest(image=common_pb2.Image(data=path.read_bytes())), timeout=120
        )
        # The same picture through both faces: the same faces and the same embeddings.
        assert [f.quality.size_px for f in sent.faces] == pytest.approx(
            [f["quality"]["size_px"] for f in reply["faces"]]
        )
        same = max(sent.faces, key=lambda f: f.quality.size_px)
        np.testing.assert_allclose(same.embedding.values, vector, atol=1e-5)
        small = stub.Represent(gallery_pb2.RepresentRequest(image=common_pb2.Image(data=tiny)), timeout=120)
    # The 17-pixel face is represented but not identifiable, with the gallery's reason.
    assert small.faces and not small.faces[0].quality.identifiable
    assert small.faces[0].quality.not_identifiable == gallery_pb2.FACE_TOO_SMALL
    after = http.get("/v1/stats").json()
    assert (after["identities"], after["faces"]) == (before["identities"], before["faces"])


def test_an_identitys_faces_and_pictures_come_in_pages_through_the_gateway(
    http: httpx.Client, train_images
) -> None:
    """Faces in pages of page_size, pictures in pages of at most 32: next_page_token leads on to every face."""
    who = "paged-identity"
    assert enroll(http, who, pictures(train_images, "madonna", 3)).status_code == 200
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(40, 128))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    embeddings = [v.tolist() for v in vectors]
    assert http.post("/v1/enroll", json={"identity": who, "embeddings": embeddings}).status_code == 200
    try:
        sizes, pictured, token = [], 0, ""
        while True:
            page = http.get(
                f"/v1/identities/{who}",
                params={"include_pictures": "true", "page_size": 2, "page_token": token},
            ).json()
            sizes.append(len(page["faces"]))
            pictured += sum(1 for f in page["faces"] if (f.get("picture") or {}).get("data"))
            token = page.get("next_page_token", "")
            if not token:
                break
        assert page["identity"]["face_count"] == 43 and sizes == [2] * 21 + [1] and pictured == 3
        first = http.get(f"/v1/identities/{who}").json()
        assert len(first["faces"]) == 43 and not first.get("next_page_token")
        over = http.get(f"/v1/identities/{who}", params={"include_pictures": "true", "page_size": 33})
        assert over.status_code == 400 and "between 1 and 32" in over.json()["message"], over.text
        assert http.get(f"/v1/identities/{who}", params={"page_size": 1001}).status_code == 400
    finally:
        http.delete(f"/v1/identities/{who}")

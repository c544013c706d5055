"""Identity names: one identity whatever Unicode form they come in, no look-alikes of an enrolled one
(Unicode TR39 skeletons), and every name the gallery accepts can be removed again, also through the
gateway's HTTP path."""

from __future__ import annotations

import sqlite3
import unicodedata
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from facerec.errors import InvalidInput
from facerec.server import Health
from gallery import validation
from gallery.backend import open_gallery
from gallery.config import Settings
from gallery.gallery import Gallery
from gallery.options import GalleryOptions
from gallery.results import EnrollOutcome
from gallery.rows import NewFace
from gallery.service import SERVICE_NAME, build_server
from gallery.store import Store
from tests.support.servers import start_service

MODEL = "facenet-keras-128"

NFC = unicodedata.normalize("NFC", "José")
NFD = unicodedata.normalize("NFD", "José")


def test_nfc_and_nfd_forms_of_a_name_are_one_identity(tmp_path: Path) -> None:
    assert NFC != NFD
    # Enrolled as embeddings: the detector and embedder ports are never called.
    g = open_gallery(tmp_path / "g.sqlite", MODEL, _Unused(), _Unused(), GalleryOptions())
    rng = np.random.default_rng(7)
    for name in (NFC, NFD):
        vector = rng.normal(size=128)
        results = g.enroll(name, embeddings=[((vector / np.linalg.norm(vector)).tolist(), MODEL)])
        assert [r.outcome for r in results] == [EnrollOutcome.ENROLLED]
    rows, _ = g.list_identities()
    assert [(r.identity, r.face_count) for r in rows] == [(NFC, 2)]
    assert g.get_identity(NFD)[0].identity == NFC
    assert g.remove_identity(NFD) == 2
    g.close()


def test_validation_returns_names_in_nfc() -> None:
    assert validation.identity(NFD) == NFC


def _vector(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=128)
    return (v / np.linalg.norm(v)).tolist()


LOOK_ALIKES = [
    ("m\u0430donna", "looks like the enrolled identity 'madonna'"),  # a Cyrillic а among Latin letters
    ("\uff4d\uff41donna", "looks like the enrolled identity 'madonna'"),  # fullwidth m and a
    ("madonna ", "whitespace"),
    ("madonna\u00a0", "whitespace"),
    ("\u0301", "combining mark"),
    ("madonna \u0301", "combining mark"),
    (" ", "blank"),
    (".", "not a name"),
    ("..", "not a name"),
]


@pytest.mark.parametrize(("name", "why"), LOOK_ALIKES)
def test_a_look_alike_of_an_enrolled_name_is_refused_naming_it(
    store_location: str, name: str, why: str
) -> None:
    g = open_gallery(store_location, MODEL, _Unused(), _Unused(), GalleryOptions())
    try:
        g.enroll("madonna", embeddings=[(_vector(1), MODEL)])
        with pytest.raises(InvalidInput, match=why):
            g.enroll(name, embeddings=[(_vector(2), MODEL)])
        rows, _ = g.list_identities()
        assert [(r.identity, r.face_count) for r in rows] == [("madonna", 1)]
        # The name itself, and names that only resemble it, still enroll.
        g.enroll("madonna", embeddings=[(_vector(3), MODEL)])
        g.enroll("madonna louise", embeddings=[(_vector(4), MODEL)])
        assert g.get_identity("madonna")[0].face_count == 2
    finally:
        g.close()


def test_a_look_alike_is_refused_after_a_restart_and_once_the_original_is_gone_it_may_enroll(
    store_location: str,
) -> None:
    g = open_gallery(store_location, MODEL, _Unused(), _Unused(), GalleryOptions())
    g.enroll("madonna", embeddings=[(_vector(1), MODEL)])
    g.close()
    g = open_gallery(store_location, MODEL, _Unused(), _Unused(), GalleryOptions())
    try:
        with pytest.raises(InvalidInput, match="'madonna'"):
            g.enroll("m\u0430donna", embeddings=[(_vector(2), MODEL)])
        g.remove_identity("madonna")
        g.enroll("m\u0430donna", embeddings=[(_vector(2), MODEL)])
        assert [r.identity for r in g.list_identities()[0]] == ["m\u0430donna"]
    finally:
        g.close()


def test_a_store_made_before_skeletons_gets_them_and_its_odd_old_names_stay_removable(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with Store(path, MODEL) as store:
        store.add_faces("madonna ", [NewFace(np.asarray(_vector(1), dtype=np.float32))])
        store.add_faces("madonna", [NewFace(np.asarray(_vector(2), dtype=np.float32))])
    # As a store of the previous schema: no skeleton column.
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX identities_by_skeleton")
        db.execute("ALTER TABLE identities DROP COLUMN skeleton")
    g = open_gallery(path, MODEL, _Unused(), _Unused(), GalleryOptions())
    try:
        with pytest.raises(InvalidInput, match="looks like"):
            g.enroll("m\u0430donna", embeddings=[(_vector(3), MODEL)])
        assert g.remove_identity("madonna ") == 1
        assert [r.identity for r in g.list_identities()[0]] == ["madonna"]
    finally:
        g.close()


ODD_NAMES = [
    "/leading",
    "trailing/",
    "...",
    "%2e%2e",
    "a/b",
    "50% off",
    "ada lovelace",
    "what?#frag",
    "back\\slash",
    "..a",
    "a/../b",
    "李 小龙",
    "+x=y&z",
]


@pytest.fixture(scope="module")
def served_gallery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gallery, str]]:
    """A real gallery gRPC server (no detector or embedder: faces are enrolled as embeddings) and a real
    gateway process in front of it."""
    tmp = tmp_path_factory.mktemp("names")
    g = open_gallery(tmp / "g.sqlite", MODEL, _Unused(), _Unused(), GalleryOptions())
    settings = Settings(store=tmp / "g.sqlite", calibration_path=tmp / "none.json", host="127.0.0.1", port=0)
    health = Health([SERVICE_NAME])
    server, port = build_server(settings, g, health)
    server.start()
    health.set_serving()
    address = f"127.0.0.1:{port}"
    gateway = start_service("gateway", ["--gallery", address, "--detector", address])
    try:
        yield g, f"http://{gateway.address}"
    finally:
        gateway.stop()
        server.stop(0)
        g.close()


@pytest.mark.parametrize("name", ODD_NAMES)
def test_every_valid_name_can_be_read_and_removed_through_the_gateway(
    served_gallery: tuple[Gallery, str], name: str
) -> None:
    g, url = served_gallery
    g.enroll(name, embeddings=[(_vector(5), MODEL)])
    # As the page builds the path: encodeURIComponent's safe set.
    path = "/v1/identities/" + urllib.parse.quote(name, safe="-_.!~*'()")
    with httpx.Client(base_url=url, timeout=30) as http:
        got = http.get(path)
        assert got.status_code == 200, got.text
        assert got.json()["identity"]["identity"] == name
        gone = http.delete(path)
        assert gone.status_code == 200, gone.text
        assert gone.json()["faces_removed"] == 1
        assert http.delete(path).status_code == 404
    assert not g.list_identities()[0]


class _Unused:
    def detect(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("no picture is sent in these tests")

    embed = model_info = detect

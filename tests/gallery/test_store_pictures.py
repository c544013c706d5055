"""Kept face pictures in each store (SQLite, and PostgreSQL on a real server): stored in the enrolment's
transaction, read back by face, replaced by import_pictures, gone with their face or identity in the
removal's transaction; with SQLite, a removed picture's bytes are nowhere in the files any more."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import psycopg
import pytest

from facerec.errors import NotFound
from gallery.ports import FaceStore
from gallery.rows import FaceRow, IdentityRow, KeptPicture, NewFace
from gallery.sqlite_schema import empty_wal
from gallery.store import Store
from gallery.stores import is_postgres, open_store

MODEL = "facenet-keras-128"


def unit_vectors(n: int, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def kept(tag: str, size: int = 3000) -> KeptPicture:
    """A picture whose bytes are unmistakable (the tag repeated): a search of the files finds them."""
    payload = (f"<<{tag}>>".encode() * (size // (len(tag) + 4) + 1))[:size]
    return KeptPicture(payload, "image/webp", 240, 300, (40.0, 50.5, 160.0, 200.25))


@pytest.fixture
def store(store_location: str):
    s = open_store(store_location, MODEL)
    yield s
    s.close()


def picture_rows(where: str) -> tuple[int, int]:
    """(pictures, source pictures) rows in the store's tables, counted behind its back."""
    query = "SELECT (SELECT COUNT(*) FROM pictures), (SELECT COUNT(*) FROM source_pictures)"
    if is_postgres(where):
        with psycopg.connect(where) as conn:
            row = conn.execute(query).fetchone()
    else:
        with sqlite3.connect(where) as db:
            row = db.execute(query).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_pictures_are_kept_with_their_faces(store: FaceStore, store_location: str) -> None:
    v = unit_vectors(4)
    a, b = (
        kept("alice-0"),
        kept("alice-1", 70_000),
    )  # one over a SQLite page, one over PostgreSQL's TOAST bound
    ids = store.add_faces(
        "alice",
        [
            NewFace(v[0], "sha0", picture=a, source_picture=b"whole picture"),
            NewFace(v[1], picture=b),
            NewFace(v[2]),
        ],
    )
    [bob] = store.add_many([("bob", [NewFace(v[3])])])[0]

    assert store.picture(ids[0]) == a and store.picture(ids[1]) == b
    assert store.pictures([*ids, bob, 10_000]) == {ids[0]: a, ids[1]: b}
    assert store.source_picture(ids[0]) == b"whole picture"
    assert store.source_picture(ids[1]) == b"" and store.source_picture(10_000) == b""
    assert [f.has_picture for f in store.get_identity("alice")[1]] == [True, True, False]
    assert store.faces_without_picture() == 2
    with pytest.raises(NotFound, match=rf"^Face {ids[2]} was enrolled without a kept picture\.$"):
        store.picture(ids[2])
    with pytest.raises(NotFound, match=r"^No face 10000 in the gallery\.$"):
        store.picture(10_000)
    assert picture_rows(store_location) == (2, 1)


def test_pictures_survive_reopen(store_location: str) -> None:
    with open_store(store_location, MODEL) as s:
        [face] = s.add_faces("alice", [NewFace(unit_vectors(1)[0], picture=kept("a"))])
    with open_store(store_location, MODEL) as again:
        assert again.picture(face) == kept("a") and again.get_identity("alice")[1][0].has_picture


def test_removing_a_face_or_an_identity_removes_its_pictures(store: FaceStore, store_location: str) -> None:
    v = unit_vectors(4)
    ids = store.add_faces(
        "alice", [NewFace(vec, picture=kept(f"a{i}"), source_picture=b"src") for i, vec in enumerate(v[:3])]
    )
    [bob] = store.add_faces("bob", [NewFace(v[3], picture=kept("b"))])
    assert picture_rows(store_location) == (4, 3)

    store.remove_face(ids[0])
    assert picture_rows(store_location) == (3, 2)
    with pytest.raises(NotFound, match="No face"):
        store.picture(ids[0])
    assert store.source_picture(ids[0]) == b""

    store.remove_identity("alice")
    assert picture_rows(store_location) == (1, 0)
    assert store.pictures([*ids, bob]) == {bob: kept("b")}


def test_import_pictures_stores_and_replaces_for_faces_held(store: FaceStore) -> None:
    v = unit_vectors(2)
    store.import_faces(
        [IdentityRow("alice", 2, 5)],
        [FaceRow(7, "alice", v[0], MODEL, "", None, 5), FaceRow(9, "alice", v[1], MODEL, "", None, 5)],
    )
    assert store.faces_without_picture() == 2 and not store.get_identity("alice")[1][0].has_picture
    version = store.version()
    store.import_pictures({7: kept("seven"), 9: kept("nine")}, {7: b"source seven"})
    store.import_pictures({9: kept("nine again")}, {})
    assert store.pictures([7, 9]) == {7: kept("seven"), 9: kept("nine again")}
    assert store.source_picture(7) == b"source seven" and store.faces_without_picture() == 0
    assert store.version() == version  # the vectors did not change: followers have nothing to do

    with pytest.raises(NotFound, match=r"^No face 8 in the gallery\.$"):
        store.import_pictures({9: kept("never"), 8: kept("eight")}, {})
    assert store.picture(9) == kept("nine again")  # nothing of the refused call was stored


def test_a_failed_enrolment_keeps_none_of_its_pictures(store_location: str) -> None:
    v = unit_vectors(2)
    with open_store(store_location, MODEL) as s:
        s.add_faces("alice", [NewFace(v[0], "same", picture=kept("first"))])
        # SQLite has no unique picture per identity: a picture is refused there by the facade's check,
        # so the failure here is the seal's, raised inside the same transaction on both stores.
        s.seal()
        with pytest.raises(Exception, match="retry in a moment"):
            s.add_faces("bob", [NewFace(v[1], picture=kept("second"))])
    assert picture_rows(store_location) == (1, 0)


def _holding(folder: Path, needle: bytes) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes())


@pytest.mark.parametrize("removal", ["face", "identity"])
def test_a_removed_picture_leaves_no_byte_in_the_sqlite_files(tmp_path: Path, removal: str) -> None:
    v = unit_vectors(6)
    secret = kept("SECRET-FACE-PICTURE", 9000)  # over two pages: overflow pages are overwritten too
    needle = secret.data[:40]
    with Store(tmp_path / "g.sqlite", MODEL) as store:
        # Between the faces of others, so the removed rows share pages with rows that stay.
        store.add_faces("before", [NewFace(v[0], picture=kept("before"))])
        ids = store.add_faces(
            "gone", [NewFace(v[1], picture=secret, source_picture=secret.data), NewFace(v[2])]
        )
        store.add_faces("after", [NewFace(v[3], picture=kept("after"))])
        store.add_faces("gone", [NewFace(v[4], picture=kept("gone-2"))])
        assert _holding(tmp_path, needle) == ["g.sqlite-wal"]  # the search finds it while enrolled
        with closing(sqlite3.connect(tmp_path / "g.sqlite")) as other:
            assert empty_wal(other)
        assert _holding(tmp_path, needle) == ["g.sqlite"]

        if removal == "face":
            store.remove_face(ids[0])
        else:
            store.remove_identity("gone")
        # The removal emptied the WAL, whose frames held the zeroed pages, into the file: nothing left.
        assert _holding(tmp_path, needle) == []
        assert store.picture(store.get_identity("after")[1][0].face_id) == kept("after")
    assert _holding(tmp_path, needle) == []
    assert _holding(tmp_path, kept("after").data[:40]) == ["g.sqlite"]  # what stays is still there

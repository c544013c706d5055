"""Each collection generation's store beside the gallery's own (gallery/namespaces.py), on a real SQLite
home and a real PostgreSQL database: separate faces, separate change notifications, and a drop that takes
one and leaves the others."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import psycopg
import pytest

from facerec.errors import InvalidInput
from gallery.namespaces import drop_store, store_location
from gallery.pg_session import url_schema
from gallery.rows import KeptPicture, NewFace
from gallery.store_postgres import CHANNEL
from gallery.stores import is_postgres, open_store

MODEL = "facenet-keras-128"


def unit_vectors(n: int, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_where_each_generation_lives() -> None:
    assert store_location("/data/g.sqlite", 1, 1) == "/data/g.sqlite"
    assert store_location("/data/g.sqlite", 2, 1) == "/data/g.sqlite.collections/c2-g1.sqlite"
    assert store_location("/data/g.sqlite", 1, 2) == "/data/g.sqlite.collections/c1-g2.sqlite"
    url = "postgresql://facerec@db:5432/gallery"
    assert store_location(url, 1, 1) == url and url_schema(url) == ""
    assert url_schema(store_location(url, 12, 3)) == "facerec_c12_g3"
    # Options the deployment gave are kept beside the schema's.
    tuned = store_location(url + "?sslmode=require&options=-c%20statement_timeout%3D5000", 2, 1)
    info = psycopg.conninfo.conninfo_to_dict(tuned)
    assert (
        info["sslmode"] == "require"
        and info["options"] == "-c statement_timeout=5000 -c search_path=facerec_c2_g1"
    )
    with pytest.raises(InvalidInput, match="No store for collection 0, generation 1"):
        store_location(url, 0, 1)


def faces_of(where: str) -> list[str]:
    with open_store(where, MODEL) as store:
        return store.embeddings()[2]


def test_two_collections_on_one_home_hold_separate_faces_and_drop_apart(store_location: str) -> None:
    home = store_location
    v = unit_vectors(4)
    second, third = (globals()["store_location"](home, c, 1) for c in (2, 3))
    with open_store(home, MODEL) as h, open_store(second, MODEL) as s, open_store(third, MODEL) as t:
        assert h.add_faces("home-face", [NewFace(v[0])]) == [1]
        assert s.add_faces("second-face", [NewFace(v[1]), NewFace(v[2])]) == [1, 2]  # ids of its own
        t.add_faces("third-face", [NewFace(v[3])])
        assert h.store_id != s.store_id != t.store_id
        assert s.get_identity("second-face")[0].face_count == 2 and not h.has_identity("second-face")
    assert faces_of(home) == ["home-face"] and faces_of(second) == ["second-face"] * 2

    drop_store(home, 2, 1)
    assert faces_of(second) == []  # opening it again makes a new, empty store
    assert faces_of(home) == ["home-face"] and faces_of(third) == ["third-face"]
    drop_store(home, 2, 1)  # what is not there any more: nothing to do


def test_dropping_the_home_store_empties_it_and_keeps_the_catalog(store_location: str) -> None:
    home = store_location
    v = unit_vectors(3)
    with open_store(home, MODEL) as h:
        h.add_faces("alice", [NewFace(v[0], picture=KeptPicture(b"pic", "image/webp", 1, 1, (0, 0, 1, 1)))])
        h.save_classifier({"w": np.ones(2, np.float32)}, h.version())
        version = h.version()
    catalog = "CREATE TABLE collections (name TEXT PRIMARY KEY)"
    if is_postgres(home):
        with psycopg.connect(home) as conn:
            conn.execute(catalog)
            conn.execute("INSERT INTO collections VALUES ('default')")
    else:
        with closing(sqlite3.connect(home)) as db, db:
            db.execute(catalog)
            db.execute("INSERT INTO collections VALUES ('default')")
    with open_store(store_location_of(home, 2), MODEL) as other:
        other.add_faces("bob", [NewFace(v[1])])

    drop_store(home, 1, 1)
    with open_store(home, MODEL) as h:
        assert h.counts() == (0, 0) and h.faces_without_picture() == 0 and h.changes_since(0) == []
        assert h.version() > version  # a replica following it rebuilds its index: to nothing
        assert h.load_classifier() is None
    assert faces_of(store_location_of(home, 2)) == ["bob"]
    query = "SELECT name FROM collections"
    if is_postgres(home):
        with psycopg.connect(home) as conn:
            assert conn.execute(query).fetchall() == [("default",)]
    else:
        with closing(sqlite3.connect(home)) as db:
            assert db.execute(query).fetchall() == [("default",)]


def store_location_of(home: str, collection_id: int) -> str:
    return store_location(home, collection_id, 1)


def test_a_dropped_sqlite_store_takes_its_sidecars_and_leaves_no_picture_byte(tmp_path: Path) -> None:
    home = str(tmp_path / "g.sqlite")
    secret = b"<<SECRET-PICTURE>>" * 300
    v = unit_vectors(2)
    for where in (home, store_location(home, 2, 1)):
        with open_store(where, MODEL) as store:
            store.add_faces(
                "gone", [NewFace(v[0], picture=KeptPicture(secret, "image/webp", 9, 9, (0, 0, 9, 9)))]
            )
        for suffix in (".faiss", ".svm.npz"):
            Path(where + suffix).write_bytes(b"derived")
    Path(store_location(home, 2, 10)).write_bytes(b"another generation")  # c2-g10: not c2-g1's

    drop_store(home, 2, 1)
    assert sorted(p.name for p in (tmp_path / "g.sqlite.collections").iterdir()) == ["c2-g10.sqlite"]
    assert any(secret[:40] in p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    drop_store(home, 1, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.sqlite", "g.sqlite.collections"]
    assert secret[:40] not in Path(home).read_bytes()


def test_a_collection_s_changes_wake_only_its_own_listeners(postgres_url: str) -> None:
    v = unit_vectors(2)
    second = store_location(postgres_url, 2, 1)
    with (
        open_store(second, MODEL) as listener,
        open_store(second, MODEL) as writer,
        open_store(postgres_url, MODEL) as home,
        psycopg.connect(postgres_url, autocommit=True) as home_listener,
    ):
        home.add_faces("home-1", [NewFace(v[0])])
        home.add_faces("home-2", [NewFace(v[0])])  # the home store's versions run ahead: 2, then 3
        assert CHANNEL == "facerec_gallery_changes"
        home_listener.execute("LISTEN facerec_gallery_changes")
        assert listener.wait_for_change(0.2) is False  # subscribes; nothing committed yet
        writer.add_faces("here", [NewFace(v[1])])  # the second store's version 1
        assert listener.wait_for_change(30) is True
        home.add_faces("home-3", [NewFace(v[0])])
        # Notifications come in commit order: the home channel heard of the second store's commit
        # (version 1) before its own (3) if at all.
        heard = []
        for note in home_listener.notifies(timeout=30):
            heard.append(note.payload)
            if note.payload == "3":
                break
        assert heard == ["3"]
        assert "schema facerec_c2_g1" in listener.location

"""A gallery made before faces kept pictures (the schema of SQLite version 1, PostgreSQL version 3, as
the main line made them) opens under this code with its faces intact, every one marked as having no kept
picture, and takes pictures from then on."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import psycopg

from gallery import pg_schema
from gallery.rows import KeptPicture, NewFace
from gallery.stores import open_store

MODEL = "facenet-keras-128"

# The SQLite schema of a gallery made before kept pictures (schema version 1), as it was.
OLD_SQLITE = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE identities (name TEXT PRIMARY KEY, created_at_ms INTEGER NOT NULL, skeleton TEXT NOT NULL DEFAULT '');
CREATE TABLE faces (
    face_id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL REFERENCES identities(name),
    embedding BLOB NOT NULL,
    model TEXT NOT NULL,
    image_sha256 TEXT NOT NULL DEFAULT '',
    box_x REAL, box_y REAL, box_w REAL, box_h REAL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX faces_by_identity ON faces(identity, image_sha256);
CREATE INDEX faces_by_image ON faces(image_sha256);
CREATE TABLE changes (
    version INTEGER PRIMARY KEY,
    op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
    face_ids TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
"""


def unit_vectors(n: int, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


FACES = [(1, "alice", "sha-1"), (2, "alice", "sha-2"), (4, "bob", "")]  # id 3 was removed


def old_sqlite_gallery(path: Path, v: np.ndarray) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(OLD_SQLITE)
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ("schema_version", "1"),
                ("version", "4"),
                ("store_id", "a" * 32),
                ("model", MODEL),
                ("dim", "128"),
            ],
        )
        db.executemany("INSERT INTO identities VALUES (?, 5, ?)", [("alice", "alice"), ("bob", "bob")])
        db.executemany(
            "INSERT INTO faces VALUES (?, ?, ?, ?, ?, 1.0, 2.0, 3.0, 4.0, 6)",
            [(i, name, v[i - 1].astype("<f4").tobytes(), MODEL, sha) for i, name, sha in FACES],
        )


def old_postgres_gallery(url: str, v: np.ndarray) -> None:
    """The database as the main line's migrations 1-3 leave it (they are this code's, unchanged)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)"
        )
        for version in (1, 2, 3):
            for step in pg_schema._MIGRATIONS[version]:
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(conn)
            conn.execute("INSERT INTO schema_migrations VALUES (%s, 0)", (version,))
        conn.execute(
            "INSERT INTO meta VALUES ('store_id', %s), ('model', %s), ('dim', '128')", ("a" * 32, MODEL)
        )
        conn.execute("INSERT INTO identities VALUES ('alice', 5, 'alice'), ('bob', 5, 'bob')")
        for i, name, sha in FACES:
            conn.execute(
                "INSERT INTO faces VALUES (%s, %s, %s, %s, %s, 1.0, 2.0, 3.0, 4.0, 6)",
                (i, name, v[i - 1].astype("<f4").tobytes(), MODEL, sha),
            )
        conn.execute("SELECT setval('faces_face_id_seq', 4)")
        conn.execute("UPDATE state SET version = 4, identities = 2, faces = 3")


def check_upgraded(where: str, v: np.ndarray) -> None:
    with open_store(where, MODEL) as store:
        assert store.store_id == "a" * 32 and store.version() == 4 and store.counts() == (2, 3)
        ids, vectors, names = store.embeddings()
        assert ids.tolist() == [1, 2, 4] and names == ["alice", "alice", "bob"]
        assert vectors.tobytes() == v[[0, 1, 3]].tobytes()
        _, faces = store.get_identity("alice")
        assert [f.has_picture for f in faces] == [False, False] and faces[0].box == (1.0, 2.0, 3.0, 4.0)
        assert store.faces_without_picture() == 3 and store.pictures([1, 2, 4]) == {}
        # From now on faces keep pictures, and removals work with the new tables in place.
        picture = KeptPicture(b"new", "image/webp", 4, 4, (0.0, 0.0, 4.0, 4.0))
        [new] = store.add_faces("carol", [NewFace(v[4], picture=picture)])
        assert new > 4 and store.picture(new) == picture and store.faces_without_picture() == 3
        store.remove_identity("alice")
        assert store.counts() == (2, 2) and store.integrity_check()


def test_a_sqlite_gallery_of_schema_1_opens_with_its_faces_and_no_pictures(tmp_path: Path) -> None:
    v = unit_vectors(5)
    old_sqlite_gallery(tmp_path / "old.sqlite", v)
    check_upgraded(str(tmp_path / "old.sqlite"), v)
    with closing(sqlite3.connect(tmp_path / "old.sqlite")) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)


def test_a_postgres_gallery_of_schema_3_opens_with_its_faces_and_no_pictures(postgres_url: str) -> None:
    v = unit_vectors(5)
    old_postgres_gallery(postgres_url, v)
    check_upgraded(postgres_url, v)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone() == (4,)

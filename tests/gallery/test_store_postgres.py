"""What only the PostgreSQL store does, on a real server: its versioned schema, a change another store
object (replica) commits waking a listener, the shared classifier, the password file, and reconnecting
after a server restart. What both stores do is test_store.py's contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest

from facerec.errors import InvalidInput, Precondition
from gallery.rows import NewFace
from gallery.store_postgres import SCHEMA_VERSION, PostgresStore
from gallery.stores import open_store

MODEL = "facenet-keras-128"


def unit_vectors(n: int, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_schema_is_created_once_and_versioned(postgres_url: str) -> None:
    PostgresStore(postgres_url, MODEL).close()
    PostgresStore(postgres_url, MODEL).close()  # a second start migrates nothing
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert rows == [(SCHEMA_VERSION,)]
        conn.execute("INSERT INTO schema_migrations VALUES (%s, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(Precondition, match="newer than this gallery"):
        PostgresStore(postgres_url, MODEL)


def test_the_constraints_hold_in_the_database_too(postgres_url: str) -> None:
    with PostgresStore(postgres_url, MODEL) as store:
        store.add_faces("alice", [NewFace(unit_vectors(1)[0])])
    with psycopg.connect(postgres_url) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO faces (identity, embedding, model, created_at_ms) VALUES ('nobody', '', 'm', 0)"
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO identities VALUES ('', 0)")


def test_a_change_wakes_a_listener(postgres_url: str) -> None:
    with PostgresStore(postgres_url, MODEL) as listener, PostgresStore(postgres_url, MODEL) as writer:
        assert listener.wait_for_change(0.2) is False  # subscribes; nothing committed yet
        writer.add_faces("alice", [NewFace(unit_vectors(1)[0])])
        assert listener.wait_for_change(30) is True


def test_the_classifier_is_shared_and_never_replaced_by_an_older_fit(postgres_url: str) -> None:
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "labels": np.array(["a", "b"])}
    with PostgresStore(postgres_url, MODEL) as a, PostgresStore(postgres_url, MODEL) as b:
        assert b.load_classifier() is None and b.classifier_version() == -1
        a.save_classifier(arrays, 5)
        version, got = b.load_classifier() or (None, {})
        assert version == 5 and got["w"].tobytes() == arrays["w"].tobytes()
        assert got["labels"].tolist() == ["a", "b"]
        b.save_classifier({"w": np.zeros(1, np.float32)}, 4)  # a slower replica's older fit
        assert a.classifier_version() == 5


def test_the_password_may_come_from_a_file(postgres_cluster, tmp_path: Path) -> None:
    url = postgres_cluster.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE ROLE gallery LOGIN PASSWORD 's3cret'")
        conn.execute("GRANT ALL ON SCHEMA public TO gallery")
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    gallery_url = url.replace("postgres@", "gallery@")
    with open_store(gallery_url, MODEL, password_file=str(secret)) as store:
        assert store.counts() == (0, 0)
    with pytest.raises(InvalidInput, match="cannot be read"):
        open_store(gallery_url, MODEL, password_file=str(tmp_path / "missing"))


def test_the_store_reconnects_by_itself_after_a_server_restart(postgres_cluster) -> None:
    url = postgres_cluster.new_database()
    v = unit_vectors(2)
    with PostgresStore(url, MODEL) as store:
        (a,) = store.add_faces("alice", [NewFace(v[0])])
        postgres_cluster.stop()
        postgres_cluster.start()
        # The old connection is dead; the next call (a read, then a write) reopens it, no error seen.
        assert store.identities_of([a]) == {a: "alice"}
        (b,) = store.add_faces("bob", [NewFace(v[1])])
        assert store.counts() == (2, 2) and b > a

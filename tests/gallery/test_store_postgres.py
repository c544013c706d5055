"""What only the PostgreSQL store does, on a real server: its versioned schema, a change another store
object (replica) commits waking a listener, the shared classifier, the password file, and reconnecting
after a server restart. What both stores do is test_store.py's contract."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import psycopg
import pytest

from facerec.errors import InvalidInput, Precondition
from gallery.backend import open_gallery
from gallery.options import GalleryOptions
from gallery.results import EnrollResult
from gallery.rows import DuplicatePicture, NewFace
from gallery.store_postgres import SCHEMA_VERSION, PostgresStore
from gallery.stores import open_store
from tests.support.gallery import FakeDetector, FakeEmbedder, World, portrait

MODEL = "facenet-keras-128"


def unit_vectors(n: int, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_schema_is_created_once_and_versioned(postgres_url: str) -> None:
    PostgresStore(postgres_url, MODEL).close()
    PostgresStore(postgres_url, MODEL).close()  # a second start migrates nothing
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert sorted(rows) == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
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


def test_the_database_refuses_a_picture_twice_for_one_identity(postgres_url: str) -> None:
    v = unit_vectors(4)
    with PostgresStore(postgres_url, MODEL) as one, PostgresStore(postgres_url, MODEL) as two:
        (first,) = one.add_faces("alice", [NewFace(v[0], "sha-1")])
        with pytest.raises(DuplicatePicture):
            two.add_faces("alice", [NewFace(v[1], "sha-1"), NewFace(v[2], "sha-2")])
        # Nothing of the refused call was stored; another identity and bare embeddings may repeat.
        assert two.counts() == (1, 1)
        two.add_faces("bob", [NewFace(v[1], "sha-1"), NewFace(v[2]), NewFace(v[3])])
        two.add_faces("alice", [NewFace(v[2]), NewFace(v[3])])
        assert two.counts() == (2, 6)
        assert two.find_face_by_image("alice", "sha-1") == first


def test_the_migration_keeps_the_first_of_repeated_pictures_and_logs_the_rest_as_removed(
    postgres_url: str,
) -> None:
    v = unit_vectors(4)
    with PostgresStore(postgres_url, MODEL) as store:
        (first,) = store.add_faces("alice", [NewFace(v[0], "sha-1")])
        (other,) = store.add_faces("alice", [NewFace(v[3], "sha-2")])
        version = store.version()
    # As a database of schema 2, where two replicas could both store a picture.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP INDEX faces_one_picture_per_identity")
        conn.execute("DELETE FROM schema_migrations WHERE version = 3")
        repeats = [
            int(r[0])
            for r in conn.execute(
                "INSERT INTO faces (identity, embedding, model, image_sha256, created_at_ms)"
                " SELECT identity, embedding, model, image_sha256, 0 FROM faces, generate_series(1, 2)"
                " WHERE face_id = %s RETURNING face_id",
                (first,),
            )
        ]
        conn.execute("UPDATE state SET faces = faces + 2")
    with PostgresStore(postgres_url, MODEL) as store:
        assert store.integrity_check()
        assert store.counts() == (1, 2)
        assert [int(i) for i in store.face_ids()] == [first, other]
        (change,) = store.changes_since(version)
        assert (change.version, change.op, change.face_ids) == (version + 1, "remove", sorted(repeats))
        with pytest.raises(DuplicatePicture):
            store.add_faces("alice", [NewFace(v[0], "sha-2")])


def test_two_replicas_enrolling_one_picture_at_the_same_moment_store_it_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both replicas pass their duplicate check before either stores (a barrier holds them there): the
    database's constraint lets one store it, and the other answers DUPLICATE with that face's id, as
    one process's check would."""
    world = World(people=1)
    face = world.train["person-0"][0]
    barrier = threading.Barrier(2, timeout=30)

    class CheckThenWait(PostgresStore):
        def find_face_by_image(self, identity: str, image_sha256: str) -> int | None:
            found = super().find_face_by_image(identity, image_sha256)
            if threading.current_thread().name.startswith("replica") and not getattr(self, "waited", False):
                self.waited = True
                barrier.wait()  # the check made under the write lock, just before the insert
            return found

    # Each replica's backend opens its store as this class.
    monkeypatch.setattr(
        "gallery.backend.open_store",
        lambda location, model, dim=128, password_file="": CheckThenWait(location, model, dim),
    )
    replicas = [
        open_gallery(postgres_url, MODEL, FakeDetector(), FakeEmbedder(world), GalleryOptions())
        for _ in range(2)
    ]
    answers: list[list[EnrollResult]] = [[], []]

    def enroll(i: int) -> None:
        answers[i] = replicas[i].enroll("person-0", images=[portrait(face)])

    threads = [threading.Thread(target=enroll, args=(i,), name=f"replica-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        outcomes = sorted((r[0].outcome.value, r[0].face_id) for r in answers)
        stored = replicas[0].get_identity("person-0")[1]
        assert len(stored) == 1
        assert outcomes == [("DUPLICATE", stored[0].face_id), ("ENROLLED", stored[0].face_id)]
    finally:
        for g in replicas:
            g.close()

"""The FaceStore port's contract (gallery/ports.py), run on each store: SQLite, and PostgreSQL on a real
server. Durability across reopen, one model per gallery, lookups, removals, versions, the change log,
the state read in one round trip, the kept classifier, threads, kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facerec.errors import InvalidInput, NotFound, Precondition
from gallery.ports import FaceStore
from gallery.rows import NewFace, StoreState
from gallery.store import Store
from gallery.stores import open_store

MODEL = "facenet-keras-128"


def unit_vectors(n: int, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "gallery.db"


@pytest.fixture
def where(store_location: str) -> str:
    """Each test below taking it runs on both stores: a SQLite file and a PostgreSQL database."""
    return store_location


@pytest.fixture
def store(where: str):
    s = open_store(where, MODEL)
    yield s
    s.close()


def test_everything_survives_reopen_bit_exact(where: str) -> None:
    vectors = unit_vectors(5)
    with open_store(where, MODEL) as s:
        ids_a = s.add_faces(
            "alice", [NewFace(vectors[0], "sha-a0", (1.5, 2.0, 30.0, 40.0)), NewFace(vectors[1])]
        )
        ids_b = s.add_faces("bob", [NewFace(v) for v in vectors[2:]])
        version = s.version()
    with open_store(where, MODEL) as again:
        ids, got, identities = again.embeddings()
        assert ids.tolist() == ids_a + ids_b
        assert identities == ["alice", "alice", "bob", "bob", "bob"]
        assert got.dtype == np.float32 and got.tobytes() == vectors.tobytes()
        assert again.counts() == (2, 5)
        assert again.version() == version
        row, faces = again.get_identity("alice")
        assert row.identity == "alice" and row.face_count == 2
        assert faces[0].box == (1.5, 2.0, 30.0, 40.0) and faces[1].box is None
        assert faces[0].image_sha256 == "sha-a0" and faces[0].model == MODEL
        assert faces[0].embedding.tobytes() == vectors[0].tobytes()
        assert again.integrity_check()


def test_a_store_has_a_random_id_of_its_own_kept_across_reopen(where: str, tmp_path: Path) -> None:
    with open_store(where, MODEL) as s:
        first = s.store_id
        s.add_faces("alice", [NewFace(unit_vectors(1)[0])])
    with open_store(where, MODEL) as again, open_store(tmp_path / "other.sqlite", MODEL) as other:
        assert again.store_id == first and len(first) == 32
        assert other.store_id != first


def test_embedding_is_a_float32_blob_of_dim_times_4_bytes(db_path: Path) -> None:
    with Store(db_path, MODEL) as s:
        s.add_faces("alice", [NewFace(unit_vectors(1)[0])])
    raw = sqlite3.connect(db_path)
    (blob,) = raw.execute("SELECT embedding FROM faces").fetchone()
    raw.close()
    assert isinstance(blob, bytes) and len(blob) == 128 * 4


def test_wal_mode_and_full_sync(db_path: Path) -> None:
    with Store(db_path, MODEL) as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_other_model_is_refused(where: str) -> None:
    with open_store(where, MODEL) as s:
        s.add_faces("alice", [NewFace(unit_vectors(1)[0])])
    with pytest.raises(Precondition):
        open_store(where, "arcface-512")
    # The refusal changed nothing: the original model still opens and sees its face.
    with open_store(where, MODEL) as s:
        assert s.counts() == (1, 1)


def test_empty_gallery_adopts_a_new_model(where: str) -> None:
    open_store(where, MODEL).close()
    with open_store(where, "other-model") as s:
        assert s.model == "other-model"
        s.add_faces("alice", [NewFace(unit_vectors(1)[0])])
    with pytest.raises(Precondition):
        open_store(where, MODEL)


@pytest.mark.parametrize(
    "bad",
    [np.zeros(127, np.float32), np.zeros((1, 128), np.float32), np.full(128, np.nan, np.float32)],
)
def test_bad_embeddings_are_invalid_and_nothing_is_stored(store: FaceStore, bad: np.ndarray) -> None:
    good = unit_vectors(1)[0]
    with pytest.raises(InvalidInput):
        store.add_faces("alice", [NewFace(good), NewFace(bad)])
    assert store.counts() == (0, 0)
    assert store.version() == 0


def test_empty_identity_is_invalid(store: FaceStore) -> None:
    with pytest.raises(InvalidInput):
        store.add_faces("", [NewFace(unit_vectors(1)[0])])


def test_duplicate_lookup_by_sha(store: FaceStore) -> None:
    v = unit_vectors(2)
    (a,) = store.add_faces("alice", [NewFace(v[0], "sha-1")])
    store.add_faces("bob", [NewFace(v[1], "sha-2")])
    assert store.find_face_by_image("alice", "sha-1") == a
    assert store.find_face_by_image("alice", "sha-2") is None  # another identity's picture
    assert store.find_face_by_image("carol", "sha-1") is None
    assert store.find_face_by_image("alice", "") is None


def test_remove_identity_and_face(store: FaceStore) -> None:
    v = unit_vectors(4)
    ids_a = store.add_faces("alice", [NewFace(v[0]), NewFace(v[1])])
    (b,) = store.add_faces("bob", [NewFace(v[2])])
    assert store.remove_identity("alice") == ids_a
    assert not store.has_identity("alice")
    assert store.embeddings()[0].tolist() == [b]
    # A face's removal leaves no empty identity behind.
    assert store.remove_face(b) == "bob"
    assert not store.has_identity("bob")
    assert store.counts() == (0, 0)
    with pytest.raises(NotFound):
        store.remove_identity("alice")
    with pytest.raises(NotFound):
        store.remove_face(b)
    with pytest.raises(NotFound):
        store.get_identity("alice")
    # Ids are never reused, even after removals.
    (c,) = store.add_faces("carol", [NewFace(v[3])])
    assert c > b


def test_remove_one_of_several_faces_keeps_the_identity(store: FaceStore) -> None:
    v = unit_vectors(2)
    a0, a1 = store.add_faces("alice", [NewFace(v[0]), NewFace(v[1])])
    assert store.remove_face(a0) == "alice"
    row, faces = store.get_identity("alice")
    assert row.face_count == 1 and [f.face_id for f in faces] == [a1]
    ids, vectors = store.embeddings_of("alice")
    assert ids.tolist() == [a1] and vectors.tobytes() == v[1].tobytes()


def test_version_bumps_on_every_change_only(store: FaceStore) -> None:
    v = unit_vectors(3)
    seen = [store.version()]
    (a,) = store.add_faces("alice", [NewFace(v[0])])
    seen.append(store.version())
    store.add_faces("bob", [NewFace(v[1]), NewFace(v[2])])
    seen.append(store.version())
    store.remove_face(a)
    seen.append(store.version())
    store.remove_identity("bob")
    seen.append(store.version())
    assert seen == sorted(set(seen)) and len(seen) == 5
    # Reads and failed changes leave it alone.
    store.counts()
    store.list_identities()
    with pytest.raises(NotFound):
        store.remove_face(a)
    store.add_faces("nobody", [])
    assert store.version() == seen[-1]


def test_every_change_is_logged_once_in_version_order(store: FaceStore) -> None:
    v = unit_vectors(4)
    a = store.add_faces("alice", [NewFace(v[0]), NewFace(v[1])])
    (b,) = store.add_faces("bob", [NewFace(v[2])])
    store.remove_face(a[0])
    gone = store.remove_identity("bob")
    changes = store.changes_since(0)
    assert [(c.version, c.op, c.face_ids) for c in changes] == [
        (1, "add", a),
        (2, "add", [b]),
        (3, "remove", [a[0]]),
        (4, "remove", gone),
    ]
    assert store.version() == 4 and store.changes_since(2) == changes[2:]
    assert store.changes_since(0, limit=1) == changes[:1]
    ids, vectors, names = store.faces_by_id([a[0], a[1], b])
    assert ids.tolist() == [a[1]] and names == ["alice"] and vectors.tobytes() == v[1].tobytes()


def test_a_commit_wakes_a_waiter(store: FaceStore) -> None:
    assert store.wait_for_change(0.2) is False  # nothing committed (and, on PostgreSQL, it subscribes)
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(store.wait_for_change(30)))
    waiter.start()
    v = unit_vectors(1)[0]
    deadline = time.monotonic() + 30
    # Commits until the waiter wakes: one that lands before it waits is not what it waits for.
    while waiter.is_alive() and time.monotonic() < deadline:
        store.add_faces("alice", [NewFace(v)])
        waiter.join(0.05)
    waiter.join()
    assert woke == [True]


def test_the_state_is_the_version_the_counts_and_the_kept_classifier(store: FaceStore) -> None:
    v = unit_vectors(3)
    assert store.state() == StoreState(0, 0, 0, -1)
    store.add_faces("alice", [NewFace(v[0]), NewFace(v[1])])
    (b,) = store.add_faces("bob", [NewFace(v[2])])
    assert store.state() == StoreState(2, 2, 3, -1)
    store.save_classifier({"coef": np.ones((2, 3))}, 2)
    store.remove_face(b)
    assert store.state() == StoreState(3, 1, 2, 2) == StoreState(store.version(), *store.counts(), 2)


def test_the_kept_classifier_round_trips_with_its_version(store: FaceStore) -> None:
    assert store.load_classifier() is None and store.classifier_version() == -1
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "labels": np.array(["a", "b"])}
    store.save_classifier(arrays, 5)
    version, got = store.load_classifier() or (None, {})
    assert version == 5 == store.classifier_version()
    assert got["w"].tobytes() == arrays["w"].tobytes() and got["labels"].tolist() == ["a", "b"]
    store.save_classifier({"w": np.zeros(1, np.float32)}, 7)
    assert store.classifier_version() == 7


def test_list_pagination(store: FaceStore) -> None:
    v = unit_vectors(1)[0]
    names = [f"person-{i:03d}" for i in range(25)]
    for name in reversed(names):
        store.add_faces(name, [NewFace(v), NewFace(v)])
    pages, after = [], ""
    while page := store.list_identities(after=after, limit=10):
        pages.append(page)
        after = page[-1].identity
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [r.identity for p in pages for r in p] == names
    assert all(r.face_count == 2 for p in pages for r in p)
    assert store.list_identities(limit=0) == []


def test_identities_of(store: FaceStore) -> None:
    v = unit_vectors(3)
    a = store.add_faces("alice", [NewFace(v[0]), NewFace(v[1])])
    (b,) = store.add_faces("bob", [NewFace(v[2])])
    assert store.identities_of([b, a[1], -1, 999]) == {b: "bob", a[1]: "alice"}
    assert store.identities_of([]) == {}


def test_identities_of_many_ids(store: FaceStore) -> None:
    v = unit_vectors(1)[0]
    ids = store.add_many([(f"p{i}", [NewFace(v)]) for i in range(2500)])
    flat = [i for batch in ids for i in batch]
    got = store.identities_of(flat)
    assert len(got) == 2500 and got[flat[1234]] == "p1234"


def test_concurrent_add_faces_from_threads(where: str) -> None:
    v = unit_vectors(8)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    with open_store(where, MODEL) as s:

        def enroll(worker: int) -> None:
            try:
                got = []
                for i in range(20):
                    got += s.add_faces(
                        f"w{worker}-{i % 4}", [NewFace(v[worker]), NewFace(v[(worker + 1) % 8])]
                    )
                results[worker] = got
            except BaseException as exc:  # pragma: no cover - surfaced by the assert below
                errors.append(exc)

        threads = [threading.Thread(target=enroll, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        all_ids = [i for ids in results.values() for i in ids]
        assert len(all_ids) == len(set(all_ids)) == 8 * 20 * 2
        assert s.counts() == (8 * 4, 320)
        assert s.version() == 8 * 20
        assert s.integrity_check()
    with open_store(where, MODEL) as again:
        ids, vectors, identities = again.embeddings()
        assert sorted(all_ids) == ids.tolist()
        by_id = dict(zip(ids.tolist(), identities, strict=True))
        for worker, got in results.items():
            assert {by_id[i].split("-")[0] for i in got} == {f"w{worker}"}


def test_integrity_check_reports_corruption(db_path: Path) -> None:
    with Store(db_path, MODEL) as s:
        s.add_many([(f"p{i}", [NewFace(unit_vectors(1)[0])]) for i in range(300)])
        assert s.integrity_check()
        s._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = sqlite3.connect(db_path)
    (page_size,) = raw.execute("PRAGMA page_size").fetchone()
    (root,) = raw.execute("SELECT rootpage FROM sqlite_master WHERE name = 'faces_by_identity'").fetchone()
    raw.close()
    # Scribble over the secondary index's root page: the table is intact, the index no longer matches.
    with open(db_path, "r+b") as f:
        f.seek((root - 1) * page_size + 100)
        f.write(b"\xff" * 200)
    with Store(db_path, MODEL) as s:
        assert not s.integrity_check()


_ENROLL_FOREVER = """
import sys
import numpy as np
from gallery.rows import NewFace, StoreState
from gallery.stores import open_store

store = open_store(sys.argv[1], sys.argv[2])
rng = np.random.default_rng(int(sys.argv[3]))
i = 0
while True:
    v = rng.standard_normal(128).astype(np.float32)
    ids = store.add_faces(f"{sys.argv[3]}-{i % 7}", [NewFace(v / np.linalg.norm(v), f"sha-{i}")])
    # Acknowledge only after add_faces returned, i.e. after the commit.
    sys.stdout.write(f"{ids[0]} {sys.argv[3]}-{i % 7}\\n")
    sys.stdout.flush()
    i += 1
"""


def test_acknowledged_faces_survive_kill_9(where: str) -> None:
    root = Path(__file__).resolve().parents[2]
    rng = np.random.default_rng(7)
    acknowledged: dict[int, str] = {}
    for run in range(10):
        child = subprocess.Popen(
            [sys.executable, "-c", _ENROLL_FOREVER, where, MODEL, str(run)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        for _ in range(int(rng.integers(1, 60))):
            face_id, identity = child.stdout.readline().split()
            acknowledged[int(face_id)] = identity
        child.send_signal(signal.SIGKILL)
        with child.stdout:
            for line in child.stdout:  # acknowledgements already in the pipe count too
                if line.strip():
                    face_id, identity = line.split()
                    acknowledged[int(face_id)] = identity
        child.wait()
        with open_store(where, MODEL) as s:
            assert s.integrity_check()
            assert s.identities_of(list(acknowledged)) == acknowledged

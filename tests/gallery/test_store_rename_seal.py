"""Renaming an identity and sealing a store, on each store (SQLite, and PostgreSQL on a real server): a
rename is one logged change a follower replays to a level index; a seal made through one store object
(replica) refuses every write of every other at once, and no write commits after it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from facerec.errors import AlreadyExists, FacerecError, InvalidInput, NotFound, Unavailable
from gallery.changes import ChangeFollower
from gallery.rows import ADD, REMOVE, Change, FaceRow, IdentityRow, KeptPicture, NewFace
from gallery.stores import open_store

MODEL = "facenet-keras-128"


def unit_vectors(n: int, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Mirror:
    """A replica's index as the change follower keeps it: face id -> vector."""

    classifier_version = -1

    def __init__(self) -> None:
        self.vectors: dict[int, bytes] = {}

    def follow(
        self, face_ids: Sequence[int], present_ids: NDArray[np.int64], vectors: NDArray[np.float32]
    ) -> None:
        for i in face_ids:
            self.vectors.pop(int(i), None)
        self.vectors |= {int(i): v.tobytes() for i, v in zip(present_ids, vectors, strict=True)}

    def adopt_classifier(self) -> bool:
        return False

    def rebuild_index(self) -> int:
        raise AssertionError("a rename is followed change by change, never by a rebuild")


def test_a_rename_keeps_the_faces_and_is_logged_as_removed_then_added(store_location: str) -> None:
    v = unit_vectors(4)
    picture = KeptPicture(b"webp", "image/webp", 10, 10, (1.0, 1.0, 8.0, 8.0))
    with open_store(store_location, MODEL) as store, open_store(store_location, MODEL) as replica:
        ids = store.add_faces("alice", [NewFace(v[0], "sha-a", picture=picture), NewFace(v[1])])
        store.add_faces("bob", [NewFace(v[2])])
        mirror = Mirror()
        follower = ChangeFollower(mirror, replica, 0)
        follower.catch_up()
        before = store.version()

        row = store.rename_identity("alice", "alicia")
        assert (row.identity, row.face_count) == ("alicia", 2)
        assert row.created_at_ms == store.get_identity("alicia")[0].created_at_ms
        assert store.changes_since(before) == [Change(before + 1, REMOVE, ids), Change(before + 2, ADD, ids)]
        assert not store.has_identity("alice") and store.counts() == (2, 3)
        identity, faces = store.get_identity("alicia")
        assert [f.face_id for f in faces] == ids and faces[0].has_picture and faces[0].image_sha256 == "sha-a"
        assert faces[1].embedding.tobytes() == v[1].tobytes()
        assert store.find_face_by_image("alicia", "sha-a") == ids[0]

        # The other replica's follower ends level: every face, bit-exact, under its new name.
        assert follower.catch_up() == store.version()
        ids_now, vectors, _ = replica.embeddings()
        assert mirror.vectors == {int(i): vec.tobytes() for i, vec in zip(ids_now, vectors, strict=True)}
        assert replica.identities_of(ids) == {ids[0]: "alicia", ids[1]: "alicia"}
        assert store.integrity_check()


def test_a_rename_refuses_unknown_taken_and_empty_names_and_changes_nothing(store_location: str) -> None:
    v = unit_vectors(2)
    with open_store(store_location, MODEL) as store:
        store.add_faces("alice", [NewFace(v[0])])
        store.add_faces("bob", [NewFace(v[1])])
        version = store.version()
        with pytest.raises(NotFound, match=r"^No identity 'carol' in the gallery\.$"):
            store.rename_identity("carol", "dave")
        with pytest.raises(AlreadyExists, match=r"^An identity named 'bob' is in the gallery already\.$"):
            store.rename_identity("alice", "bob")
        with pytest.raises(InvalidInput):
            store.rename_identity("alice", "")
        assert store.rename_identity("alice", "alice") == IdentityRow(
            "alice", 1, store.get_identity("alice")[0].created_at_ms
        )
        assert store.version() == version
        assert [r.identity for r in store.list_identities()] == ["alice", "bob"]


def _writes(v: np.ndarray) -> list[tuple[str, object]]:
    """One of each write a sealed store refuses, as (name, call)."""
    row = FaceRow(1000, "zed", v[0], MODEL, "", None, 1)
    picture = KeptPicture(b"x", "image/webp", 1, 1, (0.0, 0.0, 1.0, 1.0))
    return [
        ("add_faces", lambda s: s.add_faces("carol", [NewFace(v[1])])),
        ("add_many", lambda s: s.add_many([("carol", [NewFace(v[1])])])),
        ("import_faces", lambda s: s.import_faces([IdentityRow("zed", 1, 1)], [row])),
        ("import_pictures", lambda s: s.import_pictures({1: picture}, {})),
        ("remove_face", lambda s: s.remove_face(1)),
        ("remove_identity", lambda s: s.remove_identity("alice")),
        ("rename_identity", lambda s: s.rename_identity("alice", "alicia")),
    ]


def test_a_sealed_store_refuses_every_write_of_every_replica_and_serves_reads(store_location: str) -> None:
    v = unit_vectors(3)
    with open_store(store_location, MODEL) as sealer, open_store(store_location, MODEL) as replica:
        [face] = sealer.add_faces("alice", [NewFace(v[0])])
        assert face == 1
        sealer.seal()
        version = replica.version()
        for name, write in _writes(v):
            with pytest.raises(Unavailable) as refused:
                write(replica)  # type: ignore[operator]
            assert (
                str(refused.value)
                == "The collection is moving to its re-embedded vectors; retry in a moment."
            ), name
            assert refused.value.retry_after_s is not None and refused.value.retry_after_s > 0
        # Reads go on, and the kept classifier may still be saved.
        assert replica.version() == version and replica.counts() == (1, 1)
        assert replica.get_identity("alice")[1][0].face_id == face
        replica.save_classifier({"w": np.ones(2, np.float32)}, version)
        assert replica.classifier_version() == version
    with open_store(store_location, MODEL) as reopened:  # durable
        with pytest.raises(Unavailable):
            reopened.add_faces("carol", [NewFace(v[1])])
        reopened.unseal()  # type: ignore[attr-defined]
        reopened.add_faces("carol", [NewFace(v[1])])
        assert reopened.counts() == (2, 2)


def test_no_write_of_another_replica_commits_after_the_seal_returns(store_location: str) -> None:
    v = unit_vectors(1)
    with open_store(store_location, MODEL) as sealer, open_store(store_location, MODEL) as writer:
        writer.add_faces("warm", [NewFace(v[0])])
        outcomes: list[FacerecError] = []
        going = threading.Event()

        def write() -> None:
            try:
                while True:
                    writer.add_faces("busy", [NewFace(v[0])])
                    going.set()
            except FacerecError as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=write) for _ in range(3)]
        for t in threads:
            t.start()
        assert going.wait(30)
        sealer.seal()
        sealed_at = sealer.version()
        for t in threads:
            t.join(30)
        assert [type(e) for e in outcomes] == [Unavailable] * 3
        assert writer.version() == sealed_at and sealer.changes_since(sealed_at) == []

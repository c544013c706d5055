"""open_backend on every store x index (SQLite or PostgreSQL, FAISS or Milvus on a real milvus-lite server):
the facade answers the same on each, a restart loads what was saved or rebuilds after a crash, checkpoints
save the index only when the store changed, and a replica follows another's changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from facerec.errors import NotFound
from gallery.backend import Backend, BackendSettings, open_backend, sidecar_paths
from gallery.gallery import Gallery
from gallery.index import FaceIndex
from gallery.index_milvus import MilvusSettings
from gallery.options import GalleryOptions
from gallery.results import SVM
from tests.support.engines import fresh_milvus_settings
from tests.support.gallery import (
    MODEL,
    FakeDetector,
    FakeEmbedder,
    World,
    brute_force_candidates,
    enroll_people,
)


@pytest.fixture()
def world() -> World:
    return World()


@dataclass(frozen=True)
class Where:
    """Where a gallery keeps its store and its index."""

    store: str
    milvus: MilvusSettings | None = None


@pytest.fixture(params=["faiss", "milvus-lite", "milvus-standalone"])
def where(request: pytest.FixtureRequest, store_location: str) -> Where:
    """Each test taking it runs on every store x index (Milvus: milvus-lite and the standalone server)."""
    if request.param == "faiss":
        return Where(store_location)
    server = request.getfixturevalue(request.param.replace("-", "_") + "_server")
    return Where(store_location, fresh_milvus_settings(server.uri))


_opened: list[Gallery] = []


@pytest.fixture(autouse=True)
def _close_galleries() -> Iterator[None]:
    """Closes the galleries a test opened (a PostgreSQL gallery holds connections and a follower thread)."""
    yield
    while _opened:
        _opened.pop().close()


def backend_on(where: Where) -> Backend:
    return open_backend(BackendSettings(where.store, MODEL, milvus=where.milvus, follow_poll_s=0.2))


def gallery_on(where: Where, world: World) -> tuple[Gallery, Backend]:
    backend = backend_on(where)
    gallery = Gallery(backend, FakeDetector(), FakeEmbedder(world), GalleryOptions())
    _opened.append(gallery)
    return gallery, backend


def test_the_facade_answers_the_same_on_every_backend(where: Where, world: World) -> None:
    g, _ = gallery_on(where, world)
    known, stranger = world.names[:4], world.names[4]
    enroll_people(g, world, known)
    for name in world.names:
        query = world.vectors[world.val[name][0]]
        answer = g.identify_embedding(query.tolist(), top_k=3)
        (face,) = answer.faces
        expected = brute_force_candidates(world, g, query)[:3]
        assert answer.method == SVM
        assert [c.identity for c in face.candidates] == [n for n, _ in expected]
        np.testing.assert_allclose([c.distance for c in face.candidates], [d for _, d in expected], atol=1e-4)
        assert (face.identity, face.known) == (("", False) if name == stranger else (name, True))

    assert g.remove_identity("person-1") == 8
    query = world.vectors[world.val["person-1"][0]].tolist()
    assert "person-1" not in {c.identity for c in g.identify_embedding(query, top_k=100).faces[0].candidates}
    assert all(hit.identity != "person-1" for hit in g.search(query, top_k=100))
    _, faces = g.get_identity("person-0")
    assert g.remove_face(faces[0].face_id) == "person-0"
    assert faces[0].face_id not in {
        h.face_id for h in g.search(world.vectors[world.train["person-0"][0]].tolist())
    }
    with pytest.raises(NotFound):
        g.remove_face(faces[0].face_id)
    assert g.stats().faces == g.stats().index_size == 23


def test_restart_loads_the_saved_index_and_svm_or_rebuilds_after_a_crash(where: Where, world: World) -> None:
    g, _ = gallery_on(where, world)
    enroll_people(g, world, world.names[:3])
    g.train()
    g.close()
    if where.milvus is None and not where.store.startswith("postgresql://"):
        # A SQLite gallery keeps its FAISS index and SVM beside the file (PostgreSQL keeps the SVM inside).
        assert Path(where.store + ".faiss").is_file() and Path(where.store + ".svm.npz").is_file()

    reopened, _ = gallery_on(where, world)
    stats = reopened.stats()
    assert (stats.faces, stats.index_size, stats.classifier_stale) == (24, 24, False)
    enroll_people(reopened, world, world.names[3:4])  # then "crash": no close, the saved index is stale
    crashed, _ = gallery_on(where, world)
    stats = crashed.stats()
    assert (stats.identities, stats.faces, stats.index_size, stats.classifier_stale) == (4, 32, 32, True)
    answer = crashed.identify_embedding(world.vectors[world.val["person-3"][0]].tolist())
    assert answer.faces[0].identity == "person-3"


def test_checkpoint_saves_the_index_only_when_the_store_changed(tmp_path: Path, world: World) -> None:
    where = Where(str(tmp_path / "g.sqlite"))
    g, backend = gallery_on(where, world)
    enroll_people(g, world, world.names[:2])
    index_path, _ = sidecar_paths(tmp_path / "g.sqlite")
    version = backend.store.version()
    assert (
        FaceIndex.load(index_path, version, store_id=backend.store.store_id) is None
    )  # nothing saved yet: a crash now would rebuild
    assert backend.checkpoint() is True
    assert backend.checkpoint() is False  # unchanged since
    saved = FaceIndex.load(index_path, version, store_id=backend.store.store_id)
    assert saved is not None and saved.ntotal == g.stats().faces
    enroll_people(g, world, world.names[2:3])
    assert backend.checkpoint() is True
    # No close(): as after a crash, the next start finds an index matching the store and loads it.
    again, again_backend = gallery_on(where, world)
    assert again_backend.checkpoint() is False
    assert again.stats().index_size == again.stats().faces == g.stats().faces


def test_a_replica_follows_the_changes_and_the_svm_of_another(postgres_url: str, world: World) -> None:
    where = Where(postgres_url)
    a, a_backend = gallery_on(where, world)
    b, b_backend = gallery_on(where, world)
    enroll_people(a, world, world.names[:2])
    a.train()
    assert a_backend.classifier_version == a_backend.store.version()
    follower = b_backend.follower
    assert follower is not None
    deadline = time.monotonic() + 30
    with follower.caught_up:
        while b.stats().index_size != 16 or b_backend.classifier_version != a_backend.classifier_version:
            assert time.monotonic() < deadline, "the replica did not follow within 30 s"
            follower.caught_up.wait(0.5)
    # b adopted a's fit (no refit of its own) and its index holds a's faces.
    answer = b.identify_embedding(world.vectors[world.val["person-1"][0]].tolist())
    assert answer.method == SVM and answer.faces[0].identity == "person-1" and not answer.classifier_stale

"""facerec collections on Milvus, on both engines (milvus-lite and the Milvus standalone server): each
collection generation has a Milvus collection of its own, named from ids, so a face of collection A never
answers in B, dropping A leaves B whole, and a re-embed's new generation (another model, another dimension)
lives beside the old one until the old is dropped. Also the backend's drop_index for FAISS."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facerec.errors import InvalidInput, Precondition
from gallery.backend import (
    Backend,
    BackendSettings,
    drop_index,
    drop_milvus_generation,
    milvus_collection_for,
    open_backend,
    sidecar_paths,
)
from gallery.index_milvus import MilvusIndex, MilvusSettings, collection_name
from gallery.rows import NewFace
from gallery.stores import open_store
from tests.support.engines import milvus_collection_names

MODEL, INT8 = "facenet-keras-128", "facenet-int8-64"


def unit_vectors(n: int, dim: int = 128, seed: int = 3) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def milvus_names(settings: MilvusSettings) -> set[str]:
    return milvus_collection_names(settings.uri)


class Generations:
    """Opens backends of facerec collection generations (each its own SQLite store, its own Milvus
    collection) as the CollectionManager does, and closes them at the end."""

    def __init__(self, milvus: MilvusSettings, tmp_path: Path) -> None:
        self.milvus, self.tmp_path, self.opened = milvus, tmp_path, list[Backend]()

    def settings(
        self, collection_id: int, generation: int, model: str = MODEL, dim: int = 128
    ) -> BackendSettings:
        return BackendSettings(
            str(self.tmp_path / f"c{collection_id}-g{generation}.sqlite"),
            model,
            dim,
            milvus=self.milvus,
            reconcile_s=3600,
            milvus_collection=milvus_collection_for(self.milvus, collection_id, generation),
        )

    def open(self, collection_id: int, generation: int, model: str = MODEL, dim: int = 128) -> Backend:
        backend = open_backend(self.settings(collection_id, generation, model, dim))
        self.opened.append(backend)
        return backend

    def close(self) -> None:
        for backend in self.opened:
            backend.close()


@pytest.fixture
def generations(milvus_settings_each: MilvusSettings, tmp_path: Path) -> Iterator[Generations]:
    opened = Generations(milvus_settings_each, tmp_path)
    yield opened
    opened.close()


def enroll(backend: Backend, identity: str, vectors: np.ndarray) -> list[int]:
    """Commits faces to the store, then writes them to the index (the facade's order)."""
    ids = backend.store.add_faces(identity, [NewFace(v) for v in vectors])
    index = backend.index
    index.add(np.array(ids, dtype=np.int64), vectors)
    # A write Milvus missed (a timeout on a loaded machine) is the reconciler's to redo, within about a second.
    deadline = time.monotonic() + 60
    while getattr(index, "missed_writes", 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    return ids


def test_milvus_collection_names_come_from_ids_and_the_default_keeps_the_configured_name() -> None:
    assert collection_name("facerec_faces", 1, 1) == "facerec_faces"  # an existing deployment's index
    assert collection_name("facerec_faces", 1, 2) == "facerec_faces_c1_g2"
    assert collection_name("facerec_faces", 2, 1) == "facerec_faces_c2_g1"
    assert collection_name("site_b", 12, 3) == "site_b_c12_g3"
    assert milvus_collection_for(None, 2, 1) == ""  # FAISS: nothing to name
    with pytest.raises(InvalidInput):
        collection_name("facerec_faces", 0, 1)
    settings = BackendSettings(
        "g.sqlite", MODEL, milvus=MilvusSettings("http://h:1"), milvus_collection="x_c2_g1"
    )
    assert settings.shared_index is not None and settings.shared_index.collection == "x_c2_g1"
    assert BackendSettings(
        "g.sqlite", MODEL, milvus=MilvusSettings("http://h:1")
    ).shared_index == MilvusSettings("http://h:1")


def test_a_face_of_one_collection_never_answers_in_another(generations: Generations) -> None:
    a, b = generations.open(2, 1), generations.open(3, 1)
    v = unit_vectors(40)
    in_a = enroll(a, "alice", v[:20])
    in_b = enroll(b, "bob", v[20:])
    # Every face of A, searched in B with k above B's size: only B's faces come back, and the reverse.
    _, found_in_b = b.index.search(v[:20], 30)
    assert set(found_in_b.ravel()) - {-1} <= set(in_b)
    _, found_in_a = a.index.search(v[20:], 30)
    assert set(found_in_a.ravel()) - {-1} <= set(in_a)
    # Each finds its own faces exactly.
    _, own = a.index.search(v[:20], 1)
    assert own[:, 0].tolist() == in_a
    assert a.index.ntotal == 20 and b.index.ntotal == 20
    assert a.index.all_ids().tolist() == sorted(in_a) and b.index.all_ids().tolist() == sorted(in_b)


def test_dropping_a_collection_removes_its_vectors_and_leaves_the_other_whole(
    generations: Generations,
) -> None:
    a, b = generations.open(2, 1), generations.open(3, 1)
    v = unit_vectors(10)
    enroll(a, "alice", v[:5])
    in_b = enroll(b, "bob", v[5:])
    name_a = generations.settings(2, 1).shared_index.collection  # type: ignore[union-attr]
    assert name_a in milvus_names(generations.milvus)
    a.close()
    assert drop_index(generations.settings(2, 1)) is True
    assert name_a not in milvus_names(generations.milvus)
    _, found = b.index.search(v[5:], 1)
    assert found[:, 0].tolist() == in_b and b.index.ntotal == 5
    assert drop_index(generations.settings(2, 1)) is False  # again: nothing left, no error
    # What the CollectionManager's drop_store calls, by ids alone.
    name_b = generations.settings(3, 1).shared_index.collection  # type: ignore[union-attr]
    b.close()
    assert drop_milvus_generation(generations.milvus, 3, 1) is True
    assert name_b not in milvus_names(generations.milvus)
    assert drop_milvus_generation(None, 3, 1) is False


def test_a_new_generation_with_another_model_lives_beside_the_old_until_it_is_dropped(
    generations: Generations,
) -> None:
    old = generations.open(2, 1)
    v128, v64 = unit_vectors(8), unit_vectors(8, dim=64)
    enroll(old, "alice", v128)
    # A re-embed builds generation 2 under another model with another dimension, beside the serving one.
    new = generations.open(2, 2, INT8, 64)
    ids = enroll(new, "alice", v64)
    _, from_old = old.index.search(v128[:1], 8)
    _, from_new = new.index.search(v64[:1], 8)
    assert from_new[0, 0] == ids[0] and old.index.dim == 128 and new.index.dim == 64
    assert (from_old >= 0).sum() == 8 and (from_new >= 0).sum() == 8
    # The switch done, the old generation goes; the new one keeps serving.
    old.close()
    assert drop_index(generations.settings(2, 1)) is True
    _, again = new.index.search(v64, 1)
    assert again[:, 0].tolist() == ids


def test_a_generation_filled_through_its_store_is_searchable_as_soon_as_its_backend_opens(
    generations: Generations,
) -> None:
    # A re-embed writes the next generation's store alone; the collection switches to it by opening it.
    v = unit_vectors(50)
    with open_store(generations.settings(2, 2).store, MODEL) as store:
        ids = store.add_faces("alice", [NewFace(x) for x in v])
    new = generations.open(2, 2)  # reconcile_s=3600: only a pass at open can have filled it
    assert new.index.ntotal == 50
    _, found = new.index.search(v, 1)
    assert found[:, 0].tolist() == ids


def test_replicas_opening_the_same_new_generation_at_once_share_its_milvus_collection(
    milvus_settings_each: MilvusSettings,
) -> None:
    # Two replicas' followers open a re-embed's new generation (or a new collection) at the same moment.
    opened: list[MilvusIndex] = []
    failed: list[BaseException] = []

    def open_it() -> None:
        try:
            opened.append(MilvusIndex(milvus_settings_each, MODEL, 128, lambda ids: {i: "ann" for i in ids}))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failed and len(opened) == 4
    opened[0].add(np.array([1]), unit_vectors(1))
    assert opened[3].search(unit_vectors(1), 1)[1][0, 0] == 1
    for index in opened:
        index.close()


def test_an_existing_milvus_collection_of_another_dimension_is_refused(
    milvus_settings_each: MilvusSettings,
) -> None:
    first = MilvusIndex(milvus_settings_each, MODEL, 128, lambda ids: {})
    first.close()
    with pytest.raises(Precondition, match=r"holds 128-dimensional vectors, not 64\.$"):
        MilvusIndex(milvus_settings_each, INT8, 64, lambda ids: {})


def test_drop_index_without_milvus_removes_the_saved_faiss_index_and_svm(tmp_path: Path) -> None:
    settings = BackendSettings(str(tmp_path / "c2-g1.sqlite"), MODEL)
    backend = open_backend(settings)
    enroll(backend, "alice", unit_vectors(3))
    backend.close()  # saves the index (and its side file) beside the store
    index_path, _ = sidecar_paths(tmp_path / "c2-g1.sqlite")
    assert index_path.exists()
    assert drop_index(settings) is True
    assert not [p for p in tmp_path.iterdir() if ".faiss" in p.name or ".svm" in p.name]
    assert drop_index(settings) is False

"""The Milvus index on real Milvus servers (milvus-lite and the Milvus standalone server): searches equal
brute force, removals, what Milvus says of its index, Unavailable while it is down, and the reconciler
bringing it level with the store."""

from __future__ import annotations

import time

import numpy as np
import pytest

from facerec.errors import InvalidInput, Unavailable
from gallery.index_milvus import MilvusIndex, MilvusSettings
from gallery.reconcile import Reconciler
from gallery.rows import NewFace
from gallery.stores import open_store
from tests.support.engines import MilvusLiteServer, MilvusStandaloneServer

MODEL = "facenet-keras-128"
ENGINES = {"lite": MilvusLiteServer, "standalone": MilvusStandaloneServer}


def unit_vectors(n: int, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(xb: np.ndarray, ids: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.linalg.norm(xq[:, None, :] - xb[None, :, :], axis=2)
    order = np.argsort(d, axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), ids[order]


def named(ids: list[int]) -> dict[int, str]:
    return {int(i): f"person-{int(i) % 7}" for i in ids}


def test_search_equals_brute_force_and_removed_faces_are_gone(milvus_settings_each: MilvusSettings) -> None:
    milvus_settings = milvus_settings_each
    index = MilvusIndex(milvus_settings, MODEL, 128, named)
    # milvus-lite may ignore index parameters; FLAT is what the tests rely on, so check it took.
    assert index.describe_index()["index_type"] == "FLAT"
    xb, ids = unit_vectors(300), np.arange(1, 301, dtype=np.int64)
    index.add(ids, xb)
    assert index.ntotal == 300
    xq = unit_vectors(5, seed=8)
    dist, got = index.search(xq, 10)
    want_d, want_i = brute_force(xb, ids, xq, 10)
    assert (got == want_i).all()
    np.testing.assert_allclose(dist, want_d, atol=1e-4)
    index.remove(want_i[:, 0].tolist())
    _, again = index.search(xq, 10)
    assert not set(again.ravel()) & set(want_i[:, 0])
    assert index.ntotal == 295
    # Fewer faces than asked: padded as FAISS pads.
    small = MilvusIndex(
        MilvusSettings(milvus_settings.uri, collection=milvus_settings.collection + "_s", index_type="FLAT"),
        MODEL,
        128,
        named,
    )
    small.add(ids[:2], xb[:2])
    d, i = small.search(xq[:1], 4)
    assert i[0, 2:].tolist() == [-1, -1] and np.isinf(d[0, 2:]).all()
    with pytest.raises(InvalidInput):
        small.search(xq[:1, :64], 4)


# On milvus-lite only: stopping and restarting the real server costs ~50 s here, and the real server's
# outage is tested end to end by tests/e2e/test_milvus_replicas.py (two replicas, the same path).
@pytest.mark.parametrize("engine", ["lite"])
def test_a_stopped_milvus_is_unavailable_and_the_reconciler_catches_up(engine: str, tmp_path) -> None:
    server = ENGINES[engine]()
    try:
        store = open_store(tmp_path / "g.sqlite", MODEL)
        settings = MilvusSettings(server.uri, index_type="FLAT", timeout_s=5.0)
        index = MilvusIndex(settings, MODEL, 128, store.identities_of)
        v = unit_vectors(4)
        before = store.add_faces("alice", [NewFace(v[0]), NewFace(v[1])])
        index.add(np.array(before), v[:2])
        server.stop()
        with pytest.raises(Unavailable, match=r"^The Milvus index at .* cannot be reached\.$"):
            index.search(v[:1], 2)
        # Writes while it is down are missed, not raised: the store committed, the reconciler redoes them.
        during = store.add_faces("bob", [NewFace(v[2])])
        index.add(np.array(during), v[2:3])
        store.remove_face(before[0])
        index.remove([before[0]])
        assert index.missed_writes == 2
        reconciler = Reconciler(store, index, interval_s=3600)  # a pass at start, then after missed writes
        server.start()
        # Its channel reconnects with backoff: the reconciler retries every second until a pass succeeds.
        reconciler.start()
        deadline = time.monotonic() + 60
        while index.missed_writes and time.monotonic() < deadline:
            time.sleep(0.05)
        reconciler.stop()
        assert index.missed_writes == 0 and reconciler.passes >= 1
        assert index.all_ids().tolist() == store.face_ids().tolist() == [before[1], during[0]]
        _, got = index.search(v[2:3], 1)
        assert got[0, 0] == during[0]
        assert Reconciler(store, index).reconcile() == (0, 0)
        store.close()
    finally:
        server.close()


def test_reads_are_session_consistent_except_the_first_after_a_write(
    milvus_settings_each: MilvusSettings,
) -> None:
    """Strong reads wait for Milvus's next time tick (~200 ms a search on a Milvus server), so reads are
    Session; the first after this index wrote is Strong, so its own adds and removals are seen."""
    index = MilvusIndex(milvus_settings_each, MODEL, 128, named)
    asked: list[object] = []
    client = index._client
    for method in ("search", "query"):
        real = getattr(client, method)

        def spy(*args: object, _real=real, **kwargs: object) -> object:
            asked.append(kwargs.get("consistency_level"))
            return _real(*args, **kwargs)

        setattr(client, method, spy)
    v = unit_vectors(3)
    index.add(np.array([1, 2, 3]), v)
    _, found = index.search(v[2:3], 1)
    assert found[0, 0] == 3 and index.ntotal == 3
    index.remove([3])
    _, found = index.search(v[2:3], 3)
    assert 3 not in found[0] and index.ntotal == 2
    index.search(v[:1], 1)
    assert asked == ["Strong", "Session", "Strong", "Session", "Session"]

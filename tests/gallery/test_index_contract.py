"""The VectorIndex port's contract (gallery/ports.py), run on each index: FAISS flat, FAISS IVF, and Milvus on
a real milvus-lite server. Seeded vectors checked against brute-force numpy where the engine is exact;
what is specific to one engine stays in test_index.py and test_index_milvus.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from facerec.errors import InvalidInput
from gallery.index import FaceIndex
from gallery.index_milvus import MilvusIndex
from gallery.ports import VectorIndex
from tests.support.engines import fresh_milvus_settings

DIM = 128
MODEL = "facenet-keras-128"


def unit_vectors(n: int, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(xb: np.ndarray, ids: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.linalg.norm(xq[:, None, :] - xb[None, :, :], axis=2)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), ids[order]


def everyone(face_ids: Sequence[int]) -> dict[int, str]:
    return {int(i): f"person-{int(i) % 7}" for i in face_ids}


@pytest.fixture(params=["flat", "ivf", "milvus-lite", "milvus-standalone"])
def index(request: pytest.FixtureRequest) -> Iterator[VectorIndex]:
    """An empty index of each kind. IVF from 500 faces on; it searches again exactly a query whose
    approximate best is above 0.5, so a stored vector always finds itself."""
    if request.param == "flat":
        yield FaceIndex(DIM)
    elif request.param == "ivf":
        yield FaceIndex(DIM, ivf_min_size=500, exact_beyond=0.5)
    else:
        server = request.getfixturevalue(request.param.replace("-", "_") + "_server")
        milvus = MilvusIndex(fresh_milvus_settings(server.uri), MODEL, DIM, everyone)
        yield milvus
        milvus.close()


def test_an_empty_index_pads_its_answers(index: VectorIndex) -> None:
    assert index.ntotal == 0 and index.all_ids().tolist() == [] and index.dim == DIM
    dist, ids = index.search(unit_vectors(2), 3)
    assert ids.tolist() == [[-1] * 3] * 2 and np.isinf(dist).all()


def test_added_faces_are_found_and_removed_ones_never_again(index: VectorIndex) -> None:
    xb = unit_vectors(600)
    ids = np.arange(1, 601, dtype=np.int64) * 3  # sparse, like ids left by removals
    index.add(ids[:300], xb[:300])
    index.add(ids[300:], xb[300:])
    assert index.ntotal == 600 and index.all_ids().tolist() == ids.tolist()
    assert index.kind in ("flat", "ivf", "milvus") and index.detail

    dist, found = index.search(xb[::50], 5)
    assert dist.shape == found.shape == (12, 5) and dist.dtype == np.float32 and found.dtype == np.int64
    assert found[:, 0].tolist() == ids[::50].tolist()  # each stored vector finds itself first
    np.testing.assert_allclose(dist[:, 0], 0.0, atol=1e-3)
    assert np.all(np.diff(dist, axis=1) >= 0)
    if index.kind != "ivf":  # the exact engines equal brute force on any query
        xq = unit_vectors(5, seed=8)
        got_d, got_i = index.search(xq, 10)
        want_d, want_i = brute_force(xb, ids, xq, 10)
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_d, want_d, atol=1e-4)

    gone = ids[::4]
    index.remove(gone.tolist())
    _, again = index.search(xb[::4][:20], 10)
    assert not np.isin(again, gone).any() and (again >= 0).all()
    assert index.ntotal == 450 and index.all_ids().tolist() == np.setdiff1d(ids, gone).tolist()


def test_bad_queries_are_invalid_and_change_nothing(index: VectorIndex) -> None:
    xb = unit_vectors(10)
    index.add(np.arange(1, 11, dtype=np.int64), xb)
    with pytest.raises(InvalidInput):
        index.search(xb[:1, :64], 1)  # the wrong dimension
    with pytest.raises(InvalidInput):
        index.search(xb[:1], 0)
    assert index.ntotal == 10

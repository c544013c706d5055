"""The embedding batcher: concurrent callers share model calls and each gets its own vectors back."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from embedding_service.batcher import EmbeddingBatcher
from embedding_service.embedder import Embedder
from embedding_service.preprocessing import prepare_batch
from facerec.errors import DeadlineExceeded, Overloaded
from tests.support.embedding import FakeInfer, fake_vectors, make_settings, unit


def crops_for(n: int, seed: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(60 + i, 50 + 2 * i, 3), dtype=np.uint8) for i in range(n)]


def test_concurrent_single_faces_share_calls_and_keep_their_own_vector(
    fake_embedder: Embedder, fake_infer: FakeInfer
) -> None:
    crops = crops_for(16)
    expected = unit(fake_vectors(prepare_batch(crops)))
    batcher = EmbeddingBatcher(fake_embedder, max_batch=32, max_delay_ms=50)
    fake_infer.gate.clear()  # hold the first call so the others queue up behind it
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(batcher.embed, [crop]) for crop in crops]
        fake_infer.entered.wait(5)
        fake_infer.gate.set()
        results = [f.result(10) for f in futures]
    batcher.close()
    for i, outcome in enumerate(results):
        assert len(outcome) == 1
        np.testing.assert_allclose(outcome[0], expected[i], atol=1e-6)
    assert batcher.stats.calls == len(fake_infer.batch_sizes) < 16
    assert batcher.stats.items == sum(fake_infer.batch_sizes) == 16


def test_a_request_larger_than_max_batch_is_split_and_kept_in_order(
    fake_embedder: Embedder, fake_infer: FakeInfer
) -> None:
    crops = crops_for(10)
    batcher = EmbeddingBatcher(fake_embedder, max_batch=4, max_delay_ms=1)
    out = batcher.embed(crops)
    batcher.close()
    np.testing.assert_allclose(np.stack(out), unit(fake_vectors(prepare_batch(crops))), atol=1e-6)
    assert fake_infer.batch_sizes == [4, 4, 2]


def test_batching_off_gives_every_face_its_own_call(
    tmp_path, fake_embedder: Embedder, fake_infer: FakeInfer
) -> None:
    settings = make_settings(tmp_path, batching=False, max_batch=32)
    batcher = EmbeddingBatcher.from_settings(fake_embedder, settings)
    fake_infer.gate.clear()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batcher.embed, [crop]) for crop in crops_for(8)]
        fake_infer.entered.wait(5)
        fake_infer.gate.set()
        for f in futures:
            f.result(10)
    batcher.close()
    assert batcher.max_batch == 1
    assert fake_infer.batch_sizes == [1] * 8


def test_an_expired_request_is_dropped_before_the_model(
    fake_embedder: Embedder, fake_infer: FakeInfer
) -> None:
    batcher = EmbeddingBatcher(fake_embedder, max_batch=1, max_delay_ms=0)
    fake_infer.gate.clear()
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batcher.embed, crops_for(1))
        fake_infer.entered.wait(5)
        late = pool.submit(batcher.embed, crops_for(1, seed=8), 0.05)
        cancelled = threading.Event()
        gone = pool.submit(batcher.embed, crops_for(1, seed=9), None, lambda: not cancelled.is_set())
        cancelled.set()
        while batcher.queue_depth() < 2:
            threading.Event().wait(0.01)
        threading.Event().wait(0.1)  # let the deadline pass while the first call holds the model
        fake_infer.gate.set()
        assert len(first.result(10)) == 1
        with pytest.raises(DeadlineExceeded):
            late.result(10)
        with pytest.raises(DeadlineExceeded):
            gone.result(10)
    batcher.close()
    assert fake_infer.batch_sizes == [1]
    assert batcher.stats.dropped == 2


def test_a_full_queue_is_refused_then_recovers(fake_embedder: Embedder, fake_infer: FakeInfer) -> None:
    batcher = EmbeddingBatcher(fake_embedder, max_batch=1, max_delay_ms=0, max_queue=1)
    fake_infer.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(batcher.embed, crops_for(1))
        fake_infer.entered.wait(5)
        waiting = pool.submit(batcher.embed, crops_for(1, seed=8))
        while batcher.queue_depth() < 1:
            threading.Event().wait(0.01)
        with pytest.raises(Overloaded):
            batcher.embed(crops_for(1, seed=9))
        fake_infer.gate.set()
        running.result(10)
        waiting.result(10)
    assert len(batcher.embed(crops_for(1))) == 1
    batcher.close()
    assert batcher.stats.rejected == 1


def test_warm_up_runs_the_model_but_is_not_counted(fake_embedder: Embedder, fake_infer: FakeInfer) -> None:
    batcher = EmbeddingBatcher(fake_embedder, max_batch=8)
    batcher.warm_up()
    batcher.close()
    assert fake_infer.batch_sizes == [8, 1]
    assert batcher.stats.calls == 0

"""The batcher merges concurrent requests, keeps each caller's results, bounds its queue, drops expired work."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from facerec.batching import Batcher
from facerec.errors import DeadlineExceeded, InvalidInput, Overloaded


def test_concurrent_requests_share_calls_and_get_their_own_results() -> None:
    calls: list[int] = []

    def double(items: list[int]) -> list[int]:
        calls.append(len(items))
        time.sleep(0.02)
        return [2 * x for x in items]

    batcher = Batcher(double, max_batch=32, max_delay_ms=20)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: batcher.submit([i, i + 100]), range(16)))
    batcher.close()
    assert results == [[2 * i, 2 * (i + 100)] for i in range(16)]
    assert len(calls) < 16
    assert sum(calls) == 32
    assert batcher.stats.calls == len(calls)


def test_large_request_is_chunked_to_max_batch() -> None:
    sizes: list[int] = []
    batcher = Batcher(lambda items: sizes.append(len(items)) or list(items), max_batch=4, max_delay_ms=1)
    assert batcher.submit(list(range(10))) == list(range(10))
    batcher.close()
    assert sizes == [4, 4, 2]


def test_per_item_errors_stay_with_their_item() -> None:
    def check(items: list[int]) -> list[int | InvalidInput]:
        return [InvalidInput("negative") if x < 0 else x for x in items]

    batcher = Batcher(check, max_batch=8, max_delay_ms=1)
    out = batcher.submit([1, -1, 2])
    batcher.close()
    assert out[0] == 1 and out[2] == 2
    assert isinstance(out[1], InvalidInput)


def test_full_queue_is_rejected_at_once_and_recovers() -> None:
    release = threading.Event()
    running = threading.Event()

    def slow(items: list[int]) -> list[int]:
        running.set()
        release.wait(30)
        return list(items)

    batcher = Batcher(slow, max_batch=1, max_delay_ms=0, max_queue=2)
    pool = ThreadPoolExecutor(4)
    calls = [pool.submit(batcher.submit, [0])]
    assert running.wait(30)  # the worker holds request 0
    calls += [pool.submit(batcher.submit, [i]) for i in (1, 2)]
    while batcher.queue_depth() < 2:  # requests 1 and 2 fill the queue
        time.sleep(0.01)
    # Rejected while the worker is still blocked: the caller does not wait for room.
    with pytest.raises(Overloaded):
        batcher.submit([99])
    assert not release.is_set()
    release.set()
    assert [f.result(30) for f in calls] == [[0], [1], [2]]
    assert batcher.submit([7]) == [7]
    assert batcher.stats.rejected == 1
    batcher.close()
    pool.shutdown()


def test_expired_and_cancelled_requests_are_dropped_before_inference() -> None:
    seen: list[int] = []
    gate = threading.Event()
    running = threading.Event()

    def record(items: list[int]) -> list[int]:
        running.set()
        gate.wait(30)
        seen.extend(items)
        return list(items)

    batcher = Batcher(record, max_batch=1, max_delay_ms=0)
    pool = ThreadPoolExecutor(3)
    blocker = pool.submit(batcher.submit, [0])
    assert running.wait(30)  # the worker holds request 0 until the gate opens
    expired = pool.submit(batcher.submit, [1], 0.05)
    cancelled = pool.submit(batcher.submit, [2], None, lambda: False)
    while batcher.queue_depth() < 2:
        time.sleep(0.01)
    time.sleep(0.1)  # past request 1's 50 ms deadline while it waits in the queue
    gate.set()
    assert blocker.result(30) == [0]
    with pytest.raises(DeadlineExceeded):
        expired.result(30)
    with pytest.raises(DeadlineExceeded):
        cancelled.result(30)
    assert seen == [0]
    assert batcher.stats.dropped == 2
    batcher.close()
    pool.shutdown()


def test_a_failing_batch_fails_only_its_requests() -> None:
    def explode(items: list[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("boom")
        return list(items)

    batcher = Batcher(explode, max_batch=1, max_delay_ms=0)
    with pytest.raises(RuntimeError):
        batcher.submit([13])
    assert batcher.submit([1]) == [1]
    batcher.close()

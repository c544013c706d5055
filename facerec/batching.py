"""A bounded request queue with one worker thread that merges concurrent requests into model batches.

Pure (no grpc): the servicers submit their items and block; one thread owns the model. Requests
whose deadline passed or that were cancelled while waiting are dropped before inference.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeAlias, TypeVar, Union

from facerec.errors import DeadlineExceeded, FacerecError, Overloaded, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# What a batch function returns per item: the result, or the error that item alone gets.
Outcome: TypeAlias = Union[R, FacerecError]  # noqa: UP007 (a generic alias needs Union)


@dataclass
class _Request(Generic[T, R]):
    items: Sequence[T]
    deadline: float | None  # time.monotonic() seconds, or None
    is_active: Callable[[], bool]
    future: Future[list[Outcome[R]]] = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """Counters that make batching observable: model calls and items per call."""

    calls: int = 0
    items: int = 0
    dropped: int = 0
    rejected: int = 0
    largest_batch: int = 0


class Batcher(Generic[T, R]):
    """Merges submitted requests into calls of `run_batch` on up to `max_batch` items.

    run_batch(items) -> one Outcome per item, in order. A worker waits at most `max_delay_ms` after
    the first queued request for more to arrive. At most `max_queue` requests wait; beyond that
    submit() raises Overloaded at once. A request larger than max_batch is run in max_batch chunks.
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], list[Outcome[R]]],
        max_batch: int = 32,
        max_delay_ms: float = 3.0,
        max_queue: int = 256,
        name: str = "batcher",
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self._max_delay_s = max_delay_ms / 1000.0
        self._queue: queue.Queue[_Request[T, R] | None] = queue.Queue(maxsize=max_queue)
        self._name = name
        self._on_batch = on_batch  # e.g. a metrics histogram of items per model call
        self._stats = BatchStats()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._stopped = threading.Event()
        self._thread.start()

    @property
    def stats(self) -> BatchStats:
        with self._lock:
            return BatchStats(**vars(self._stats))

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def submit(
        self,
        items: Sequence[T],
        timeout_s: float | None = None,
        is_active: Callable[[], bool] = lambda: True,
    ) -> list[Outcome[R]]:
        """Blocks until every item has its outcome. Raises Overloaded, DeadlineExceeded or Unavailable."""
        if not items:
            return []
        if self._stopped.is_set():
            raise Unavailable(f"The {self._name} is shutting down.")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        request: _Request[T, R] = _Request(items=items, deadline=deadline, is_active=is_active)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            with self._lock:
                self._stats.rejected += 1
            raise Overloaded(f"The {self._name} queue is full; retry later.") from None
        return request.future.result()

    def close(self) -> None:
        """Stops the worker after the requests already queued."""
        self._stopped.set()
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            pass
        self._thread.join(timeout=10.0)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            pending = [first]
            size = len(first.items)
            flush_at = first.enqueued + self._max_delay_s
            while size < self.max_batch:
                remaining = flush_at - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put_nowait(None)
                    break
                pending.append(nxt)
                size += len(nxt.items)
            self._run(pending)

    def _run(self, pending: list[_Request[T, R]]) -> None:
        now = time.monotonic()
        live = []
        for request in pending:
            if request.deadline is not None and now > request.deadline:
                request.future.set_exception(
                    DeadlineExceeded("The deadline passed while the request was queued.")
                )
            elif not request.is_active():
                request.future.set_exception(DeadlineExceeded("The call was cancelled while it was queued."))
            else:
                live.append(request)
        if len(live) < len(pending):
            with self._lock:
                self._stats.dropped += len(pending) - len(live)
        items = [item for request in live for item in request.items]
        outcomes: list[Outcome[R]] = []
        try:
            for start in range(0, len(items), self.max_batch):
                chunk = items[start : start + self.max_batch]
                results = self._run_batch(chunk)
                if len(results) != len(chunk):
                    raise RuntimeError(f"{self._name}: batch of {len(chunk)} gave {len(results)} results")
                outcomes.extend(results)
                self._on_batch(len(chunk))
                with self._lock:
                    self._stats.calls += 1
                    self._stats.items += len(chunk)
                    self._stats.largest_batch = max(self._stats.largest_batch, len(chunk))
        except Exception as exc:
            log.exception("%s: batch failed", self._name)
            for request in live:
                request.future.set_exception(exc)
            return
        offset = 0
        for request in live:
            request.future.set_result(outcomes[offset : offset + len(request.items)])
            offset += len(request.items)

"""Dynamic batching for the embedder: concurrent callers' faces share FaceNet calls (facerec.batching.Batcher).

Pure (no grpc): the servicer passes the call's remaining time and its is_active check through, so a
request whose deadline passed or that was cancelled while queued never reaches the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from embedding_service.config import Settings
from embedding_service.embedder import Embedder
from facerec.batching import Batcher, BatchStats, Outcome

log = logging.getLogger(__name__)


class EmbeddingBatcher:
    """Merges concurrent embed() calls into model calls of up to max_batch faces, one worker thread.

    Crops are resized and standardized in the caller's thread, so the worker only runs the model.
    max_batch=1 switches batching off: every face gets its own model call.
    """

    def __init__(
        self,
        embedder: Embedder,
        max_batch: int = 32,
        max_delay_ms: float = 3.0,
        max_queue: int = 256,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        """on_batch(faces) is called for every model call (e.g. ServiceMetrics.observe_batch)."""
        self.embedder = embedder
        self._batcher: Batcher[NDArray[np.float32], NDArray[np.float32]] = Batcher(
            self._run,
            max_batch=max_batch,
            max_delay_ms=max_delay_ms,
            max_queue=max_queue,
            name="embedder",
            on_batch=on_batch,
        )

    @classmethod
    def from_settings(
        cls, embedder: Embedder, settings: Settings, on_batch: Callable[[int], None] = lambda size: None
    ) -> EmbeddingBatcher:
        return cls(
            embedder,
            max_batch=settings.effective_max_batch,
            max_delay_ms=settings.max_delay_ms if settings.batching else 0.0,
            max_queue=settings.max_queue,
            on_batch=on_batch,
        )

    @property
    def max_batch(self) -> int:
        return self._batcher.max_batch

    @property
    def stats(self) -> BatchStats:
        """calls = model calls, items = faces embedded, since start (warm-up not counted)."""
        return self._batcher.stats

    def queue_depth(self) -> int:
        return self._batcher.queue_depth()

    def embed(
        self,
        crops: Sequence[NDArray[np.uint8]],
        timeout_s: float | None = None,
        is_active: Callable[[], bool] = lambda: True,
    ) -> list[Outcome[NDArray[np.float32]]]:
        """crops: (h, w, 3) uint8 RGB each → per crop a (128,) float32 unit vector or the error it alone got.

        Blocks until done. Raises Overloaded (queue full), DeadlineExceeded (expired or cancelled
        while queued) or Unavailable (shutting down).
        """
        if not crops:
            return []
        prepared = self.embedder.prepare(crops)
        return self._batcher.submit(list(prepared), timeout_s=timeout_s, is_active=is_active)

    def warm_up(self) -> None:
        """Runs one full batch and one single face through the model before serving (not counted in stats).

        The first calls trace the graph and pick kernels; without this the first clients wait seconds.
        """
        rng = np.random.default_rng(7)
        crops = list(rng.integers(0, 256, size=(self.max_batch, 160, 160, 3), dtype=np.uint8))
        self.embedder.embed(crops)
        self.embedder.embed(crops[:1])

    def close(self) -> None:
        self._batcher.close()

    def _run(self, items: list[NDArray[np.float32]]) -> list[Outcome[NDArray[np.float32]]]:
        return list(self.embedder.embed_prepared(np.stack(items)))

"""Brings a shared (Milvus) index level with the store, the truth: faces missing from the index are
written, faces the store no longer holds are deleted. Pure: no grpc (the index is behind its interface).

Bound: a pass runs every interval_s (30 s by default), and within about a second once a write to the
index was missed (Milvus down, a replica killed between its store commit and its index write is
covered by the periodic pass of any replica, and by the pass every replica runs at start). A face
acknowledged by the store is therefore searchable, and a removed one gone, at most interval_s plus one
pass after the index is reachable again; a pass lists every id of both (seconds at a million faces).
Searches never return a face the store no longer holds meanwhile: the gallery checks ids against it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from facerec.errors import FacerecError

log = logging.getLogger(__name__)

_CHUNK = 4096


class _Store(Protocol):
    """What a pass reads of the store (a part of gallery.ports.FaceStore)."""

    def face_ids(self) -> NDArray[np.int64]: ...
    def faces_by_id(
        self, face_ids: Sequence[int]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]: ...


class _SharedIndex(Protocol):
    """A gallery.ports.VectorIndex that may miss writes (gallery.index_milvus.MilvusIndex)."""

    missed_writes: int

    def all_ids(self) -> NDArray[np.int64]: ...
    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None: ...
    def remove(self, ids: Sequence[int]) -> int: ...


class Reconciler:
    """Runs reconcile() at start, every interval_s, and soon after a missed write."""

    def __init__(self, store: _Store, index: _SharedIndex, interval_s: float = 30.0) -> None:
        self._store = store
        self._index = index
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-reconciler", daemon=True)
        self.passes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def reconcile(self) -> tuple[int, int]:
        """One pass; returns (faces written, faces deleted). Unavailable when the index cannot be reached."""
        missed = self._index.missed_writes
        # The index is listed before the store: a face committed in between then looks missing (and is
        # rewritten, harmlessly), never extra (which would delete an acknowledged face).
        in_index = self._index.all_ids()
        in_store = self._store.face_ids()
        missing = np.setdiff1d(in_store, in_index, assume_unique=True)
        extra = np.setdiff1d(in_index, in_store, assume_unique=True)
        for start in range(0, len(missing), _CHUNK):
            ids, vectors, _ = self._store.faces_by_id(missing[start : start + _CHUNK].tolist())
            self._index.add(ids, vectors)
        if len(extra):
            self._index.remove(extra.tolist())
        if self._index.missed_writes == missed:
            self._index.missed_writes = 0
        self.passes += 1
        if len(missing) or len(extra):
            log.warning(
                "reconciled the index with the store: %s faces written, %s deleted", len(missing), len(extra)
            )
        return len(missing), len(extra)

    def _run(self) -> None:
        last = 0.0
        while True:
            due = time.monotonic() - last >= self.interval_s or self._index.missed_writes > 0
            if due:
                try:
                    self.reconcile()
                    last = time.monotonic()
                except FacerecError as exc:
                    log.warning("index reconciliation postponed: %s", exc)
                except Exception:
                    log.exception("index reconciliation failed; trying again in %s s", self.interval_s)
                    last = time.monotonic()
            if self._stop.wait(1.0):
                return

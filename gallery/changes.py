"""A replica's follower of the shared store's change log: keeps its FAISS index and SVM level with what the
other replicas commit. Pure: no grpc.

Bound: a change committed by any replica is in this replica's index after the NOTIFY that its commit
sends arrives (milliseconds), or at the latest one poll interval (follow_poll_s, 0.5 s by default) plus
one catch-up (a query for the changes and one for their faces) later, when a notification is lost
(e.g. the listener's connection dropped). While the store cannot be reached the follower retries every
poll interval and catches up once it can.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from facerec.errors import FacerecError
from gallery.rows import Change

log = logging.getLogger(__name__)


class ChangeLog(Protocol):
    """What the follower reads of a shared store (a part of gallery.ports.FaceStore)."""

    def version(self) -> int: ...
    def changes_since(self, version: int, limit: int = 10_000) -> list[Change]: ...
    def faces_by_id(
        self, face_ids: Sequence[int]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]: ...
    def classifier_version(self) -> int: ...
    def wait_for_change(self, timeout_s: float) -> bool: ...


class Follower(Protocol):
    """What the follower keeps level: a replica's index and SVM (gallery.backend's upkeep)."""

    @property
    def classifier_version(self) -> int: ...
    def follow(
        self, face_ids: Sequence[int], present_ids: NDArray[np.int64], vectors: NDArray[np.float32]
    ) -> None: ...
    def adopt_classifier(self) -> bool: ...
    def rebuild_index(self) -> int: ...


class ChangeFollower:
    """Applies the change log to a gallery, from `since` (the store version its index was built at)."""

    def __init__(self, gallery: Follower, store: ChangeLog, since: int, poll_s: float = 0.5) -> None:
        self._gallery = gallery
        self._store = store
        self.applied = since
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="change-follower", daemon=True)
        # Set after every catch-up pass, so tests can wait on progress instead of sleeping.
        self.caught_up = threading.Condition()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._poll_s + 10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.catch_up()
            except FacerecError as exc:
                log.warning("cannot follow the store's changes: %s", exc)
            except Exception:
                log.exception("following the store's changes failed")
            if self._stop.is_set():
                return
            self._store.wait_for_change(self._poll_s)

    def catch_up(self) -> int:
        """Applies every change committed since the last pass; returns the version now mirrored."""
        while True:
            # The version is read first: every change up to it is then visible to the query after it, so
            # an empty answer below a higher version means pruned changes, not a commit in between.
            version = self._store.version()
            changes = self._store.changes_since(self.applied)
            if not changes:
                if version > self.applied:
                    # The versions we missed were pruned from the log: start again from the store.
                    log.warning("missed changes beyond the kept log; rebuilding the index from the store")
                    self.applied = self._gallery.rebuild_index()
                    continue
                break
            if changes[0].version != self.applied + 1:
                log.warning("missed changes beyond the kept log; rebuilding the index from the store")
                self.applied = self._gallery.rebuild_index()
                continue
            touched = sorted({face_id for change in changes for face_id in change.face_ids})
            ids, vectors, _ = self._store.faces_by_id(touched)
            self._gallery.follow(touched, ids, vectors)
            self.applied = changes[-1].version
            log.debug("followed the store to version %s (%s faces touched)", self.applied, len(touched))
        # Adopt a classifier another replica fit at the version we mirror (an older one is stale anyway).
        kept = self._store.classifier_version()
        if kept == self.applied and self._gallery.classifier_version != kept:
            self._gallery.adopt_classifier()
        with self.caught_up:
            self.caught_up.notify_all()
        return self.applied

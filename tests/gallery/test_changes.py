"""The change follower with a fake change log: what it applies, when it rebuilds, and that a commit
landing while it reads is applied next time rather than taken for a pruned log."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from gallery.changes import ChangeFollower
from gallery.rows import Change


class FakeLog:
    def __init__(self, changes: list[Change], faces: dict[int, NDArray[np.float32]]) -> None:
        self.changes = changes
        self.faces = faces
        self.committed_on_read: Change | None = None  # committed right after the next read of the log
        self.kept_classifier = -1

    def version(self) -> int:
        return max((c.version for c in self.changes), default=0)

    def changes_since(self, version: int, limit: int = 10_000) -> list[Change]:
        out = [c for c in self.changes if c.version > version][:limit]
        if self.committed_on_read is not None:
            self.changes.append(self.committed_on_read)
            self.committed_on_read = None
        return out

    def faces_by_id(
        self, face_ids: Sequence[int]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
        ids = sorted(i for i in face_ids if i in self.faces)
        vectors = np.stack([self.faces[i] for i in ids]) if ids else np.zeros((0, 4), np.float32)
        return np.array(ids, dtype=np.int64), vectors, ["x"] * len(ids)

    def classifier_version(self) -> int:
        return self.kept_classifier

    def wait_for_change(self, timeout_s: float) -> bool:
        return False


class FakeGallery:
    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.followed: list[tuple[list[int], list[int]]] = []
        self.rebuilds = 0
        self.adopted = 0
        self.classifier_version = -1

    def follow(
        self, face_ids: Sequence[int], present_ids: NDArray[np.int64], vectors: NDArray[np.float32]
    ) -> None:
        self.followed.append((list(face_ids), present_ids.tolist()))

    def adopt_classifier(self) -> bool:
        self.adopted += 1
        return True

    def rebuild_index(self) -> int:
        self.rebuilds += 1
        return self.log.version()  # as Gallery.rebuild_index: the version the rebuilt index mirrors


def vec() -> NDArray[np.float32]:
    return np.ones(4, np.float32) / 2


def test_changes_are_applied_once_with_the_faces_the_store_still_holds() -> None:
    log = FakeLog(
        [Change(1, "add", [1, 2]), Change(2, "remove", [1]), Change(3, "add", [3])], {2: vec(), 3: vec()}
    )
    gallery = FakeGallery(log)
    follower = ChangeFollower(gallery, log, since=0)
    assert follower.catch_up() == 3
    # Face 1 was added then removed: it is taken out of the index and not put back.
    assert gallery.followed == [([1, 2, 3], [2, 3])]
    assert follower.catch_up() == 3 and len(gallery.followed) == 1  # nothing new: nothing applied
    assert gallery.rebuilds == 0


def test_a_commit_during_the_read_is_applied_next_not_taken_for_a_pruned_log() -> None:
    log = FakeLog([Change(1, "add", [1])], {1: vec(), 2: vec()})
    gallery = FakeGallery(log)
    follower = ChangeFollower(gallery, log, since=1)
    log.committed_on_read = Change(2, "add", [2])
    assert follower.catch_up() == 1
    assert gallery.rebuilds == 0
    assert follower.catch_up() == 2 and gallery.followed == [([2], [2])]


def test_a_gap_in_the_log_rebuilds_the_index_from_the_store() -> None:
    log = FakeLog([Change(7, "add", [7])], {7: vec()})  # versions 2..6 were pruned
    gallery = FakeGallery(log)
    follower = ChangeFollower(gallery, log, since=1)
    follower.catch_up()
    assert gallery.rebuilds == 1


def test_a_classifier_fit_at_the_mirrored_version_is_adopted() -> None:
    log = FakeLog([Change(1, "add", [1])], {1: vec()})
    gallery = FakeGallery(log)
    follower = ChangeFollower(gallery, log, since=0)
    log.kept_classifier = 0  # an older fit: stale, not adopted
    follower.catch_up()
    assert gallery.adopted == 0
    log.kept_classifier = 1
    follower.catch_up()
    assert gallery.adopted == 1

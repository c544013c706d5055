"""Face ids are never given twice, across a collection's generations too: a store tells the largest id it
ever gave (a removed face's included), and a new store can be told to continue above it. Both engines."""

from __future__ import annotations

import numpy as np

from gallery.rows import NewFace
from gallery.stores import open_store

MODEL = "facenet-keras-128"


def _face(seed: int) -> NewFace:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return NewFace(v / np.linalg.norm(v))


def test_a_new_store_continues_above_the_largest_id_an_old_one_ever_gave(store_location: str) -> None:
    old = open_store(store_location, MODEL)
    try:
        assert old.last_face_id() == 0
        ids = old.add_faces("ada", [_face(1), _face(2), _face(3)])
        old.remove_face(ids[-1])
        assert old.last_face_id() == ids[-1]  # the removed face's id still counts
        old.reserve_face_ids(ids[-1] + 10)
        (after,) = old.add_faces("bob", [_face(4)])
        assert after == ids[-1] + 11
        old.reserve_face_ids(1)  # never goes back
        assert old.add_faces("bob", [_face(5)]) == [after + 1]
    finally:
        old.close()

"""Represent as the pure domain code: built from the two service ports alone (no store exists to touch),
judging faces by the Identify floors and embedding each face, the unfit ones included."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.errors import InvalidInput, Unavailable
from gallery.options import GalleryOptions
from gallery.represent import Representer
from gallery.results import NotIdentifiable
from tests.support.gallery import MODEL, FakeDetector, FakeEmbedder, World, picture


def representer(world: World, detector: FakeDetector | None = None) -> Representer:
    embedder = FakeEmbedder(world)

    def vectors(crops, timeout_s):
        return embedder.embed(crops, timeout_s).vectors

    return Representer(
        detector or FakeDetector(), vectors, GalleryOptions(identify_min_confidence=0.9), MODEL
    )


def test_every_face_is_judged_by_the_identify_floors_and_embedded() -> None:
    world = World(people=3, train=1, val=1)
    answer = representer(world).represent(
        picture(
            (0, (0.0, 0.0, 80.0, 90.0), 0.99),
            (1, (100.0, 0.0, 60.0, 70.0), 0.85),
            (2, (200.0, 0.0, 15.0, 19.0), 0.95),
        )
    )
    assert (answer.width, answer.height, answer.model) == (640, 480, MODEL)
    sure, small, unsure = answer.faces  # by descending detection confidence
    assert sure.quality.identifiable and sure.quality.size_px == 80 and sure.quality.reason == ""
    assert small.quality.not_identifiable is NotIdentifiable.FACE_TOO_SMALL and small.quality.size_px == 15
    assert unsure.quality.not_identifiable is NotIdentifiable.DETECTION_TOO_UNSURE
    assert "85%" in unsure.quality.reason and "90%" in unsure.quality.reason
    for face, index in ((sure, 0), (unsure, 1), (small, 2)):
        np.testing.assert_array_equal(face.embedding, world.vectors[index])


def test_no_picture_a_bad_one_and_a_down_detector_are_errors_naming_the_image() -> None:
    world = World(people=1, train=1, val=1)
    with pytest.raises(InvalidInput) as empty:
        representer(world).represent(b"")
    with pytest.raises(InvalidInput) as bad:
        representer(world).represent(b"not a picture")
    assert empty.value.field == bad.value.field == "image"
    down = FakeDetector()
    down.down = True
    with pytest.raises(Unavailable):
        representer(world, down).represent(picture())
    assert representer(world).represent(picture()).faces == []

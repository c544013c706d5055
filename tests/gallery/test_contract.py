"""A facade given its collection's contract uses it for every detection and embedding it asks for, and holds
callers' embeddings to its model; without one it asks for the services' defaults as before."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from facerec.errors import Precondition
from gallery.backend import BackendSettings, open_backend
from gallery.gallery import Gallery
from gallery.options import GalleryOptions
from gallery.ports import Contract, DetectedImage, DetectorOptions
from gallery.results import EnrollOutcome
from tests.support.gallery import MODEL, FakeDetector, FakeEmbedder, World, portrait

INT8 = "facenet-keras-128-int8"


class RecordingDetector(FakeDetector):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[DetectorOptions] = []

    def detect(
        self, images: Sequence[bytes], options: DetectorOptions, timeout_s: float | None = None
    ) -> list[DetectedImage]:
        self.asked.append(options)
        return super().detect(images, options, timeout_s)


@pytest.fixture
def opened() -> Iterator[list[Gallery]]:
    galleries: list[Gallery] = []
    yield galleries
    for gallery in galleries:
        gallery.close()


def gallery_of(
    where: Path, world: World, model: str, contract: Contract | None, opened: list[Gallery]
) -> tuple[Gallery, RecordingDetector, FakeEmbedder]:
    detector, embedder = RecordingDetector(), FakeEmbedder(world)
    storage = open_backend(BackendSettings(str(where / "g.sqlite"), model))
    gallery = Gallery(storage, detector, embedder, GalleryOptions(), contract=contract)
    opened.append(gallery)
    return gallery, detector, embedder


def test_every_detection_and_embedding_follows_the_contract(tmp_path: Path, opened: list[Gallery]) -> None:
    world = World()
    contract = Contract("retinaface", "similarity", INT8)
    gallery, detector, embedder = gallery_of(tmp_path, world, INT8, contract, opened)
    faces = world.train["person-0"]
    results = gallery.enroll("person-0", [portrait(i) for i in faces[:3]])
    assert {r.outcome for r in results} == {EnrollOutcome.ENROLLED}
    # The caller's own options keep their floors; the detector and alignment are the contract's.
    caller = DetectorOptions(min_face_size_px=30, alignment="box", model="mtcnn")
    gallery.enroll("person-0", [portrait(faces[3])], options=caller)
    identified = gallery.identify_image(portrait(world.val["person-0"][0]), options=caller)
    assert identified.faces[0].identity == "person-0"
    gallery.verify(portrait(faces[0]), identity="person-0")
    assert gallery.represent(portrait(faces[1])).model == INT8
    assert [(o.model, o.alignment) for o in detector.asked] == [("retinaface", "similarity")] * 5
    assert [o.min_face_size_px for o in detector.asked] == [0, 30, 30, 0, 0]
    assert embedder.asked == [INT8] * 5  # never the embedder's default
    assert (gallery.model, gallery.stats().model) == (INT8, INT8)


def test_callers_embeddings_must_be_of_the_contract_model(tmp_path: Path, opened: list[Gallery]) -> None:
    world = World()
    gallery, _, _ = gallery_of(tmp_path, world, INT8, Contract("mtcnn", "box", INT8), opened)
    vector = [float(v) for v in world.vectors[0]]
    fp32, int8 = gallery.enroll("person-0", embeddings=[(vector, MODEL), (vector, INT8)])
    assert fp32.outcome is EnrollOutcome.INVALID and int8.outcome is EnrollOutcome.ENROLLED
    assert MODEL in str(fp32.error) and INT8 in str(fp32.error)
    with pytest.raises(Precondition, match="holds .facenet-keras-128-int8"):
        gallery.search(vector, MODEL)
    assert gallery.search(vector, INT8)[0].identity == "person-0"
    assert gallery.identify_embedding(vector, INT8).faces[0].identity == "person-0"


def test_without_a_contract_the_services_defaults_are_asked_for(
    tmp_path: Path, opened: list[Gallery]
) -> None:
    world = World()
    gallery, detector, embedder = gallery_of(tmp_path, world, MODEL, None, opened)
    gallery.enroll("person-0", [portrait(world.train["person-0"][0])])
    gallery.identify_image(portrait(world.val["person-0"][0]))
    assert [(o.model, o.alignment) for o in detector.asked] == [("", "")] * 2
    assert embedder.asked == ["", ""]
    assert gallery.model == MODEL and gallery.contract is None
    np.testing.assert_array_equal(
        next(iter(gallery.face_embeddings("person-0").values())), world.vectors[world.train["person-0"][0]]
    )

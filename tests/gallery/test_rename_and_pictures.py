"""The facade renames identities (name rules, look-alikes, the SVM and the index kept right) and serves each
face's kept picture, on both stores; enrolment keeps a picture per picture-enrolled face and, when the
collection asks, the source picture."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from facerec.errors import AlreadyExists, InvalidInput, NotFound
from facerec.images import decode_image, encode_png
from gallery.backend import BackendSettings, open_backend
from gallery.gallery import Gallery
from gallery.options import GalleryOptions
from gallery.ports import DetectedFace, DetectedImage, DetectorOptions
from gallery.results import EnrollOutcome
from tests.support.gallery import MODEL, FakeDetector, FakeEmbedder, World, enroll_people

BOX = (70.0, 50.0, 60.0, 80.0)


class PngDetector(FakeDetector):
    """Real pictures (PNG) with one face each at BOX, besides the fake pictures of FakeDetector; the crop is
    the 1x1 pixel naming the face's vector, as FakeDetector's."""

    def __init__(self) -> None:
        super().__init__()
        self.vector_of: dict[str, int] = {}

    def picture(self, index: int) -> bytes:
        # Smooth, as photos are (noise would be all the lossy encoder drops), and different per index.
        yy, xx = np.mgrid[0:180, 0:200]
        rgb = np.stack([xx + 3 * index, yy + 2 * index, (xx + yy) // 2 + index], axis=2) % 256
        data = encode_png(rgb.astype(np.uint8))
        self.vector_of[hashlib.sha256(data).hexdigest()] = index
        return data

    def detect(
        self, images: Sequence[bytes], options: DetectorOptions, timeout_s: float | None = None
    ) -> list[DetectedImage]:
        out = []
        for data in images:
            i = self.vector_of.get(hashlib.sha256(data).hexdigest(), -1)
            if i < 0:
                out.extend(super().detect([data], options, timeout_s))
                continue
            crop = np.array([[[i >> 8, i & 255, 7]]], np.uint8)
            out.append(DetectedImage(200, 180, [DetectedFace(BOX, 0.99, ((0.0, 0.0),) * 5, crop)]))
        return out


@pytest.fixture
def opened() -> Iterator[list[Gallery]]:
    galleries: list[Gallery] = []
    yield galleries
    for gallery in galleries:
        gallery.close()


def open_at(
    location: str, world: World, opened: list[Gallery], **options: object
) -> tuple[Gallery, PngDetector]:
    detector = PngDetector()
    storage = open_backend(BackendSettings(location, MODEL))
    gallery = Gallery(storage, detector, FakeEmbedder(world), GalleryOptions(**options))  # type: ignore[arg-type]
    opened.append(gallery)
    return gallery, detector


def test_a_renamed_identity_keeps_its_faces_and_answers_under_its_new_name(
    store_location: str, opened: list[Gallery]
) -> None:
    world = World(people=3)
    gallery, _ = open_at(store_location, world, opened)
    enroll_people(gallery, world, world.names)
    query = world.vectors[world.val["person-0"][0]]
    assert gallery.identify_embedding(query.tolist()).faces[0].identity == "person-0"
    before = sorted(gallery.face_embeddings("person-0"))
    row = gallery.rename_identity("person-0", "Zoë")
    assert (row.identity, row.face_count) == ("Zoë", len(before))
    assert sorted(gallery.face_embeddings("Zoë")) == before  # the same faces, ids and all
    with pytest.raises(NotFound):
        gallery.get_identity("person-0")
    # The SVM was fit on the old names: no answer ever names person-0 again, stale or refit.
    answer = gallery.identify_embedding(query.tolist())
    assert answer.faces[0].identity == "Zoë"
    gallery._classifier.wait_for_refit(30)
    refit = gallery.identify_embedding(query.tolist())
    assert (refit.faces[0].identity, refit.classifier_stale) == ("Zoë", False)
    assert gallery.search(query.tolist())[0].identity == "Zoë"


def test_a_rename_obeys_the_name_rules(store_location: str, opened: list[Gallery]) -> None:
    world = World(people=3)
    gallery, _ = open_at(store_location, world, opened)
    enroll_people(gallery, world, world.names[:2])
    with pytest.raises(AlreadyExists):
        gallery.rename_identity("person-0", "person-1")
    with pytest.raises(InvalidInput, match="looks like the enrolled identity 'person-1'"):
        gallery.rename_identity("person-0", "реrson-1")  # Cyrillic р and е
    with pytest.raises(InvalidInput, match="whitespace"):
        gallery.rename_identity("person-0", "alice ")
    with pytest.raises(NotFound):
        gallery.rename_identity("nobody", "alice")
    # Looking like its own old name is no conflict: correcting how a name is written.
    assert gallery.rename_identity("person-0", "реrson-0").identity == "реrson-0"
    assert [r.identity for r in gallery.list_identities()[0]] == ["person-1", "реrson-0"]


def test_each_picture_enrolled_face_keeps_a_picture_of_itself(
    store_location: str, opened: list[Gallery]
) -> None:
    world = World(people=1)
    gallery, detector = open_at(store_location, world, opened)
    index = world.train["person-0"][0]
    data = detector.picture(index)
    results = gallery.enroll(
        "person-0", [data], embeddings=[(world.vectors[world.train["person-0"][1]].tolist(), MODEL)]
    )
    assert [r.outcome for r in results] == [EnrollOutcome.ENROLLED] * 2
    by_picture, by_embedding = results[0].face_id, results[1].face_id
    kept = gallery.face_picture(by_picture)
    assert kept.media_type.startswith("image/")
    pixels = decode_image(kept.data)
    assert pixels.shape == (kept.height, kept.width, 3)
    # The face's box carried onto the kept picture: the same pixels there as on the original (up to the
    # encoding's loss), inside a region twice the box's size.
    x, y, w, h = (round(v) for v in kept.box)
    assert (round(kept.box[2]), round(kept.box[3])) == (60, 80)
    original = decode_image(data)[50:130, 70:130].astype(float)
    assert np.abs(pixels[y : y + h, x : x + w].astype(float) - original).mean() < 8
    with pytest.raises(NotFound):
        gallery.face_picture(by_embedding)  # enrolled as an embedding: no picture
    with pytest.raises(NotFound):
        gallery.face_picture(0)
    assert set(gallery.face_pictures([by_picture, by_embedding, 12345])) == {by_picture}
    row, faces = gallery.get_identity("person-0")
    assert {f.face_id: f.has_picture for f in faces} == {by_picture: True, by_embedding: False}
    # Off by default: the whole picture is not kept.
    assert gallery._store.source_picture(by_picture) == b""


def test_a_collection_that_keeps_source_pictures_keeps_the_bytes_enrolled(
    tmp_path: Path, opened: list[Gallery]
) -> None:
    world = World(people=1)
    gallery, detector = open_at(str(tmp_path / "g.sqlite"), world, opened, keep_source_pictures=True)
    data = detector.picture(world.train["person-0"][0])
    face_id = gallery.enroll("person-0", [data])[0].face_id
    assert gallery._store.source_picture(face_id) == data


def test_an_identitys_faces_are_read_in_pages_on_both_stores(
    store_location: str, opened: list[Gallery]
) -> None:
    world = World(people=2)
    gallery, _ = open_at(store_location, world, opened)
    enroll_people(gallery, world, world.names[:1])
    name = world.names[0]
    _, every = gallery.get_identity(name)
    seen, token, sizes = [], "", []
    while True:
        row, faces, token = gallery.identity_page(name, page_size=1, page_token=token, with_pictures=True)
        sizes.append(len(faces))
        seen += [f.face_id for f in faces]
        if not token:
            break
    assert seen == [f.face_id for f in every] and sizes == [1] * len(every) and row.face_count == len(every)
    _, whole, last = gallery.identity_page(name)
    assert len(every) > 1 and [f.face_id for f in whole] == [f.face_id for f in every] and last == ""
    with pytest.raises(InvalidInput, match="between 1 and 32"):
        gallery.identity_page(name, page_size=33, with_pictures=True)

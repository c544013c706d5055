"""The gallery facade with fake detector/embedder ports and seeded synthetic embeddings: enrolment
outcomes, open-set identification (SVM and nearest neighbour), verification, removal. On one fast
backend (SQLite + flat FAISS): each storage port has its own contract test on every implementation
(test_store.py, test_index_contract.py), and test_backend.py runs the facade on every store x index."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from facerec.calibration import DEFAULT_IDENTIFICATION_THRESHOLD
from facerec.errors import InvalidInput, NotFound, Precondition, Unavailable
from gallery.backend import Backend, BackendSettings, open_backend, open_gallery
from gallery.classifier import StoreClassifier
from gallery.gallery import Gallery
from gallery.options import GalleryOptions
from gallery.ports import Embedded, FaceStore, KeptClassifier, VectorIndex
from gallery.results import NEAREST, SVM, EnrollOutcome, NotIdentifiable
from tests.support.gallery import (
    BOX,
    DIM,
    MODEL,
    FakeDetector,
    FakeEmbedder,
    World,
    brute_force_candidates,
    enroll_people,
    picture,
    portrait,
)


@pytest.fixture()
def world() -> World:
    return World()


_opened: list[Gallery] = []


@pytest.fixture(autouse=True)
def _close_galleries() -> Iterator[None]:
    """Closes the galleries a test opened (a PostgreSQL gallery holds connections and a follower thread)."""
    yield
    while _opened:
        _opened.pop().close()


def gallery_in(
    where: Path,
    world: World,
    detector: FakeDetector | None = None,
    embedder: FakeEmbedder | None = None,
    **options: object,
) -> Gallery:
    """A gallery on a SQLite file g.sqlite in the folder `where`, with its FAISS index."""
    gallery = open_gallery(
        where / "g.sqlite",
        MODEL,
        detector or FakeDetector(),
        embedder or FakeEmbedder(world),
        GalleryOptions(**options),  # type: ignore[arg-type]
    )
    _opened.append(gallery)
    return gallery


def test_enroll_reports_an_outcome_per_picture_and_embedding(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world)
    a = world.train["person-0"]
    small, large = (a[1], (0.0, 0.0, 20.0, 20.0), 0.999), (a[2], (50.0, 50.0, 100.0, 100.0), 0.98)
    results = g.enroll(
        "person-0",
        images=[portrait(a[0]), picture(), picture(small, large), b"not a picture", portrait(a[0])],
        embeddings=[((world.vectors[a[3]] * 2.5).tolist(), ""), ([float("nan")] * DIM, "")],
    )
    assert [r.outcome for r in results] == [
        EnrollOutcome.ENROLLED,
        EnrollOutcome.NO_FACE,
        EnrollOutcome.MULTIPLE_FACES,
        EnrollOutcome.INVALID,
        EnrollOutcome.DUPLICATE,
        EnrollOutcome.ENROLLED,
        EnrollOutcome.INVALID,
    ]
    assert results[2].faces_found == 2 and results[2].box == large[1]
    assert isinstance(results[3].error, InvalidInput) and isinstance(results[6].error, InvalidInput)
    assert results[4].face_id == results[0].face_id
    assert g.stats().faces == 3 and g.stats().index_size == 3 and g.stats().identities == 1
    # The largest face was the one enrolled; the embedding was stored normalized.
    assert g.search(world.vectors[a[2]].tolist(), top_k=1)[0].face_id == results[2].face_id
    hit = g.search(world.vectors[a[3]].tolist(), top_k=1)[0]
    assert hit.face_id == results[5].face_id and hit.distance < 1e-3

    # Enrolling the same picture again is idempotent.
    again = g.enroll("person-0", [portrait(a[0])])
    assert again[0].outcome == EnrollOutcome.DUPLICATE and again[0].face_id == results[0].face_id
    assert g.stats().faces == 3


def test_enroll_needs_a_valid_identity_and_something_to_enroll(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world, max_images_per_request=3)
    for name in ("", "x" * 10_000, "bad\x07name"):
        with pytest.raises(InvalidInput):
            g.enroll(name, [portrait(0)])
    with pytest.raises(InvalidInput):
        g.enroll("person-0")
    with pytest.raises(InvalidInput):
        g.enroll("person-0", [portrait(i) for i in range(4)])
    assert g.stats().faces == 0


def test_svm_identifies_known_people_and_calls_a_stranger_unknown(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world)
    known, stranger = world.names[:4], world.names[4]
    enroll_people(g, world, known)
    for name in world.names:
        for i in world.val[name]:
            query = world.vectors[i]
            answer = g.identify_embedding(query.tolist(), top_k=3)
            assert answer.method == SVM and answer.threshold == pytest.approx(
                DEFAULT_IDENTIFICATION_THRESHOLD
            )
            (face,) = answer.faces
            expected = brute_force_candidates(world, g, query)[:3]
            assert [c.identity for c in face.candidates] == [name for name, _ in expected]
            np.testing.assert_allclose(
                [c.distance for c in face.candidates], [d for _, d in expected], atol=1e-4
            )
            if name == stranger:
                assert (face.identity, face.known, face.confidence) == ("", False, 0.0)
                assert face.distance == pytest.approx(expected[0][1], abs=1e-4)
            else:
                assert (face.identity, face.known) == (name, True)
                assert face.distance == pytest.approx(expected[0][1], abs=1e-4)
                assert 0 < face.confidence <= 1


def test_the_svm_answer_stands_only_within_the_threshold(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world)
    enroll_people(g, world, world.names[:3])
    query = world.vectors[world.val["person-1"][0]]
    assert g.identify_embedding(query.tolist()).faces[0].identity == "person-1"
    strict = g.identify_embedding(query.tolist(), threshold=0.05).faces[0]
    assert (strict.identity, strict.known) == ("", False)
    assert [c.identity for c in strict.candidates][0] == "person-1"
    assert strict.distance == pytest.approx(strict.candidates[0].distance)
    for bad in (-1.0, 2.5, float("nan")):
        with pytest.raises(InvalidInput):
            g.identify_embedding(query.tolist(), threshold=bad)
    for bad in (-1, 101):
        with pytest.raises(InvalidInput):
            g.identify_embedding(query.tolist(), top_k=bad)


def test_nearest_neighbour_with_one_identity_and_beyond_svm_max(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world, svm_max_identities=2)
    enroll_people(g, world, ["person-0"])
    own = g.identify_embedding(world.vectors[world.val["person-0"][0]].tolist())
    other = g.identify_embedding(world.vectors[world.val["person-3"][0]].tolist())
    assert own.method == NEAREST and (own.faces[0].identity, own.faces[0].known) == ("person-0", True)
    assert own.faces[0].confidence == pytest.approx(1 - own.faces[0].distance / own.threshold, abs=1e-6)
    assert (other.faces[0].identity, other.faces[0].known) == ("", False)
    assert other.faces[0].candidates[0].identity == "person-0"

    enroll_people(g, world, world.names[1:3])
    assert g.stats().classifier == NEAREST
    for name in world.names[:3]:
        answer = g.identify_embedding(world.vectors[world.val[name][1]].tolist())
        assert answer.method == NEAREST and answer.faces[0].identity == name


def test_svm_is_refit_lazily_and_by_train(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world)
    enroll_people(g, world, ["person-0"])
    with pytest.raises(Precondition):
        g.train()
    enroll_people(g, world, ["person-1"])
    assert g.stats().classifier == SVM and g.stats().classifier_stale
    g.identify_embedding(world.vectors[0].tolist())
    assert not g.stats().classifier_stale
    enroll_people(g, world, ["person-2"])
    assert g.stats().classifier_stale
    answer = g.identify_embedding(world.vectors[world.val["person-2"][0]].tolist())
    assert answer.faces[0].identity == "person-2" and not g.stats().classifier_stale
    g.enroll("person-3", [portrait(world.train["person-3"][0])])
    done = g.train()
    assert (done.identities, done.faces, done.train_accuracy) == (4, 25, 1.0)
    assert not g.stats().classifier_stale


def test_while_the_svm_is_refit_in_the_background_a_newcomer_is_named_by_the_nearest_neighbour(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every refit goes to the background (no budget), and the test holds it there until it has asked.
    release = threading.Event()
    refit = StoreClassifier._refit_in_background

    def held(self: StoreClassifier) -> None:
        release.wait(60)
        refit(self)

    monkeypatch.setattr(StoreClassifier, "_refit_in_background", held)
    g = gallery_in(tmp_path, world, svm_inline_refit_max_s=0.0)
    try:
        enroll_people(g, world, ["person-0", "person-1"])
        g.train()
        enroll_people(g, world, ["person-2"])
        newcomer = g.identify_embedding(world.vectors[world.val["person-2"][0]].tolist())
        assert (newcomer.method, newcomer.classifier_stale) == (SVM, True)
        assert (newcomer.faces[0].identity, newcomer.faces[0].known) == ("person-2", True)
        # Faces of identities the stale SVM knows are still its answers.
        known = g.identify_embedding(world.vectors[world.val["person-1"][0]].tolist())
        assert known.classifier_stale and known.faces[0].identity == "person-1"
        release.set()
        g._classifier.wait_for_refit(60)
        fresh = g.identify_embedding(world.vectors[world.val["person-2"][1]].tolist())
        assert not fresh.classifier_stale and fresh.faces[0].identity == "person-2"
    finally:
        release.set()
        g.close()


def test_identify_a_picture_answers_every_face(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world)
    enroll_people(g, world, world.names[:2])
    known = (world.val["person-1"][0], (300.0, 40.0, 80.0, 90.0), 0.97)
    stranger = (world.val["person-4"][0], (10.0, 40.0, 60.0, 70.0), 0.999)
    answer = g.identify_image(picture(known, stranger), top_k=1)
    assert (answer.width, answer.height) == (640, 480)
    first, second = answer.faces
    assert (first.identity, first.known, first.box, first.detection_confidence) == (
        "",
        False,
        stranger[1],
        0.999,
    )
    assert (second.identity, second.known, second.box) == ("person-1", True, known[1])
    assert len(first.candidates) == 1 and len(second.candidates) == 1
    assert g.identify_image(picture()).faces == []
    with pytest.raises(InvalidInput):
        g.identify_image(b"not a picture")
    with pytest.raises(InvalidInput):
        g.identify_image(b"")


class CountingEmbedder(FakeEmbedder):
    """Records how many crops each call embeds."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.calls: list[int] = []

    def embed(
        self, crops: Sequence[NDArray[np.uint8]], timeout_s: float | None = None, model: str = ""
    ) -> Embedded:
        self.calls.append(len(crops))
        return super().embed(crops, timeout_s, model)


def test_faces_below_the_floors_are_not_identifiable_with_the_reason(tmp_path: Path, world: World) -> None:
    embedder = CountingEmbedder(world)
    options = GalleryOptions(identify_min_face_px=20.0, identify_min_confidence=0.8)
    g = open_gallery(tmp_path / "g.sqlite", MODEL, FakeDetector(), embedder, options)
    _opened.append(g)
    enroll_people(g, world, world.names[:2])
    embedder.calls.clear()
    subject = (world.val["person-0"][0], (100.0, 80.0, 90.0, 110.0), 0.999)
    # A passer-by far behind: person-1's own face, yet too small to name (18x25 px, as in the report).
    passer_by = (world.val["person-1"][0], (400.0, 30.0, 18.0, 25.0), 0.99)
    unsure = (world.val["person-1"][1], (300.0, 40.0, 40.0, 50.0), 0.7)
    answer = g.identify_image(picture(subject, passer_by, unsure))
    first, second, third = answer.faces
    assert (first.identity, first.known, first.not_identifiable) == ("person-0", True, None)
    assert (second.identity, second.known, second.candidates, second.box) == ("", False, [], passer_by[1])
    assert second.not_identifiable is NotIdentifiable.FACE_TOO_SMALL
    assert second.reason == "The face is 18x25 px, smaller than the 20 px needed to identify it reliably."
    assert third.not_identifiable is NotIdentifiable.DETECTION_TOO_UNSURE
    assert third.reason == "The detector is 70% sure this is a face, less than the 80% needed to identify it."
    assert embedder.calls == [1]  # only the identifiable face was embedded
    only_small = g.identify_image(picture(passer_by))
    assert [f.not_identifiable for f in only_small.faces] == [NotIdentifiable.FACE_TOO_SMALL]
    assert embedder.calls == [1]
    # Floors of 0 compare every face the detector returns.
    lenient = gallery_in(tmp_path / "lenient", world, identify_min_face_px=0.0, identify_min_confidence=0.0)
    enroll_people(lenient, world, world.names[:2])
    assert [f.identity for f in lenient.identify_image(picture(passer_by)).faces] == ["person-1"]


def test_verify_compares_the_largest_face_says_how_many_and_refuses_a_tiny_one(
    tmp_path: Path, world: World
) -> None:
    g = gallery_in(tmp_path, world)
    a0, a1 = world.val["person-0"][:2]
    group = picture(
        (a0, (10.0, 10.0, 120.0, 150.0), 0.99), (world.val["person-3"][0], (300.0, 20.0, 40.0, 50.0), 0.999)
    )
    answer = g.verify(group, portrait(a1))
    assert answer.match and (answer.faces_a, answer.faces_b) == (2, 1) and answer.box_a == (10, 10, 120, 150)
    tiny = picture((a0, (10.0, 10.0, 18.0, 25.0), 0.99))
    with pytest.raises(
        InvalidInput, match=r"^image_b's largest face cannot be compared: The face is 18x25 px"
    ):
        g.verify(portrait(a1), tiny)


def test_identify_on_an_empty_gallery_is_unknown_without_candidates(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world)
    (face,) = g.identify_embedding(world.vectors[0].tolist()).faces
    assert (face.identity, face.known, face.candidates) == ("", False, [])
    assert g.search(world.vectors[0].tolist()) == []


def test_verify_pictures_and_identities(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world)
    enroll_people(g, world, ["person-0"])
    a0, a1 = world.val["person-0"][:2]
    b0 = world.val["person-2"][0]
    same = g.verify(portrait(a0), portrait(a1))
    expected = float(np.linalg.norm(world.vectors[a0] - world.vectors[a1]))
    assert same.match and same.distance == pytest.approx(expected, abs=1e-5) and same.box_b == BOX
    assert not g.verify(portrait(a0), portrait(b0)).match
    to_identity = g.verify(portrait(a0), identity="person-0")
    assert to_identity.match and to_identity.box_b is None
    assert to_identity.distance == pytest.approx(
        brute_force_candidates(world, g, world.vectors[a0])[0][1], abs=1e-5
    )
    assert not g.verify(portrait(b0), identity="person-0").match
    assert not g.verify(portrait(a0), portrait(a1), threshold=0.01).match
    with pytest.raises(NotFound):
        g.verify(portrait(a0), identity="nobody")
    for kwargs in (
        {"image_a": b""},
        {"image_a": portrait(a0)},
        {"image_a": portrait(a0), "image_b": portrait(a1), "identity": "person-0"},
        {"image_a": picture(), "image_b": portrait(a1)},
        {"image_a": portrait(a0), "image_b": b"not a picture"},
        {"image_a": portrait(a0), "identity": "x" * 200},
    ):
        with pytest.raises(InvalidInput):
            g.verify(**kwargs)


def test_removed_identities_and_faces_are_never_returned(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world)
    enroll_people(g, world, world.names[:3])
    assert g.remove_identity("person-1") == 8
    query = world.vectors[world.val["person-1"][0]].tolist()
    answer = g.identify_embedding(query, top_k=100)
    assert answer.faces[0].identity != "person-1"
    assert "person-1" not in {c.identity for c in answer.faces[0].candidates}
    assert all(hit.identity != "person-1" for hit in g.search(query, top_k=100))
    assert [row.identity for row in g.list_identities()[0]] == ["person-0", "person-2"]
    assert g.stats().faces == g.stats().index_size == 16
    with pytest.raises(NotFound):
        g.remove_identity("person-1")
    with pytest.raises(NotFound):
        g.get_identity("person-1")

    _, faces = g.get_identity("person-0")
    assert g.remove_face(faces[0].face_id) == "person-0"
    assert faces[0].face_id not in {
        h.face_id for h in g.search(world.vectors[world.train["person-0"][0]].tolist())
    }
    for unknown in (faces[0].face_id, 0, -3, 10**12):
        with pytest.raises(NotFound):
            g.remove_face(unknown)
    assert g.stats().faces == g.stats().index_size == 15


def test_identities_are_listed_in_pages_by_name(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world)
    for name in reversed(world.names):
        g.enroll(name, [portrait(world.train[name][0])])
    seen, token, pages = [], "", 0
    while True:
        rows, token = g.list_identities(2, token)
        seen += [(r.identity, r.face_count) for r in rows]
        pages += 1
        if not token:
            break
    assert seen == [(name, 1) for name in world.names] and pages == 3
    with pytest.raises(InvalidInput):
        g.list_identities(1001)


def test_another_model_is_refused(tmp_path: Path, world: World) -> None:
    g = gallery_in(tmp_path, world, embedder=FakeEmbedder(world, "other-model"))
    with pytest.raises(Precondition):
        g.enroll("person-0", [portrait(0)])
    results = g.enroll("person-0", embeddings=[(world.vectors[0].tolist(), "other-model")])
    assert results[0].outcome == EnrollOutcome.INVALID and isinstance(results[0].error, Precondition)
    with pytest.raises(Precondition):
        g.search(world.vectors[0].tolist(), model="other-model")
    assert g.stats().faces == 0


def test_a_downstream_outage_stores_nothing_and_passes_through(tmp_path: Path, world: World) -> None:
    detector = FakeDetector()
    g = gallery_in(tmp_path, world, detector=detector)
    detector.down = True
    with pytest.raises(Unavailable):
        g.enroll("person-0", [portrait(0)], embeddings=[(world.vectors[1].tolist(), "")])
    assert g.stats().faces == 0
    detector.down = False
    assert g.enroll("person-0", [portrait(0)])[0].outcome == EnrollOutcome.ENROLLED


class CountingStore:
    """A store that counts the calls made to it (each a round trip on a networked store)."""

    def __init__(self, store: FaceStore) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


@dataclass
class CountedStorage:
    """The storage of a gallery whose store calls are counted."""

    backend: Backend
    store: CountingStore

    @property
    def index(self) -> VectorIndex:
        return self.backend.index

    @property
    def write_lock(self) -> threading.Lock:
        return self.backend.write_lock

    def watch_classifier(self, classifier: KeptClassifier) -> None:
        self.backend.watch_classifier(classifier)

    def discard_saved_index(self) -> None:
        self.backend.discard_saved_index()

    def close(self) -> None:
        self.backend.close()


def test_an_identify_reads_the_store_state_once_and_never_a_stale_svms_arrays(
    tmp_path: Path, world: World
) -> None:
    backend = open_backend(BackendSettings(str(tmp_path / "g.sqlite"), MODEL))
    storage = CountedStorage(backend, CountingStore(backend.store))
    g = Gallery(storage, FakeDetector(), FakeEmbedder(world))  # type: ignore[arg-type]
    _opened.append(g)
    enroll_people(g, world, world.names[:3])
    g.train()  # kept by the store at this version
    g.enroll("person-3", [portrait(world.train["person-3"][0])])  # the kept SVM is stale now
    storage.store.calls.clear()
    answer = g.identify_image(portrait(world.val["person-1"][0]))
    assert answer.method == SVM and answer.faces[0].identity == "person-1"
    calls = storage.store.calls
    # One read of version, counts and the kept SVM's version; the stale SVM's arrays are never loaded
    # (a refit on the request reads the faces).
    assert (calls["state"], calls["counts"], calls["load_classifier"]) == (1, 0, 0)
    calls.clear()
    g.identify_embedding(world.vectors[world.val["person-0"][0]].tolist())
    assert calls["state"] == 1 and set(calls) <= {"state", "identities_of"}

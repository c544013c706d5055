"""The linear SVM: separable clusters, the two-identity minimum, a pickle-free round trip, and where a
stale SVM is refit (on the request only when that is cheap)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from facerec.errors import InvalidInput, Precondition
from gallery.classifier import COLD_SECONDS_PER_UNIT, IdentityClassifier, StoreClassifier, refit_units
from gallery.rows import StoreState


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clusters(n_classes: int, per_class: int, spread: float = 0.3, seed: int = 7):
    """Unit vectors around n_classes random centres; labels 'person-i'."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n_classes, 128)))
    labels = [f"person-{i}" for i in range(n_classes) for _ in range(per_class)]
    x = np.repeat(centres, per_class, axis=0)
    x = unit(x + spread * unit(rng.standard_normal(x.shape)))
    return x, labels, centres, rng


@pytest.mark.parametrize("n_classes", [2, 5, 40])
def test_separable_clusters_get_their_labels(n_classes: int) -> None:
    x, labels, centres, rng = clusters(n_classes, per_class=6)
    clf = IdentityClassifier()
    assert not clf.fitted
    assert clf.fit(x, labels) == 1.0
    assert clf.fitted and clf.classes == sorted(set(labels))
    held_out = unit(np.repeat(centres, 3, axis=0) + 0.3 * unit(rng.standard_normal((3 * n_classes, 128))))
    want = [f"person-{i}" for i in range(n_classes) for _ in range(3)]
    got, confidence = clf.predict(held_out)
    assert got == want
    assert confidence.dtype == np.float32 and confidence.shape == (3 * n_classes,)
    assert np.all((confidence > 1.0 / n_classes) & (confidence <= 1.0))


def test_confidence_is_lower_between_two_identities() -> None:
    x, labels, centres, _ = clusters(3, per_class=6)
    clf = IdentityClassifier()
    clf.fit(x, labels)
    _, on_centre = clf.predict(centres[:1])
    _, halfway = clf.predict(unit(centres[:1] + centres[1:2]))
    assert halfway[0] < on_centre[0]


def test_one_identity_is_a_precondition() -> None:
    x, _, _, _ = clusters(1, per_class=4)
    clf = IdentityClassifier()
    with pytest.raises(Precondition):
        clf.fit(x, ["alice"] * 4)
    with pytest.raises(Precondition):
        clf.predict(x)
    with pytest.raises(Precondition):
        clf.to_arrays()


def test_bad_inputs_are_invalid() -> None:
    x, labels, _, _ = clusters(2, per_class=3)
    clf = IdentityClassifier()
    with pytest.raises(InvalidInput):
        clf.fit(x, labels[:-1])
    clf.fit(x, labels)
    with pytest.raises(InvalidInput):
        clf.predict(x[:, :64])
    with pytest.raises(InvalidInput):
        clf.predict(np.full((1, 128), np.nan, np.float32))


def test_arrays_round_trip_predicts_identically(tmp_path: Path) -> None:
    x, labels, _, rng = clusters(5, per_class=6)
    clf = IdentityClassifier()
    clf.fit(x, labels)
    queries = unit(rng.standard_normal((200, 128)))
    path = tmp_path / "svm.npz"
    clf.save(path)
    with np.load(path, allow_pickle=False) as arrays:
        assert set(arrays.files) == {"coef", "intercept", "classes", "score_scale"}
        assert all(arrays[key].dtype != object for key in arrays.files)
        again = IdentityClassifier.from_arrays({key: arrays[key] for key in arrays.files})
    for other in (again, IdentityClassifier.load(path), IdentityClassifier.from_arrays(clf.to_arrays())):
        got, conf = other.predict(queries)
        want, want_conf = clf.predict(queries)
        assert got == want and other.classes == clf.classes
        np.testing.assert_array_equal(conf, want_conf)


class _Faces:
    """A store as the StoreClassifier sees it: counts() claims `claimed` (identities, faces) while
    embeddings() hands out a small real set, and records which thread read it (the one that fits)."""

    def __init__(self, claimed: tuple[int, int]) -> None:
        self.claimed = claimed
        self.at = 1
        self.fit_threads: list[str] = []
        x, self.labels, _, _ = clusters(3, per_class=2)
        self.x = x
        self.saved: dict | None = None

    def version(self) -> int:
        return self.at

    def counts(self) -> tuple[int, int]:
        return self.claimed

    def embeddings(self):
        self.fit_threads.append(threading.current_thread().name)
        return np.arange(len(self.x)), self.x, self.labels

    def save_classifier(self, arrays, store_version: int) -> None:
        self.saved = {"version": store_version, **arrays}

    def load_classifier(self):
        return None

    def classifier_version(self) -> int:
        return -1

    def state(self) -> StoreState:
        """What a request reads once and hands to current()."""
        return StoreState(self.at, *self.claimed, -1)


def test_a_small_gallery_is_refit_on_the_request() -> None:
    faces = _Faces((10, 20))
    svm = StoreClassifier(faces)
    try:
        classifier, stale = svm.current(faces.state())
        assert classifier is not None and not stale
        assert faces.fit_threads == [threading.current_thread().name]
    finally:
        svm.close()


def test_a_thousand_identities_of_two_faces_are_refit_in_the_background_while_the_old_svm_answers() -> None:
    faces = _Faces((1000, 2000))  # ~2,000,000 units: seconds of fitting, which the old policy did inline
    svm = StoreClassifier(faces)
    try:
        # No SVM yet: the nearest neighbour answers meanwhile.
        assert svm.current(faces.state()) == (None, True)
        svm.wait_for_refit(60)
        first, stale = svm.current(faces.state())
        assert first is not None and not stale
        faces.at = 2  # an enrolment
        assert svm.current(faces.state()) == (first, True)  # the previous SVM answers, and says it is stale
        svm.wait_for_refit(60)
        fresh, stale = svm.current(faces.state())
        assert fresh is not first and not stale
        assert faces.fit_threads and not any(t == threading.current_thread().name for t in faces.fit_threads)
        assert all(t.startswith("svm-refit") for t in faces.fit_threads)
    finally:
        svm.close()


@pytest.mark.parametrize(("budget_s", "inline"), [(0.0, False), (1e9, True)])
def test_the_inline_budget_decides_where_the_refit_runs(budget_s: float, inline: bool) -> None:
    faces = _Faces((1000, 2000) if inline else (2, 4))
    svm = StoreClassifier(faces, inline_refit_max_s=budget_s)
    try:
        classifier, stale = svm.current(faces.state())
        assert (classifier is not None, stale) == (inline, not inline)
        svm.wait_for_refit(60)
        assert (faces.fit_threads[0] == threading.current_thread().name) == inline
    finally:
        svm.close()


def test_the_cost_of_a_refit_is_identities_times_faces() -> None:
    assert refit_units(1000, 2000) == 2_000_000
    assert (
        refit_units(10, 20) * COLD_SECONDS_PER_UNIT <= 0.05 < refit_units(1000, 2000) * COLD_SECONDS_PER_UNIT
    )

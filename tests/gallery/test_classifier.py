"""The linear SVM: separable clusters, the two-identity minimum, and a pickle-free round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerec.errors import InvalidInput, Precondition
from gallery.classifier import IdentityClassifier


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

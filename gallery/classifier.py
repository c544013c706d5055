"""A linear SVM over enrolled embeddings for closed-set identification, kept as plain arrays (no pickle),
and its life cycle beside a store: fit at a store version, saved with it, refit when the store moved on."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sklearn.svm import LinearSVC

from facerec.errors import FacerecError, InvalidInput, Precondition
from gallery.rows import StoreState

log = logging.getLogger(__name__)

# Decision scores of a linear SVM on unit vectors sit around ±1; scaling them before the softmax turns a
# clear margin (winner +1, the rest -1) into a confidence near 1, and a narrow one into a split.
DEFAULT_SCORE_SCALE = 4.0


class IdentityClassifier:
    """One-vs-rest linear SVM (sklearn LinearSVC) over unit embeddings.

    After fit, only the weights are kept (coef (c, d), intercept (c,), classes (c,)) and prediction is
    plain numpy, so a classifier rebuilt from its arrays predicts exactly the same. Confidence is the
    softmax of the scaled decision scores: a ranking aid in 0..1, not a calibrated probability (the
    distance threshold decides known/unknown).
    """

    def __init__(self, C: float = 10.0, score_scale: float = DEFAULT_SCORE_SCALE) -> None:
        self._C = C
        self._score_scale = float(score_scale)
        self._coef: NDArray[np.float64] | None = None
        self._intercept: NDArray[np.float64] | None = None
        self._classes: list[str] = []

    @property
    def fitted(self) -> bool:
        return self._coef is not None

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

    def fit(self, X: NDArray[np.float32], labels: Sequence[str]) -> float:
        """Fit on X (n, d) with one label per row; returns the training accuracy.

        Raises Precondition with fewer than two distinct identities (an SVM needs two sides).
        """
        x = self._check(X)
        labels = [str(label) for label in labels]
        if len(labels) != len(x):
            raise InvalidInput(f"{len(labels)} labels for {len(x)} embeddings.")
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise Precondition("The classifier needs faces of at least two identities.")
        svm = LinearSVC(C=self._C, max_iter=20_000, random_state=0)
        svm.fit(x.astype(np.float64), labels)
        classes = [str(c) for c in svm.classes_]
        coef = np.asarray(svm.coef_, dtype=np.float64)
        intercept = np.asarray(svm.intercept_, dtype=np.float64)
        if len(classes) == 2:
            # sklearn keeps one hyperplane for two classes (positive = classes[1]); store both sides so
            # prediction is the same code for any number of classes.
            coef = np.vstack([-coef, coef])
            intercept = np.concatenate([-intercept, intercept])
        self._coef, self._intercept, self._classes = coef, intercept, classes
        predicted, _ = self.predict(x)
        return float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))

    def decision_scores(self, X: NDArray[np.float32]) -> NDArray[np.float64]:
        """(n, c) one-vs-rest decision scores, columns in `classes` order."""
        if self._coef is None or self._intercept is None:
            raise Precondition("The classifier has not been trained.")
        return self._check(X).astype(np.float64) @ self._coef.T + self._intercept

    def predict(self, X: NDArray[np.float32]) -> tuple[list[str], NDArray[np.float32]]:
        """Labels and confidences (n,) in 0..1 for X (n, d). Precondition when not trained."""
        scores = self.decision_scores(X)
        best = np.argmax(scores, axis=1)
        z = self._score_scale * (scores - scores.max(axis=1, keepdims=True))
        softmax = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        confidence = softmax[np.arange(len(best)), best].astype(np.float32)
        return [self._classes[i] for i in best], confidence

    def _check(self, X: NDArray[np.float32]) -> NDArray[np.float32]:
        x = np.asarray(X)
        if x.ndim != 2 or not len(x):
            raise InvalidInput(f"Embeddings must have shape (n, d) with n > 0, not {x.shape}.")
        if self._coef is not None and x.shape[1] != self._coef.shape[1]:
            raise InvalidInput(f"Embeddings must have {self._coef.shape[1]} values, not {x.shape[1]}.")
        if not np.all(np.isfinite(x)):
            raise InvalidInput("Embeddings hold NaN or infinite values.")
        return x

    # -- persistence: plain arrays --------------------------------------------------------------------

    def to_arrays(self) -> dict[str, Any]:
        """coef (c, d) float64, intercept (c,) float64, classes (c,) unicode, score_scale () float64."""
        if self._coef is None or self._intercept is None:
            raise Precondition("The classifier has not been trained.")
        return {
            "coef": self._coef.copy(),
            "intercept": self._intercept.copy(),
            "classes": np.array(self._classes, dtype=np.str_),
            "score_scale": np.array(self._score_scale, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> IdentityClassifier:
        coef = np.asarray(arrays["coef"], dtype=np.float64)
        intercept = np.asarray(arrays["intercept"], dtype=np.float64)
        classes = [str(c) for c in np.asarray(arrays["classes"]).tolist()]
        if coef.ndim != 2 or coef.shape[0] != len(classes) or intercept.shape != (len(classes),):
            raise InvalidInput("Classifier arrays do not agree in shape.")
        out = cls(score_scale=float(arrays.get("score_scale", DEFAULT_SCORE_SCALE)))
        out._coef, out._intercept, out._classes = coef, intercept, classes
        return out

    def save(self, path: str | Path) -> None:
        """np.savez of to_arrays(); readable with np.load(path, allow_pickle=False)."""
        with open(path, "wb") as f:
            np.savez(f, **self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> IdentityClassifier:
        with np.load(path, allow_pickle=False) as arrays:
            return cls.from_arrays({key: arrays[key] for key in arrays.files})


class EnrolledFaces(Protocol):
    """What a StoreClassifier reads of the store, and where it keeps the fit (a part of
    gallery.ports.FaceStore): beside a SQLite file, inside a PostgreSQL database, so every replica
    serves the same fit."""

    def version(self) -> int: ...

    def classifier_version(self) -> int: ...

    def embeddings(self) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]: ...

    def save_classifier(self, arrays: dict[str, NDArray[Any]], store_version: int) -> None: ...

    def load_classifier(self) -> tuple[int, dict[str, NDArray[Any]]] | None: ...


# What one unit of a refit's cost (one identity's hyperplane over one face: LinearSVC fits one-vs-rest,
# so a fit costs about identities x faces units) is taken to take until this process has timed a fit of
# its own. Measured on the 2-core development machine: 7-10 us per unit from 100 x 2 to 1,000 x 2
# (1,000 identities of two faces: 2,000,000 units, 8-20 s), more per unit below (fixed costs).
COLD_SECONDS_PER_UNIT = 1e-5


def refit_units(identities: int, faces: int) -> int:
    """The cost of fitting the SVM, in units that scale its time: identities x faces."""
    return identities * faces


class StoreClassifier:
    """The SVM of a store: fit on all its faces at a store version, kept by the store (with that
    version), adopted at start or from another replica when the version still matches, and refit
    once the store has changed. Thread-safe.

    A stale SVM is refit on the request only when that refit is known to be cheap: its predicted time,
    identities x faces times the seconds per unit this process last measured (COLD_SECONDS_PER_UNIT
    before its first fit), within inline_refit_max_s. Otherwise it is refit in the background while the
    previous SVM (or, when there is none, the nearest neighbour) answers, gated by the distance
    threshold, and Identify's classifier_stale says so: 1,000 identities of two faces (2,000 faces)
    take seconds to fit, and every Identify after an Enroll used to wait for it.
    """

    def __init__(self, faces: EnrolledFaces, inline_refit_max_s: float = 0.05) -> None:
        self._faces = faces
        self._inline_max_s = inline_refit_max_s
        self._seconds_per_unit = COLD_SECONDS_PER_UNIT
        self._lock = threading.Lock()
        self._classifier: IdentityClassifier | None = None
        self._version = -1
        # One background refit at a time; a change during it causes the next one.
        self._refitter = ThreadPoolExecutor(1, thread_name_prefix="svm-refit")
        self._refitting: Future[None] | None = None
        self._load()

    @property
    def version(self) -> int:
        """The store version the classifier was fit at; -1 when there is none."""
        return self._version if self._classifier is not None else -1

    def stale(self, state: StoreState) -> bool:
        """No classifier, or one fit before the store's latest change (state: the store's, read by the caller)."""
        return self._classifier is None or self._version != state.version

    def fit(self) -> float:
        """Refits now; returns the training accuracy. Precondition with fewer than two identities.
        The fit runs outside the lock: identifications keep answering with the previous SVM meanwhile."""
        classifier, version, accuracy = self._fit()
        self._install(classifier, version)
        return accuracy

    def adopt(self) -> bool:
        """Serves the fit the store keeps (another replica's Train) when it is current; True when adopted."""
        with self._lock:
            return self._load()

    def current(self, state: StoreState) -> tuple[IdentityClassifier | None, bool]:
        """The SVM to answer with now, and whether it is stale (being refit in the background). state: the
        store's, read once by the request.

        A current fit kept by the store is adopted; a refit predicted to be cheap is made here; a dearer
        one starts in the background and the previous SVM answers (None when there is none yet, or when
        fewer than two identities are left)."""
        with self._lock:
            if self._classifier is not None and self._version == state.version:
                return self._classifier, False
            if self._load(state):
                return self._classifier, False
            if self._refitting is not None and not self._refitting.done():
                return self._classifier, True  # a refit is on its way: the request does not wait for it
            if self._refit_inline(state.identities, state.faces):
                try:
                    classifier, version, _ = self._fit()
                except Precondition:
                    return None, False  # identities were removed meanwhile: fewer than two left
                self._classifier, self._version = classifier, version
                self._save(classifier, version)
                return classifier, False
            if self._refitting is None or self._refitting.done():
                self._refitting = self._refitter.submit(self._refit_in_background)
            return self._classifier, True

    def refit_in_background(self) -> None:
        """Starts a refit off the request path (a start that found no usable SVM kept); until it ends,
        current() answers with none, stale."""
        with self._lock:
            if self._refitting is None or self._refitting.done():
                self._refitting = self._refitter.submit(self._refit_in_background)

    def _refit_inline(self, identities: int, faces: int) -> bool:
        """Whether a refit of this size is cheap enough to make the request wait for it."""
        return refit_units(identities, faces) * self._seconds_per_unit <= self._inline_max_s

    def wait_for_refit(self, timeout_s: float | None = None) -> None:
        """Blocks until a background refit in progress has ended."""
        refitting = self._refitting
        if refitting is not None:
            wait([refitting], timeout_s)

    def close(self) -> None:
        """Lets a background refit end (it reads the store) and stops the refit thread."""
        self._refitter.shutdown(wait=True, cancel_futures=True)

    def _refit_in_background(self) -> None:
        try:
            classifier, version, _ = self._fit()
        except Precondition:
            return
        except Exception:
            log.exception("the background SVM refit failed; the previous SVM keeps answering")
            return
        self._install(classifier, version)

    def _install(self, classifier: IdentityClassifier, version: int) -> None:
        with self._lock:
            if version < self._version:
                return  # a newer fit got there first
            self._classifier, self._version = classifier, version
        self._save(classifier, version)

    def _fit(self) -> tuple[IdentityClassifier, int, float]:
        """A new SVM on every enrolled face, the store version it was fit at, and its training accuracy."""
        # The version is read first: a change during the fit then just causes another refit later.
        version = self._faces.version()
        _, vectors, labels = self._faces.embeddings()
        classifier = IdentityClassifier()
        clock = time.perf_counter()
        accuracy = classifier.fit(vectors, labels)
        units = refit_units(len(set(labels)), len(labels))
        # What the next decision to refit inline predicts from: this machine, under its present load.
        self._seconds_per_unit = (time.perf_counter() - clock) / max(1, units)
        log.info(
            "SVM fit on %s faces of %s identities: train accuracy %.3f",
            len(labels),
            len(set(labels)),
            accuracy,
        )
        return classifier, version, accuracy

    def _save(self, classifier: IdentityClassifier, version: int) -> None:
        try:
            self._faces.save_classifier(classifier.to_arrays(), version)
        except FacerecError as exc:  # the store is down: the fit still serves this process
            log.warning("could not keep the SVM in the store: %s", exc)

    def _load(self, state: StoreState | None = None) -> bool:
        """Adopts the fit the store keeps when it was fit at the store's version (state's, else read now).
        Its version is read first, without its arrays: a stale fit is never loaded."""
        version = state.version if state is not None else self._faces.version()
        kept = state.classifier_version if state is not None else self._faces.classifier_version()
        if kept != version:
            return False  # none, or stale: refit on the next identification
        saved = self._faces.load_classifier()
        if saved is None or saved[0] != version:
            return False
        try:
            classifier = IdentityClassifier.from_arrays(saved[1])
        except (ValueError, KeyError, FacerecError) as exc:
            log.warning("ignoring the unreadable saved SVM: %s", exc)
            return False
        self._classifier, self._version = classifier, version
        return True

"""The gallery facade: enroll, identify, verify, search and manage identities. Pure: no grpc.

The store is the truth. The FAISS index and the SVM are derived from it: the index is updated
right after each store commit (under one write lock) and built from the store at start unless a
saved index of the same store version exists; the SVM is refit by `train` and lazily whenever
the store's version differs from the one it was fit at, and saved as plain arrays beside the store.

Identification is open-set: the SVM's (or, with one identity or more than svm_max_identities,
the nearest neighbour's) answer stands only when the face lies within the threshold of that
identity's nearest enrolled face; otherwise it is unknown, with the nearest identities as
candidates.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from facerec.calibration import DEFAULT_IDENTIFICATION_THRESHOLD, DEFAULT_THRESHOLD, Calibration
from facerec.errors import FacerecError, InvalidInput, NotFound, Precondition
from gallery import validation
from gallery.classifier import IdentityClassifier
from gallery.index import FaceIndex
from gallery.ports import Box, DetectedFace, DetectOptions, Embedded, FaceDetector, FaceEmbedder, Point
from gallery.store import FaceRow, IdentityRow, NewFace, Store

log = logging.getLogger(__name__)

SVM = "svm"
NEAREST = "nearest-neighbour"


class Outcome(enum.Enum):
    """What happened to one picture or embedding of an Enroll (names as in the proto's EnrollOutcome)."""

    ENROLLED = "ENROLLED"
    NO_FACE = "NO_FACE"
    MULTIPLE_FACES = "MULTIPLE_FACES"
    DUPLICATE = "DUPLICATE"
    REJECTED_QUALITY = "REJECTED_QUALITY"
    INVALID = "INVALID"


@dataclass(frozen=True)
class EnrollResult:
    outcome: Outcome
    face_id: int = 0
    box: Box | None = None
    error: FacerecError | None = None
    faces_found: int = 0


@dataclass(frozen=True)
class Candidate:
    """An identity near the query: distance to its nearest enrolled face, and that face."""

    identity: str
    distance: float
    face_id: int


@dataclass(frozen=True)
class IdentifiedFace:
    identity: str  # "" when unknown
    known: bool
    distance: float  # to the answer's nearest face, or the nearest identity's when unknown
    confidence: float  # 0 when unknown
    candidates: list[Candidate]
    box: Box | None = None
    landmarks: tuple[Point, ...] = ()
    detection_confidence: float = 0.0


@dataclass(frozen=True)
class Identification:
    faces: list[IdentifiedFace]
    threshold: float
    method: str  # "svm" or "nearest-neighbour"
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class Verification:
    match: bool
    distance: float
    threshold: float
    box_a: Box | None = None
    box_b: Box | None = None


@dataclass(frozen=True)
class SearchHit:
    face_id: int
    identity: str
    distance: float


@dataclass(frozen=True)
class Training:
    identities: int
    faces: int
    train_accuracy: float


@dataclass(frozen=True)
class GalleryStats:
    identities: int
    faces: int
    index_kind: str
    index_detail: str
    index_size: int
    model: str
    threshold: float
    threshold_source: str
    classifier: str
    classifier_stale: bool
    identification_threshold: float


@dataclass(frozen=True)
class GalleryOptions:
    """How the gallery decides. Enroll quality floors of 0 accept every face the detector returns."""

    threshold: float = DEFAULT_THRESHOLD
    threshold_source: str = "default"
    # Identify's default: the nearest of many faces lies closer than a typical pair (facerec.calibration).
    identification_threshold: float = DEFAULT_IDENTIFICATION_THRESHOLD
    svm_max_identities: int = 1000
    ivf_min_size: int = 50_000
    nprobe: int | None = None
    dimension: int = 128
    enroll_min_confidence: float = 0.0
    enroll_min_face_px: float = 0.0
    max_images_per_request: int = 64
    max_embeddings_per_request: int = 1000
    detect_options: DetectOptions = field(default_factory=DetectOptions)


@dataclass
class _Pending:
    slot: int
    face: NewFace
    outcome: Outcome
    faces_found: int


def sidecar_paths(store_path: Path) -> tuple[Path, Path]:
    """Where the saved index and SVM of a store live: beside it, named after it."""
    return (
        store_path.with_name(store_path.name + ".faiss"),
        store_path.with_name(store_path.name + ".svm.npz"),
    )


class Gallery:
    """Enrolled identities and their faces; detection and embedding go through the two ports."""

    def __init__(
        self,
        store: Store,
        index: FaceIndex,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        options: GalleryOptions = GalleryOptions(),
        index_path: Path | None = None,
        classifier_path: Path | None = None,
        calibration: Callable[[], Calibration] | None = None,
    ) -> None:
        """calibration: when given, the current thresholds, asked at every request, so thresholds saved by
        `facerec eval` take effect without a restart; else options' thresholds are used."""
        self._store = store
        self._calibration = calibration
        self._index = index
        self._detector = detector
        self._embedder = embedder
        self.options = options
        self._index_path = index_path
        self._saved_version = -1  # the store version the index file on disk mirrors; -1 = unknown
        self._classifier_path = classifier_path
        # Store commit + index update happen under this lock, so the two never disagree for long and
        # a duplicate check and its insert are one step.
        self._write = threading.Lock()
        self._classifier_lock = threading.Lock()
        self._classifier: IdentityClassifier | None = None
        self._classifier_version = -1
        self._load_classifier()
        # Identify's seconds per step since start (logged by close): calls to the detector and the
        # embedder as the gallery waits for them, and the index search plus the classifier.
        self.timings: Counter[str] = Counter()
        self._timings_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        store_path: Path,
        model: str,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        options: GalleryOptions = GalleryOptions(),
        calibration: Callable[[], Calibration] | None = None,
    ) -> Gallery:
        """Opens (or creates) the store for `model`, then loads its saved index when it matches the
        store's version, else builds the index from the store."""
        store_path = Path(store_path)
        store_path.parent.mkdir(parents=True, exist_ok=True)
        store = Store(store_path, model, dim=options.dimension)
        index_path, classifier_path = sidecar_paths(store_path)
        version = store.version()
        index = FaceIndex.load(
            index_path,
            version,
            dim=options.dimension,
            ivf_min_size=options.ivf_min_size,
            nprobe=options.nprobe,
        )
        loaded = index is not None
        if index is None:
            ids, vectors, _ = store.embeddings()
            index = FaceIndex.build(
                ids, vectors, dim=options.dimension, ivf_min_size=options.ivf_min_size, nprobe=options.nprobe
            )
            log.info("built the %s index from the store: %s faces", index.kind, index.ntotal)
        else:
            log.info("loaded the saved %s index: %s faces", index.kind, index.ntotal)
        gallery = cls(store, index, detector, embedder, options, index_path, classifier_path, calibration)
        if loaded:
            gallery._saved_version = version
        return gallery

    @property
    def model(self) -> str:
        return self._store.model

    @property
    def threshold(self) -> float:
        return self._threshold()[0]

    @property
    def identification_threshold(self) -> float:
        if self._calibration is not None:
            return self._calibration().identification_threshold
        return self.options.identification_threshold

    def _threshold(self) -> tuple[float, str]:
        if self._calibration is not None:
            current = self._calibration()
            return current.threshold, current.source
        return self.options.threshold, self.options.threshold_source

    def checkpoint(self) -> bool:
        """Saves the index with the store's version when the store changed since the last save, so a
        start after a crash loads it instead of rebuilding (minutes at millions of faces). Returns
        whether it saved. Enrolls wait meanwhile; searches do not."""
        if self._index_path is None:
            return False
        with self._write:
            version = self._store.version()
            if version == self._saved_version:
                return False
            try:
                self._index.save(self._index_path, version)
            except OSError as exc:
                log.warning("could not save the index to %s: %s", self._index_path, exc)
                return False
            self._saved_version = version
            return True

    def close(self) -> None:
        """Saves the index with the store's version (a later start loads it instead of rebuilding)."""
        log.info("timings %s", json.dumps(dict(self.timings), sort_keys=True))
        self.checkpoint()
        with self._write:
            self._store.close()

    # --- enrolment ---------------------------------------------------------------------------------

    def enroll(
        self,
        identity: str,
        images: Sequence[bytes] = (),
        embeddings: Sequence[tuple[Sequence[float], str]] = (),
        options: DetectOptions | None = None,
        timeout_s: float | None = None,
    ) -> list[EnrollResult]:
        """Adds faces to `identity`: the largest face of each picture, and each (values, model) embedding.

        Returns one result per picture, then one per embedding. Bad pictures or embeddings get an
        INVALID result and the rest is still enrolled. Returns once the faces are durably stored and
        in the index.
        """
        name = validation.identity(identity)
        if not images and not embeddings:
            raise InvalidInput("Nothing to enroll: give at least one image or embedding.")
        if len(images) > self.options.max_images_per_request:
            raise InvalidInput(
                f"{len(images)} images in one Enroll; at most {self.options.max_images_per_request} are allowed."
            )
        if len(embeddings) > self.options.max_embeddings_per_request:
            raise InvalidInput(
                f"{len(embeddings)} embeddings in one Enroll; "
                f"at most {self.options.max_embeddings_per_request} are allowed."
            )
        results: list[EnrollResult | None] = [None] * (len(images) + len(embeddings))
        pending: list[_Pending] = []
        repeats: dict[int, int] = {}  # slot -> first slot with the same bytes
        first_slot: dict[str, int] = {}
        to_detect: list[tuple[int, bytes, str]] = []
        for slot, data in enumerate(images):
            if not data:
                results[slot] = EnrollResult(
                    Outcome.INVALID, error=InvalidInput("The image is empty (0 bytes).")
                )
                continue
            sha = hashlib.sha256(data).hexdigest()
            if sha in first_slot:
                repeats[slot] = first_slot[sha]
                continue
            first_slot[sha] = slot
            existing = self._store.find_face_by_image(name, sha)
            if existing is not None:
                results[slot] = EnrollResult(Outcome.DUPLICATE, face_id=existing)
                continue
            to_detect.append((slot, data, sha))

        if to_detect:
            detected = self._detector.detect(
                [data for _, data, _ in to_detect], options or self.options.detect_options, timeout_s
            )
            chosen: list[tuple[int, str, DetectedFace, int]] = []
            for (slot, _, sha), image in zip(to_detect, detected, strict=True):
                if image.error is not None:
                    results[slot] = EnrollResult(Outcome.INVALID, error=image.error)
                elif not image.faces:
                    results[slot] = EnrollResult(Outcome.NO_FACE)
                else:
                    face = max(image.faces, key=lambda f: f.area)
                    if not self._good_enough(face):
                        results[slot] = EnrollResult(
                            Outcome.REJECTED_QUALITY, box=face.box, faces_found=len(image.faces)
                        )
                    else:
                        chosen.append((slot, sha, face, len(image.faces)))
            if chosen:
                embedded = self._embed([face.crop for _, _, face, _ in chosen], timeout_s)
                for (slot, sha, face, found), vector in zip(chosen, embedded.vectors, strict=True):
                    if isinstance(vector, FacerecError):
                        results[slot] = EnrollResult(
                            Outcome.INVALID, box=face.box, error=vector, faces_found=found
                        )
                        continue
                    outcome = Outcome.MULTIPLE_FACES if found > 1 else Outcome.ENROLLED
                    pending.append(_Pending(slot, NewFace(vector, sha, face.box), outcome, found))

        for j, (values, model) in enumerate(embeddings):
            slot = len(images) + j
            try:
                vector = validation.embedding(values, self.options.dimension, model, self.model)
            except FacerecError as exc:
                results[slot] = EnrollResult(Outcome.INVALID, error=exc)
                continue
            pending.append(_Pending(slot, NewFace(vector), Outcome.ENROLLED, 0))

        if pending:
            self._commit(name, pending, results)
        for slot, first in repeats.items():
            earlier = results[first]
            assert earlier is not None
            if earlier.face_id:
                results[slot] = EnrollResult(
                    Outcome.DUPLICATE,
                    face_id=earlier.face_id,
                    box=earlier.box,
                    faces_found=earlier.faces_found,
                )
            else:
                results[slot] = earlier
        return [r if r is not None else EnrollResult(Outcome.INVALID) for r in results]

    def _commit(self, name: str, pending: list[_Pending], results: list[EnrollResult | None]) -> None:
        with self._write:
            keep = []
            for item in pending:
                # A concurrent Enroll may have stored the same picture since the first check.
                sha = item.face.image_sha256
                existing = self._store.find_face_by_image(name, sha) if sha else None
                if existing is not None:
                    results[item.slot] = EnrollResult(
                        Outcome.DUPLICATE, face_id=existing, box=item.face.box, faces_found=item.faces_found
                    )
                else:
                    keep.append(item)
            if not keep:
                return
            ids = self._store.add_faces(name, [item.face for item in keep])
            self._index.add(
                np.asarray(ids, dtype=np.int64),
                np.stack([item.face.embedding for item in keep]).astype(np.float32),
            )
        for item, face_id in zip(keep, ids, strict=True):
            results[item.slot] = EnrollResult(
                item.outcome, int(face_id), item.face.box, None, item.faces_found
            )

    def _good_enough(self, face: DetectedFace) -> bool:
        return (
            face.confidence >= self.options.enroll_min_confidence
            and min(face.box[2], face.box[3]) >= self.options.enroll_min_face_px
        )

    # --- identification ----------------------------------------------------------------------------

    def identify_image(
        self,
        image: bytes,
        top_k: int = 0,
        threshold: float = 0.0,
        options: DetectOptions | None = None,
        timeout_s: float | None = None,
    ) -> Identification:
        """Identifies every face on the picture, by descending detection confidence."""
        k = validation.top_k(top_k)
        t = validation.threshold(threshold, self.identification_threshold)
        if not image:
            raise InvalidInput("No image to identify: give an image or an embedding.")
        clock = time.perf_counter()
        detected = self._detector.detect([image], options or self.options.detect_options, timeout_s)[0]
        detect_s = time.perf_counter() - clock
        if detected.error is not None:
            raise detected.error
        if not detected.faces:
            return Identification(
                [], t, self._method(self._store.counts()[0]), detected.width, detected.height
            )
        clock = time.perf_counter()
        embedded = self._embed([f.crop for f in detected.faces], timeout_s)
        embed_s = time.perf_counter() - clock
        vectors = []
        for vector in embedded.vectors:
            if isinstance(vector, FacerecError):
                raise vector
            vectors.append(vector)
        clock = time.perf_counter()
        method, answers = self._classify(np.stack(vectors).astype(np.float32), k, t)
        with self._timings_lock:
            self.timings["identify_images"] += 1
            self.timings["identify_faces"] += len(vectors)
            self.timings["detect_call_s"] += detect_s
            self.timings["embed_call_s"] += embed_s
            self.timings["search_s"] += time.perf_counter() - clock
        faces = [
            IdentifiedFace(
                a.identity,
                a.known,
                a.distance,
                a.confidence,
                a.candidates,
                box=f.box,
                landmarks=f.landmarks,
                detection_confidence=f.confidence,
            )
            for a, f in zip(answers, detected.faces, strict=True)
        ]
        return Identification(faces, t, method, detected.width, detected.height)

    def identify_embedding(
        self, values: Sequence[float], model: str = "", top_k: int = 0, threshold: float = 0.0
    ) -> Identification:
        """Identifies one face given as an embedding of the gallery's model."""
        k = validation.top_k(top_k)
        t = validation.threshold(threshold, self.identification_threshold)
        vector = validation.embedding(values, self.options.dimension, model, self.model)
        method, answers = self._classify(vector[None, :], k, t)
        return Identification(answers, t, method)

    def _method(self, identities: int) -> str:
        return SVM if 2 <= identities <= self.options.svm_max_identities else NEAREST

    def _classify(self, xq: NDArray[np.float32], k: int, t: float) -> tuple[str, list[IdentifiedFace]]:
        """xq: (m, d) unit vectors. Returns the method used and one answer per row."""
        method = self._method(self._store.counts()[0])
        candidates = self._candidates(xq, k, t)
        labels: list[str] = []
        confidences: NDArray[np.float32] = np.zeros(len(xq), dtype=np.float32)
        if method == SVM:
            classifier = self._fresh_classifier()
            if classifier is None:
                method = NEAREST
            else:
                labels, confidences = classifier.predict(xq)
        answers = []
        for i, near in enumerate(candidates):
            if not near:
                answers.append(IdentifiedFace("", False, 0.0, 0.0, []))
                continue
            if method == SVM:
                label = labels[i]
                distance = next((c.distance for c in near if c.identity == label), None)
                if distance is None:
                    distance = self._distance_to_identity(xq[i], label)
                confidence = float(confidences[i])
            else:
                label, distance = near[0].identity, near[0].distance
                confidence = float(np.clip(1.0 - distance / t, 0.0, 1.0))
            if distance <= t:
                answers.append(IdentifiedFace(label, True, float(distance), confidence, near[:k]))
            else:
                answers.append(IdentifiedFace("", False, near[0].distance, 0.0, near[:k]))
        return method, answers

    def _candidates(self, xq: NDArray[np.float32], k: int, t: float) -> list[list[Candidate]]:
        """Per row of xq, the nearest identities (best face each), nearest first, at least k when the
        gallery holds k. Faces removed from the store since the search are skipped."""
        total = self._index.ntotal
        if total == 0:
            return [[] for _ in range(len(xq))]
        k_faces = min(total, max(4 * k, 16))
        while True:
            dist, ids = self._index.search(xq, k_faces, exact_beyond=t)
            found = sorted({int(i) for i in ids.ravel() if i >= 0})
            owners = self._store.identities_of(found) if found else {}
            out = []
            for row_d, row_i in zip(dist, ids, strict=True):
                best: dict[str, Candidate] = {}
                for distance, face_id in zip(row_d, row_i, strict=True):
                    owner = owners.get(int(face_id))
                    if face_id < 0 or owner is None or owner in best:
                        continue
                    best[owner] = Candidate(owner, float(distance), int(face_id))
                out.append(list(best.values()))
            if k_faces >= total or all(len(c) >= k for c in out):
                return out
            k_faces = min(total, k_faces * 4)

    def _distance_to_identity(self, vector: NDArray[np.float32], identity: str) -> float:
        """Euclidean distance from a unit vector to the identity's nearest face; inf when it has none."""
        _, vectors = self._store.embeddings_of(identity)
        if len(vectors) == 0:
            return float("inf")
        return float(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (vectors @ vector))).min())

    # --- the SVM ------------------------------------------------------------------------------------

    def train(self) -> Training:
        """Refits the SVM on every enrolled face. Precondition with fewer than two identities (or more
        than svm_max_identities, where identification is nearest-neighbour)."""
        identities, faces = self._store.counts()
        if identities < 2:
            raise Precondition(f"Training needs at least two identities; the gallery holds {identities}.")
        if identities > self.options.svm_max_identities:
            raise Precondition(
                f"The gallery holds {identities} identities, more than the SVM's limit of "
                f"{self.options.svm_max_identities}; identification there is nearest-neighbour."
            )
        with self._classifier_lock:
            accuracy = self._fit_locked()
        identities, faces = self._store.counts()
        return Training(identities, faces, accuracy)

    def _fresh_classifier(self) -> IdentityClassifier | None:
        with self._classifier_lock:
            if self._classifier is None or self._classifier_version != self._store.version():
                try:
                    self._fit_locked()
                except Precondition:
                    return None  # identities were removed meanwhile: fewer than two left
            return self._classifier

    def _fit_locked(self) -> float:
        # The version is read first: a change during the fit then just causes another refit later.
        version = self._store.version()
        _, vectors, labels = self._store.embeddings()
        classifier = IdentityClassifier()
        accuracy = classifier.fit(vectors, labels)
        self._classifier, self._classifier_version = classifier, version
        log.info(
            "SVM fit on %s faces of %s identities: train accuracy %.3f",
            len(labels),
            len(set(labels)),
            accuracy,
        )
        self._save_classifier(classifier, version)
        return accuracy

    def _save_classifier(self, classifier: IdentityClassifier, version: int) -> None:
        if self._classifier_path is None:
            return
        path = self._classifier_path
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".svm-", suffix=".npz")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, store_version=np.int64(version), **classifier.to_arrays())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not save the SVM to %s: %s", path, exc)

    def _load_classifier(self) -> None:
        path = self._classifier_path
        if path is None or not path.is_file():
            return
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in saved.files}
            version = int(arrays.pop("store_version"))
            if version != self._store.version():
                return  # stale: refit lazily on the next identification
            self._classifier = IdentityClassifier.from_arrays(arrays)
            self._classifier_version = version
        except (OSError, ValueError, KeyError, FacerecError) as exc:
            log.warning("ignoring the unreadable saved SVM %s: %s", path, exc)

    # --- verification and search ---------------------------------------------------------------------

    def verify(
        self,
        image_a: bytes,
        image_b: bytes = b"",
        identity: str = "",
        threshold: float = 0.0,
        timeout_s: float | None = None,
    ) -> Verification:
        """Same person? The largest face of image_a against image_b's largest face, or against the
        identity's nearest enrolled face."""
        t = validation.threshold(threshold, self.threshold)
        if not image_a:
            raise InvalidInput(
                "image_a is missing: Verify compares image_a with image_b or with an identity."
            )
        if identity and image_b:
            raise InvalidInput("Give either image_b or an identity to compare image_a with, not both.")
        if not identity and not image_b:
            raise InvalidInput("Nothing to compare image_a with: give image_b or an identity.")
        if identity:
            validation.identity(identity)
            if not self._store.has_identity(identity):
                raise NotFound(f"No identity {identity!r} is enrolled.")
        pictures = [image_a, image_b] if image_b else [image_a]
        detected = self._detector.detect(pictures, self.options.detect_options, timeout_s)
        faces = []
        for label, image in zip(("image_a", "image_b"), detected, strict=False):
            if image.error is not None:
                raise type(image.error)(f"{label}: {image.error}")
            if not image.faces:
                raise InvalidInput(f"No face was found on {label}.")
            faces.append(max(image.faces, key=lambda f: f.area))
        embedded = self._embed([f.crop for f in faces], timeout_s)
        vectors = []
        for vector in embedded.vectors:
            if isinstance(vector, FacerecError):
                raise vector
            vectors.append(vector)
        if identity:
            distance = self._distance_to_identity(vectors[0], identity)
            if not np.isfinite(distance):
                raise NotFound(f"No identity {identity!r} is enrolled.")
            return Verification(distance <= t, distance, t, faces[0].box)
        distance = float(np.linalg.norm(vectors[0].astype(np.float64) - vectors[1].astype(np.float64)))
        return Verification(distance <= t, distance, t, faces[0].box, faces[1].box)

    def search(self, values: Sequence[float], model: str = "", top_k: int = 0) -> list[SearchHit]:
        """The top_k nearest enrolled faces to an embedding, nearest first."""
        k = validation.top_k(top_k)
        vector = validation.embedding(values, self.options.dimension, model, self.model)
        if self._index.ntotal == 0:
            return []
        dist, ids = self._index.search(vector[None, :], min(k, self._index.ntotal))
        found = [int(i) for i in ids[0] if i >= 0]
        owners = self._store.identities_of(found) if found else {}
        return [
            SearchHit(int(i), owners[int(i)], float(d))
            for d, i in zip(dist[0], ids[0], strict=True)
            if int(i) in owners
        ]

    # --- management ---------------------------------------------------------------------------------

    def list_identities(self, page_size: int = 0, page_token: str = "") -> tuple[list[IdentityRow], str]:
        """A page of identities in name order and the token of the next page ("" on the last)."""
        size = validation.page_size(page_size)
        after = validation.decode_page_token(page_token)
        rows = self._store.list_identities(after, size + 1)
        if len(rows) > size:
            return rows[:size], validation.encode_page_token(rows[size - 1].identity)
        return rows, ""

    def get_identity(self, identity: str) -> tuple[IdentityRow, list[FaceRow]]:
        return self._store.get_identity(validation.identity(identity))

    def remove_identity(self, identity: str) -> int:
        """Removes the identity and its faces (store, then index); returns how many faces went."""
        name = validation.identity(identity)
        with self._write:
            removed = self._store.remove_identity(name)
            self._index.remove(removed)
        return len(removed)

    def remove_face(self, face_id: int) -> str:
        """Removes one face (store, then index); returns the identity it belonged to."""
        if face_id <= 0:
            raise NotFound(f"No face has id {face_id}.")
        with self._write:
            identity = self._store.remove_face(face_id)
            self._index.remove([face_id])
        return identity

    def stats(self) -> GalleryStats:
        identities, faces = self._store.counts()
        method = self._method(identities)
        threshold, source = self._threshold()
        stale = method == SVM and (
            self._classifier is None or self._classifier_version != self._store.version()
        )
        return GalleryStats(
            identities=identities,
            faces=faces,
            index_kind=self._index.kind,
            index_detail=self._index.detail,
            index_size=self._index.ntotal,
            model=self.model,
            threshold=threshold,
            threshold_source=source,
            classifier=method,
            classifier_stale=stale,
            identification_threshold=self.identification_threshold,
        )

    def _embed(self, crops: list, timeout_s: float | None) -> Embedded:
        embedded = self._embedder.embed(crops, timeout_s)
        if embedded.model and embedded.model != self.model:
            raise Precondition(
                f"The embedder serves model {embedded.model!r}, but this gallery holds {self.model!r}."
            )
        return embedded

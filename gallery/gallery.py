"""The gallery facade: enroll, identify, verify, search and manage identities. Pure: no grpc.

The store is the truth. The FAISS index and the SVM are derived from it: the index is updated
right after each store commit (under one write lock) and built from the store at start unless a
saved index of the same store version exists; the SVM (gallery.classifier.StoreClassifier) is refit
by `train` and lazily whenever the store's version differs from the one it was fit at, and saved as
plain arrays by the store (beside a SQLite file, inside PostgreSQL, so every replica serves it).
With a shared (PostgreSQL) store, each replica follows the store's change log (gallery/changes.py);
with a Milvus index, the replicas share it and a reconciler keeps it level (gallery/reconcile.py).
Enrolment's bookkeeping is gallery/enrolment.py; the answers are
gallery/results.py.

Identification is open-set: the SVM's (or, with one identity or more than svm_max_identities,
the nearest neighbour's) answer stands only when the face lies within the threshold of that
identity's nearest enrolled face; otherwise it is unknown, with the nearest identities as
candidates.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from facerec.calibration import IDENTIFICATION, Calibration
from facerec.errors import FacerecError, InvalidInput, NotFound, Precondition
from facerec.timings import Timings
from gallery import validation
from gallery.changes import ChangeFollower
from gallery.classifier import StoreClassifier
from gallery.enrolment import Enrolment
from gallery.index import FaceIndex
from gallery.index_milvus import MilvusIndex, MilvusSettings
from gallery.options import GalleryOptions
from gallery.ports import DetectedFace, DetectorOptions, Embedded, FaceDetector, FaceEmbedder, largest_face
from gallery.reconcile import Reconciler
from gallery.results import (
    NEAREST,
    SVM,
    Candidate,
    EnrollResult,
    GalleryStats,
    Identification,
    IdentifiedFace,
    NotIdentifiable,
    SearchHit,
    Training,
    Verification,
)
from gallery.store import FaceRow, IdentityRow
from gallery.stores import GalleryStore, open_store

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = GalleryOptions()


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
        store: GalleryStore,
        index: FaceIndex | MilvusIndex,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        options: GalleryOptions = DEFAULT_OPTIONS,
        index_path: Path | None = None,
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
        # Store commit + index update happen under this lock, so the two never disagree for long and
        # a duplicate check and its insert are one step.
        self._write = threading.Lock()
        self._classifier = StoreClassifier(store, options.svm_inline_refit_max_s)
        self._follower: ChangeFollower | None = None
        self._reconciler: Reconciler | None = None
        self._closed = False
        self._enrolment = Enrolment(store, index, detector, self._embed, self._write, options)
        # Identify's seconds per step since start (logged by close): calls to the detector and the
        # embedder as the gallery waits for them, and the index search plus the classifier.
        self.timings = Timings()

    @classmethod
    def open(
        cls,
        store_location: str | Path,
        model: str,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        options: GalleryOptions = DEFAULT_OPTIONS,
        calibration: Callable[[], Calibration] | None = None,
        password_file: str = "",
        milvus: MilvusSettings | None = None,
        reconcile_s: float = 30.0,
    ) -> Gallery:
        """Opens (or creates) the store for `model`: a SQLite path or a postgresql:// URL. Then loads a
        SQLite store's saved index when it matches the store's version, else builds the index from the
        store. A shared (PostgreSQL) store's changes by other replicas are followed from then on.
        With `milvus`, the index is that shared collection instead, reconciled with the store every
        reconcile_s (gallery/reconcile.py)."""
        store = open_store(store_location, model, options.dimension, password_file)
        # Read before the embeddings: changes committed meanwhile are replayed by the follower (idempotent).
        version = store.version()
        if milvus is not None:
            try:
                shared = MilvusIndex(milvus, model, options.dimension, store.identities_of)
            except BaseException:
                store.close()
                raise
            gallery = cls(store, shared, detector, embedder, options, None, calibration)
            gallery._reconciler = Reconciler(store, shared, reconcile_s)
            gallery._reconciler.start()
            gallery._start_following(version)
            return gallery
        index_path = None if store.shared else sidecar_paths(Path(store_location).expanduser())[0]
        index = None
        if index_path is not None:
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
        gallery = cls(store, index, detector, embedder, options, index_path, calibration)
        if loaded:
            gallery._saved_version = version
        gallery._start_following(version)
        return gallery

    def _start_following(self, version: int) -> None:
        if self._store.shared:
            self._follower = ChangeFollower(self, self._store, version, self.options.follow_poll_s)  # type: ignore[arg-type]
            self._follower.start()

    @property
    def model(self) -> str:
        return self._store.model

    @property
    def threshold(self) -> float:
        return self._current().threshold

    @property
    def identification_threshold(self) -> float:
        return self._current().identification_threshold

    def _current(self) -> Calibration:
        if self._calibration is not None:
            return self._calibration()
        o = self.options
        return Calibration(
            o.threshold,
            o.threshold_source,
            self.model,
            o.identification_threshold,
            o.operating_point,
            o.operating_points,
        )

    def _decision(self, threshold: float, operating_point: str, identify: bool) -> tuple[float, str]:
        """The threshold a request asked for (a distance, a point's name, or neither: the default) and
        the name of its point ("" for a distance the request gave)."""
        current = self._current()
        if threshold and operating_point:
            raise InvalidInput("Give a threshold or an operating point, not both.")
        if operating_point:
            return validation.operating_point(operating_point, current, identify)
        if identify:
            return validation.threshold(threshold, current.identification_threshold), (
                "" if threshold else IDENTIFICATION
            )
        return validation.threshold(
            threshold, current.threshold
        ), "" if threshold else current.operating_point

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
        """Saves the index with the store's version (a later start loads it instead of rebuilding).
        Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        self.timings.log(log)
        if self._follower is not None:
            self._follower.stop()
        if self._reconciler is not None:
            self._reconciler.stop()
        self._classifier.close()
        self.checkpoint()
        with self._write:
            self._store.close()
            if isinstance(self._index, MilvusIndex):
                self._index.close()

    # --- following a shared store's changes -----------------------------------------------------------

    @property
    def classifier_version(self) -> int:
        """The store version this replica's SVM was fit at; -1 when it has none."""
        return self._classifier.version

    def follow(
        self, face_ids: Sequence[int], present_ids: NDArray[np.int64], vectors: NDArray[np.float32]
    ) -> None:
        """Brings the index level with the store for face_ids, of which present_ids (with vectors (n, dim))
        are the ones the store still holds. Idempotent: replaying this replica's own changes is harmless.
        A shared index (Milvus) was written by the replica that made the change: nothing to do."""
        if self._index.shared:
            return
        with self._write:
            self._index.remove([int(i) for i in face_ids])
            if len(present_ids):
                self._index.add(present_ids, vectors)

    def adopt_classifier(self) -> bool:
        """Serves the classifier another replica trained, when it is current; True when adopted."""
        return self._classifier.adopt()

    def rebuild_index(self) -> int:
        """Rebuilds the index from the store (a replica that missed changes); returns the version it mirrors.
        A shared index is the reconciler's to repair: left as it is."""
        version = self._store.version()
        if self._index.shared:
            return version
        ids, vectors, _ = self._store.embeddings()
        index = FaceIndex.build(
            ids,
            vectors,
            dim=self.options.dimension,
            ivf_min_size=self.options.ivf_min_size,
            nprobe=self.options.nprobe,
        )
        with self._write:
            self._index = index
            self._enrolment.use_index(index)
        return version

    # --- enrolment ---------------------------------------------------------------------------------

    def enroll(
        self,
        identity: str,
        images: Sequence[bytes] = (),
        embeddings: Sequence[tuple[Sequence[float], str]] = (),
        options: DetectorOptions | None = None,
        timeout_s: float | None = None,
        strict: bool = False,
    ) -> list[EnrollResult]:
        """Adds faces to `identity`: the largest face of each picture, and each (values, model) embedding.
        One result per picture, then one per embedding (gallery.enrolment.Enrolment.enroll)."""
        return self._enrolment.enroll(identity, images, embeddings, options, timeout_s, strict)

    # --- identification ----------------------------------------------------------------------------

    def identify_image(
        self,
        image: bytes,
        top_k: int = 0,
        threshold: float = 0.0,
        options: DetectorOptions | None = None,
        timeout_s: float | None = None,
        operating_point: str = "",
    ) -> Identification:
        """Identifies every face on the picture, by descending detection confidence."""
        k = validation.top_k(top_k)
        t, point = self._decision(threshold, operating_point, identify=True)
        if not image:
            raise InvalidInput("No image to identify: give an image or an embedding.")
        clock = time.perf_counter()
        detected = self._detector.detect([image], options or self.options.detect_options, timeout_s)[0]
        detect_s = time.perf_counter() - clock
        if detected.error is not None:
            raise detected.error
        if not detected.faces:
            return Identification(
                [], t, self._method(self._store.counts()[0]), detected.width, detected.height, point
            )
        refused = [self._unidentifiable(f) for f in detected.faces]
        comparable = [f for f, why in zip(detected.faces, refused, strict=True) if why is None]
        method = self._method(self._store.counts()[0])
        answers: list[IdentifiedFace] = []
        embed_s = search_s = 0.0
        stale = False
        if comparable:
            clock = time.perf_counter()
            embedded = self._embed([f.crop for f in comparable], timeout_s)
            embed_s = time.perf_counter() - clock
            vectors = []
            for vector in embedded.vectors:
                if isinstance(vector, FacerecError):
                    raise vector
                vectors.append(vector)
            clock = time.perf_counter()
            method, stale, answers = self._classify(np.stack(vectors).astype(np.float32), k, t)
            search_s = time.perf_counter() - clock
        self.timings.add(
            identify_images=1,
            identify_faces=len(comparable),
            detect_call_s=detect_s,
            embed_call_s=embed_s,
            search_s=search_s,
        )
        answered = iter(answers)
        faces = []
        for f, why in zip(detected.faces, refused, strict=True):
            a = next(answered) if why is None else IdentifiedFace("", False, 0.0, 0.0, [])
            faces.append(
                IdentifiedFace(
                    a.identity,
                    a.known,
                    a.distance,
                    a.confidence,
                    a.candidates,
                    box=f.box,
                    landmarks=f.landmarks,
                    detection_confidence=f.confidence,
                    not_identifiable=why[0] if why else None,
                    reason=why[1] if why else "",
                )
            )
        return Identification(
            faces, t, method, detected.width, detected.height, point, classifier_stale=stale
        )

    def _unidentifiable(self, face: DetectedFace) -> tuple[NotIdentifiable, str] | None:
        """Why this face is not to be compared with the gallery, or None when it may be."""
        side = min(face.box[2], face.box[3])
        if side < self.options.identify_min_face_px:
            return NotIdentifiable.FACE_TOO_SMALL, (
                f"The face is {face.box[2]:.0f}x{face.box[3]:.0f} px, smaller than the "
                f"{self.options.identify_min_face_px:.0f} px needed to identify it reliably."
            )
        if face.confidence < self.options.identify_min_confidence:
            return NotIdentifiable.DETECTION_TOO_UNSURE, (
                f"The detector is {face.confidence:.0%} sure this is a face, less than the "
                f"{self.options.identify_min_confidence:.0%} needed to identify it."
            )
        return None

    def identify_embedding(
        self,
        values: Sequence[float],
        model: str = "",
        top_k: int = 0,
        threshold: float = 0.0,
        operating_point: str = "",
    ) -> Identification:
        """Identifies one face given as an embedding of the gallery's model."""
        k = validation.top_k(top_k)
        t, point = self._decision(threshold, operating_point, identify=True)
        vector = validation.embedding(values, self.options.dimension, model, self.model)
        method, stale, answers = self._classify(vector[None, :], k, t)
        return Identification(answers, t, method, operating_point=point, classifier_stale=stale)

    def _method(self, identities: int) -> str:
        return SVM if 2 <= identities <= self.options.svm_max_identities else NEAREST

    def _classify(self, xq: NDArray[np.float32], k: int, t: float) -> tuple[str, bool, list[IdentifiedFace]]:
        """xq: (m, d) unit vectors. Returns the method used, whether the SVM is being refit in the
        background (the previous one, or the nearest neighbour, answered), and one answer per row."""
        method = self._method(self._store.counts()[0])
        candidates = self._candidates(xq, k, t)
        labels: list[str] = []
        confidences: NDArray[np.float32] = np.zeros(len(xq), dtype=np.float32)
        stale = False
        unfit: set[str] = set()  # identities a stale SVM was fit before: never its answer
        if method == SVM:
            classifier, stale = self._classifier.current()
            if classifier is None:
                method = NEAREST
            else:
                labels, confidences = classifier.predict(xq)
                if stale:
                    unfit = {c.identity for near in candidates for c in near} - set(classifier.classes)
        answers = []
        for i, near in enumerate(candidates):
            if not near:
                answers.append(IdentifiedFace("", False, 0.0, 0.0, []))
                continue
            # A face nearest to an identity enrolled since the stale SVM's fit: the nearest neighbour
            # answers it until the refit ends, or the newcomer would be "unknown" meanwhile.
            if method == SVM and near[0].identity not in unfit:
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
        return method, stale, answers

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
        accuracy = self._classifier.fit()
        identities, faces = self._store.counts()
        return Training(identities, faces, accuracy)

    # --- verification and search ---------------------------------------------------------------------

    def verify(
        self,
        image_a: bytes,
        image_b: bytes = b"",
        identity: str = "",
        threshold: float = 0.0,
        timeout_s: float | None = None,
        operating_point: str = "",
    ) -> Verification:
        """Same person? The largest face of image_a against image_b's largest face, or against the
        identity's nearest enrolled face."""
        t, point = self._decision(threshold, operating_point, identify=False)
        if not image_a:
            raise InvalidInput(
                "image_a is missing: Verify compares image_a with image_b or with an identity."
            )
        if identity and image_b:
            raise InvalidInput("Give either image_b or an identity to compare image_a with, not both.")
        if not identity and not image_b:
            raise InvalidInput("Nothing to compare image_a with: give image_b or an identity.")
        if identity:
            identity = validation.identity(identity)
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
            largest = largest_face(image.faces)
            why = self._unidentifiable(largest)
            if why is not None:
                raise InvalidInput(f"{label}'s largest face cannot be compared: {why[1]}")
            faces.append(largest)
        counts = [len(image.faces) for image in detected]
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
            return Verification(
                distance <= t, distance, t, faces[0].box, faces_a=counts[0], operating_point=point
            )
        distance = float(np.linalg.norm(vectors[0].astype(np.float64) - vectors[1].astype(np.float64)))
        return Verification(
            distance <= t,
            distance,
            t,
            faces[0].box,
            faces[1].box,
            counts[0],
            counts[1],
            operating_point=point,
        )

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

    def face_embeddings(self, identity: str) -> dict[int, NDArray[np.float32]]:
        """face id → unit (d,) embedding of each of the identity's faces (for calibrating on them)."""
        ids, vectors = self._store.embeddings_of(validation.identity(identity))
        return {int(i): v for i, v in zip(ids, vectors, strict=True)}

    def remove_identity(self, identity: str) -> int:
        """Removes the identity and its faces (store, then index); returns how many faces went."""
        name = validation.identity(identity)
        with self._write:
            removed = self._store.remove_identity(name)
            self._index.remove(removed)
            self._discard_saved_index()
        return len(removed)

    def remove_face(self, face_id: int) -> str:
        """Removes one face (store, then index); returns the identity it belonged to."""
        if face_id <= 0:
            raise NotFound(f"No face has id {face_id}.")
        with self._write:
            identity = self._store.remove_face(face_id)
            self._index.remove([face_id])
            self._discard_saved_index()
        return identity

    def _discard_saved_index(self) -> None:
        """A removal is for good: the saved index still holds the removed vectors, so it goes (the next
        checkpoint writes one without them; a start before that rebuilds from the store)."""
        if self._index_path is not None:
            FaceIndex.discard_saved(self._index_path)
            self._saved_version = -1

    def stats(self) -> GalleryStats:
        identities, faces = self._store.counts()
        method = self._method(identities)
        current = self._current()
        stale = method == SVM and self._classifier.stale()
        return GalleryStats(
            identities=identities,
            faces=faces,
            index_kind=self._index.kind,
            index_detail=self._index.detail,
            index_size=self._index.ntotal,
            model=self.model,
            threshold=current.threshold,
            threshold_source=current.source,
            classifier=method,
            classifier_stale=stale,
            identification_threshold=current.identification_threshold,
            operating_point=current.operating_point,
            operating_points=current.points,
            identification_point=current.identification,
        )

    def _embed(self, crops: list[NDArray[np.uint8]], timeout_s: float | None) -> Embedded:
        embedded = self._embedder.embed(crops, timeout_s)
        if embedded.model and embedded.model != self.model:
            raise Precondition(
                f"The embedder serves model {embedded.model!r}, but this gallery holds {self.model!r}."
            )
        return embedded

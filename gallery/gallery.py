"""The gallery facade: enroll, identify, verify, search and manage identities. Pure: no grpc.

It reaches storage only through the ports of gallery/ports.py, handed over by gallery/backend.py's
open_backend: a FaceStore (the truth) and a VectorIndex derived from it, updated right after each store
commit under one write lock. The SVM (gallery.classifier.StoreClassifier) is refit by `train` and lazily
whenever the store's version differs from the one it was fit at, and kept by the store so every replica
serves it. Enrolment's bookkeeping is gallery/enrolment.py, managing identities gallery/identities.py;
the answers are gallery/results.py. A collection's contract (gallery/contracted.py) pins the detector,
alignment and embedder model of every call.

Identification is open-set: the SVM's (or, with one identity or more than svm_max_identities,
the nearest neighbour's) answer stands only when the face lies within the threshold of that
identity's nearest enrolled face; otherwise it is unknown, with the nearest identities as
candidates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from facerec.calibration import Calibration
from facerec.errors import FacerecError, InvalidInput, NotFound, Precondition, Reason
from facerec.timings import Timings
from gallery import validation
from gallery.classifier import StoreClassifier
from gallery.contracted import under_contract
from gallery.enrolment import Enrolment
from gallery.identities import Identities
from gallery.options import GalleryOptions, decision
from gallery.ports import (
    Contract,
    DetectorOptions,
    Embedded,
    FaceDetector,
    FaceEmbedder,
    Storage,
    largest_face,
)
from gallery.represent import Representer
from gallery.results import (
    NEAREST,
    SVM,
    Candidate,
    EnrollResult,
    GalleryStats,
    Identification,
    IdentifiedFace,
    SearchHit,
    Training,
    Verification,
)
from gallery.rows import StoreState

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = GalleryOptions()


class Gallery:
    """Enrolled identities and their faces; detection and embedding go through the two service ports,
    storage through the two storage ports."""

    def __init__(
        self,
        storage: Storage,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        options: GalleryOptions = DEFAULT_OPTIONS,
        calibration: Callable[[], Calibration] | None = None,
        contract: Contract | None = None,
    ) -> None:
        """storage: closed by close(). calibration: when given, the current thresholds, asked at every
        request, so thresholds saved by `facerec eval` take effect without a restart; else options'.
        contract: the collection's; every detection and embedding uses it, and embeddings given by callers
        must be of its model. None: the services' defaults, and the store's model."""
        self._storage = storage
        self._store = storage.store
        self._index = storage.index
        self._calibration = calibration
        self.contract = contract
        detector, embedder = under_contract(detector, embedder, contract)
        self._detector = detector
        self._embedder = embedder
        self.options = options
        self._classifier = StoreClassifier(self._store, options.svm_inline_refit_max_s)
        storage.watch_classifier(self._classifier)
        state = self._store.state()
        if state.classifier_version < 0 and self._method(state.identities) == SVM:
            # No SVM kept (never trained, or a damaged one was set aside): fit one off the request path.
            self._classifier.refit_in_background()
        self._closed = False
        self._enrolment = Enrolment(
            self._store, self._index, detector, self._embed, storage.write_lock, options, self.model
        )
        identities = Identities(storage, self._refit_svm)
        self.list_identities = identities.list_identities
        self.get_identity = identities.get_identity
        self.identity_page = identities.identity_page
        self.face_embeddings = identities.face_embeddings
        self.face_picture = identities.face_picture
        self.face_pictures = identities.face_pictures
        self.rename_identity = identities.rename_identity
        self.remove_identity = identities.remove_identity
        self.remove_face = identities.remove_face
        # Represent (gallery/represent.py): the faces and embeddings of a picture; it never reads the store.
        self.represent = Representer(detector, self._vectors, options, self.model).represent
        # Identify's seconds per step since start, logged by close: detector, embedder, search + SVM.
        self.timings = Timings()

    @property
    def model(self) -> str:
        """The model of the gallery's vectors: its contract's, else its store's."""
        return self.contract.model if self.contract is not None else self._store.model

    @property
    def threshold(self) -> float:
        return self._current().threshold

    @property
    def identification_threshold(self) -> float:
        return self._current().identification_threshold

    def _current(self) -> Calibration:
        return self._calibration() if self._calibration is not None else self.options.calibration(self.model)

    def close(self) -> None:
        """Lets a background refit end, then closes the storage (which saves what a later start loads
        instead of rebuilding). Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        self.timings.log(log)
        self._classifier.close()
        self._storage.close()

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
        t, point = decision(self._current(), threshold, operating_point, identify=True)
        if not image:
            raise InvalidInput("No image to identify: give an image or an embedding.", field="image")
        clock = time.perf_counter()
        detected = self._detector.detect([image], options or self.options.detect_options, timeout_s)[0]
        detect_s = time.perf_counter() - clock
        if detected.error is not None:
            detected.error.field = detected.error.field or "image"
            raise detected.error
        # What does not change within the request is read once (one round trip to a networked store).
        state = self._store.state()
        method = self._method(state.identities)
        if not detected.faces:
            return Identification([], t, method, detected.width, detected.height, point)
        refused = [self.options.unidentifiable(f) for f in detected.faces]
        comparable = [f for f, why in zip(detected.faces, refused, strict=True) if why is None]
        answers: list[IdentifiedFace] = []
        embed_s = search_s = 0.0
        stale = False
        if comparable:
            clock = time.perf_counter()
            vectors = self._vectors([f.crop for f in comparable], timeout_s)
            embed_s = time.perf_counter() - clock
            clock = time.perf_counter()
            method, stale, answers = self._classify(np.stack(vectors).astype(np.float32), k, t, state)
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
            if why is None:
                a = next(answered)
            else:
                a = IdentifiedFace("", False, 0.0, 0.0, [], not_identifiable=why[0], reason=why[1])
            faces.append(replace(a, box=f.box, landmarks=f.landmarks, detection_confidence=f.confidence))
        return Identification(
            faces, t, method, detected.width, detected.height, point, classifier_stale=stale
        )

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
        t, point = decision(self._current(), threshold, operating_point, identify=True)
        vector = validation.embedding(values, self.options.dimension, model, self.model)
        method, stale, answers = self._classify(vector[None, :], k, t, self._store.state())
        return Identification(answers, t, method, operating_point=point, classifier_stale=stale)

    def _method(self, identities: int) -> str:
        return SVM if 2 <= identities <= self.options.svm_max_identities else NEAREST

    def _classify(
        self, xq: NDArray[np.float32], k: int, t: float, state: StoreState
    ) -> tuple[str, bool, list[IdentifiedFace]]:
        """xq: (m, d) unit vectors; state: the store's, read once for the request. Returns the method
        used, whether the SVM is being refit in the background (the previous one, or the nearest
        neighbour, answered), and one answer per row."""
        method = self._method(state.identities)
        candidates = self._candidates(xq, k)
        labels: list[str] = []
        confidences: NDArray[np.float32] = np.zeros(len(xq), dtype=np.float32)
        stale = False
        unfit: set[str] = set()  # identities a stale SVM was fit before: never its answer
        if method == SVM:
            classifier, stale = self._classifier.current(state)
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
            # Nearest to a newcomer since a stale SVM's fit: the nearest neighbour answers until the refit.
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

    def _candidates(self, xq: NDArray[np.float32], k: int) -> list[list[Candidate]]:
        """Per row of xq, the nearest identities (best face each), nearest first, at least k when the
        gallery holds k. Faces removed from the store since the search are skipped."""
        total = self._index.ntotal
        if total == 0:
            return [[] for _ in range(len(xq))]
        k_faces = min(total, max(4 * k, 16))
        while True:
            dist, ids = self._index.search(xq, k_faces)
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
        t, point = decision(self._current(), threshold, operating_point, identify=False)
        if not image_a:
            raise InvalidInput(
                "image_a is missing: Verify compares image_a with image_b or with an identity.",
                field="image_a",
            )
        if identity and image_b:
            raise InvalidInput(
                "Give either image_b or an identity to compare image_a with, not both.", field="identity"
            )
        if not identity and not image_b:
            raise InvalidInput(
                "Nothing to compare image_a with: give image_b or an identity.", field="image_b"
            )
        if identity:
            identity = validation.identity(identity)
            if not self._store.has_identity(identity):
                raise NotFound(f"No identity {identity!r} is enrolled.")
        pictures = [image_a, image_b] if image_b else [image_a]
        detected = self._detector.detect(pictures, self.options.detect_options, timeout_s)
        faces = []
        for label, image in zip(("image_a", "image_b"), detected, strict=False):
            if image.error is not None:
                raise type(image.error)(f"{label}: {image.error}", reason=image.error.reason, field=label)
            if not image.faces:
                raise InvalidInput(f"No face was found on {label}.", reason=Reason.NO_FACE, field=label)
            largest = largest_face(image.faces)
            why = self.options.unidentifiable(largest)
            if why is not None:
                raise InvalidInput(f"{label}'s largest face cannot be compared: {why[1]}", field=label)
            faces.append(largest)
        counts = [len(image.faces) for image in detected]
        vectors = self._vectors([f.crop for f in faces], timeout_s)
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

    # --- management (gallery/identities.py, bound in __init__) ---------------------------------------

    def _refit_svm(self) -> None:
        """The identities' names changed (a rename): the SVM refits off the request path."""
        if self._method(self._store.counts()[0]) == SVM:
            self._classifier.refit_in_background()

    def stats(self) -> GalleryStats:
        state = self._store.state()
        method = self._method(state.identities)
        current = self._current()
        stale = method == SVM and self._classifier.stale(state)
        return GalleryStats(
            identities=state.identities,
            faces=state.faces,
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
                f"The embedder serves model {embedded.model!r}, but this gallery holds {self.model!r}.",
                reason=Reason.MODEL_MISMATCH,
            )
        return embedded

    def _vectors(self, crops: list[NDArray[np.uint8]], timeout_s: float | None) -> list[NDArray[np.float32]]:
        """One unit vector per crop, of the gallery's model; a crop's error is the request's."""
        vectors = []
        for vector in self._embed(crops, timeout_s).vectors:
            if isinstance(vector, FacerecError):
                raise vector
            vectors.append(vector)
        return vectors

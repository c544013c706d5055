"""What the gallery needs, as Protocols: a face detector and an embedder (gallery/clients.py implements
them over gRPC; tests with synthetic faces), and its storage: a FaceStore with its change log (SQLite,
PostgreSQL) and a VectorIndex (FAISS, Milvus), handed over by gallery/backend.py. Pure: no grpc.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from facerec.errors import FacerecError
from gallery.rows import Change, FaceRow, IdentityRow, KeptPicture, NewFace, StoreState

BoxXYWH = tuple[float, float, float, float]  # x, y, width, height in pixels of the upright picture
Point = tuple[float, float]


@dataclass(frozen=True)
class DetectorOptions:
    """What the gallery asks the detector for (passed through); 0 / "" = the detector's defaults."""

    min_face_size_px: int = 0
    min_confidence: float = 0.0
    max_faces: int = 0
    alignment: str = ""  # "", "box" or "similarity"
    model: str = ""  # "", "mtcnn" or "retinaface": the collection's detector


@dataclass(frozen=True)
class DetectedFace:
    """One face: box, detection confidence, five landmarks (left eye, right eye, nose, mouth l/r) and
    its aligned crop, (h, w, 3) uint8 RGB (160x160 from the facerec detector)."""

    box: BoxXYWH
    confidence: float
    landmarks: tuple[Point, ...]
    crop: NDArray[np.uint8]

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class DetectedImage:
    """One picture's detections, by descending confidence; `error` set when it could not be processed."""

    width: int = 0
    height: int = 0
    faces: list[DetectedFace] = field(default_factory=list)
    error: FacerecError | None = None


@dataclass(frozen=True)
class Embedded:
    """The embedder's answer: per crop a unit (d,) float32 vector or the error for that crop."""

    model: str
    vectors: list[NDArray[np.float32] | FacerecError]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    dimension: int
    threshold: float = 0.0
    threshold_source: str = ""
    precision: str = ""  # "fp32" or "int8" (FaceNet's arithmetic); "" when not told


class FaceDetector(Protocol):
    def detect(
        self, images: Sequence[bytes], options: DetectorOptions, timeout_s: float | None = None
    ) -> list[DetectedImage]:
        """Faces on each encoded picture, one result per picture in order; crops included.

        Raises Unavailable when the detector cannot be reached, InvalidInput / Overloaded for a
        request it refuses as a whole, DeadlineExceeded when it does not answer in time.
        """
        ...


class FaceEmbedder(Protocol):
    def embed(
        self, crops: Sequence[NDArray[np.uint8]], timeout_s: float | None = None, model: str = ""
    ) -> Embedded:
        """Embeddings of (h, w, 3) uint8 RGB crops with `model` ("" = the embedder's default), one per crop
        in order. Errors as FaceDetector.detect; InvalidInput for a model the embedder does not serve."""
        ...

    def model_info(self, timeout_s: float | None = None, model: str = "") -> ModelInfo:
        """The model the embedder serves by default, or the named one."""
        ...

    def models(self, timeout_s: float | None = None) -> list[ModelInfo]:
        """Every model the embedder serves, its default first."""
        ...


def largest_face(faces: Sequence[DetectedFace]) -> DetectedFace:
    """The face with the largest box: the one a picture of one person is about. faces: not empty."""
    return max(faces, key=lambda f: f.area)


# --- storage -------------------------------------------------------------------------------------------


class FaceStore(Protocol):
    """Identities and their faces, the truth (gallery/store.py: SQLite; gallery/store_postgres.py:
    PostgreSQL). Every change is one durable transaction that bumps `version` and is logged
    (changes_since), so equal versions mean equal contents and derived things (the index, the SVM) can
    be kept level. Holds embeddings of one model. Thread-safe. Errors: InvalidInput, NotFound,
    Precondition, Overloaded (disk full), Unavailable (a store over the network that cannot be reached)."""

    @property
    def model(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def location(self) -> str:
        """Where the store lives, safe to log (no password)."""
        ...

    @property
    def store_id(self) -> str:
        """Drawn at random when the store was created: every derived file names it (and the version)."""
        ...

    # -- changes --
    def add_faces(self, identity: str, faces: Sequence[NewFace]) -> list[int]:
        """Stores faces for an identity (created if new); returns their new ids, ascending, never reused."""
        ...

    def add_many(self, batches: Sequence[tuple[str, Sequence[NewFace]]]) -> list[list[int]]:
        """add_faces for several identities in one transaction; ids per batch."""
        ...

    def import_faces(self, identities: Sequence[IdentityRow], faces: Sequence[FaceRow]) -> None:
        """Copies rows of another store as they are (ids included; they must be new here)."""
        ...

    def remove_identity(self, identity: str) -> list[int]:
        """Removes an identity and its faces; returns the removed face ids. NotFound if unknown."""
        ...

    def remove_face(self, face_id: int) -> str:
        """Removes one face (and its identity when left with none); returns the identity. NotFound if unknown."""
        ...

    # -- reads --
    def find_face_by_image(self, identity: str, image_sha256: str) -> int | None: ...
    def other_identity_with_image(self, identity: str, image_sha256: str) -> str | None:
        """Another identity with a face enrolled from the picture with this sha256, if any."""
        ...

    def confusable_identity(self, identity: str) -> str | None:
        """An enrolled identity other than this one that looks like it (the same TR39 skeleton), if any."""
        ...

    def get_identity(
        self, identity: str, after: int = 0, limit: int | None = None
    ) -> tuple[IdentityRow, list[FaceRow]]: ...
    def has_identity(self, identity: str) -> bool: ...
    def list_identities(self, after: str = "", limit: int = 100) -> list[IdentityRow]: ...
    def embeddings(self) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
        """Every face in face_id order: ids (n,) int64, vectors (n, dim) float32, identities (n)."""
        ...

    def embeddings_of(self, identity: str) -> tuple[NDArray[np.int64], NDArray[np.float32]]: ...
    def identities_of(self, face_ids: Sequence[int]) -> dict[int, str]:
        """face id -> identity for the ids that exist (unknown ids are left out)."""
        ...

    def face_ids(self) -> NDArray[np.int64]: ...
    def faces_by_id(
        self, face_ids: Sequence[int]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]: ...
    def counts(self) -> tuple[int, int]:
        """(identities, faces)."""
        ...

    def version(self) -> int: ...
    def state(self) -> StoreState:
        """Version, counts and the kept classifier's version, in one round trip."""
        ...

    def integrity_check(self) -> bool: ...

    # -- the fitted classifier, kept with the store --
    def save_classifier(self, arrays: dict[str, NDArray[Any]], store_version: int) -> None: ...
    def load_classifier(self) -> tuple[int, dict[str, NDArray[Any]]] | None:
        """(store version it was fit at, arrays), or None when none is readable."""
        ...

    def classifier_version(self) -> int:
        """The store version the kept classifier was fit at, read without its arrays; -1 when none."""
        ...

    # -- kept pictures, renames, sealing (collections: gallery/collections.py) --
    def picture(self, face_id: int) -> KeptPicture:
        """A face's kept picture. NotFound for an unknown face or one kept without a picture."""
        ...

    def pictures(self, face_ids: Sequence[int]) -> dict[int, KeptPicture]:
        """The kept pictures of these faces, by id (faces without one, or unknown, are left out)."""
        ...

    def source_picture(self, face_id: int) -> bytes:
        """The whole source picture kept with a face (collections that keep them); b"" when none is kept."""
        ...

    def faces_without_picture(self) -> int: ...
    def import_pictures(self, pictures: dict[int, KeptPicture], sources: dict[int, bytes]) -> None:
        """Stores kept pictures (and source pictures) of faces this store holds (import_faces' companions;
        a re-embed or a migration copies them). Replaces what a face had."""
        ...

    def rename_identity(self, identity: str, new_name: str) -> IdentityRow:
        """Renames an identity, keeping its faces (a change: the version moves, its faces are logged as
        removed and added so followers re-read their identity). NotFound for an unknown identity;
        AlreadyExists when new_name is taken."""
        ...

    def seal(self) -> None:
        """From now on every write raises Unavailable (retry shortly): a re-embed is about to move the
        collection to its next store and must not miss a write. Durable, and seen by every replica."""
        ...

    def unseal(self) -> None:
        """Lifts the seal: a re-embed that failed after sealing leaves its collection writable again."""
        ...

    def last_face_id(self) -> int:
        """The largest face id this store ever gave, removed faces' included (0 when none)."""
        ...

    def reserve_face_ids(self, up_to: int) -> None:
        """New faces get ids above up_to from now on: a re-embed's next store never gives again an id the
        old one gave (a removed face's included)."""
        ...

    # -- the change log --
    def changes_since(self, version: int, limit: int = 10_000) -> list[Change]:
        """Committed changes with versions > version, ascending (at most limit; old ones are pruned)."""
        ...

    def wait_for_change(self, timeout_s: float) -> bool:
        """Blocks until a change is committed or timeout_s passes; True when one was."""
        ...

    def close(self) -> None: ...
    def __enter__(self) -> FaceStore: ...
    def __exit__(self, *exc: object) -> None: ...


class VectorIndex(Protocol):
    """The nearest enrolled faces of unit vectors, by face id (gallery/index.py: FAISS in this process;
    gallery/index_milvus.py: a shared Milvus collection). Derived from the store; thread-safe."""

    @property
    def kind(self) -> str:
        """ "flat" (exact), "ivf" (approximate) or "milvus"."""
        ...

    @property
    def detail(self) -> str:
        """What the index is, for Stats."""
        ...

    @property
    def ntotal(self) -> int: ...
    @property
    def dim(self) -> int: ...
    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Adds ids (n,) int64 with unit vectors (n, dim) float32; searchable on return."""
        ...

    def remove(self, ids: Sequence[int]) -> int:
        """Removes these ids; never returned by a search after this returns. Returns how many went (or,
        where the engine cannot tell, how many were asked)."""
        ...

    def search(self, xq: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """xq: (m, dim) float32 unit vectors. Returns D (m, k) float32 euclidean distances, ascending, and
        I (m, k) int64 face ids; I = -1 and D = +inf where fewer than k faces were found."""
        ...

    def all_ids(self) -> NDArray[np.int64]:
        """Every face id the index holds, ascending."""
        ...


class KeptClassifier(Protocol):
    """The facade's SVM, as the backend's upkeep sees it: another replica's fit can be adopted."""

    @property
    def version(self) -> int: ...
    def adopt(self) -> bool: ...


class Storage(Protocol):
    """What gallery/backend.py's open_backend hands the facade: the two ports, the lock under which a
    store commit and its index update happen (the upkeep takes it too), and the upkeep's life cycle."""

    @property
    def store(self) -> FaceStore: ...
    @property
    def index(self) -> VectorIndex: ...
    @property
    def write_lock(self) -> AbstractContextManager[Any]: ...
    def watch_classifier(self, classifier: KeptClassifier) -> None:
        """Keeps this classifier level with fits other replicas keep in a shared store."""
        ...

    def discard_saved_index(self) -> None:
        """A removal was committed: a saved copy of the index still holds the removed vectors, so it goes
        (the next checkpoint writes one without them; a start before that rebuilds from the store). The
        caller holds write_lock."""
        ...

    def close(self) -> None:
        """Stops the upkeep, saves what a restart can load, closes the store and the index."""
        ...


# --- collections ---------------------------------------------------------------------------------------

DEFAULT_COLLECTION = "default"
REEMBED = "reembed"  # the one kind of long-running operation


@dataclass(frozen=True)
class Contract:
    """How a collection turns pictures into vectors (facerec.v1.EmbeddingContract): fixed at creation,
    changed only by a re-embed. detector: "mtcnn" or "retinaface"; alignment: "box" or "similarity";
    model: the embedder model's name."""

    detector: str
    alignment: str
    model: str


@dataclass(frozen=True)
class CollectionRow:
    """A collection as the catalog keeps it.

    collection_id: drawn at creation, never reused (its stores are named after it, not its name);
    generation: which of its stores holds its faces now (gallery/namespaces.py: generation 1 of the default
    collection is the gallery's own store; a re-embed builds generation + 1 beside the current one);
    points: its operating points as calibration JSON (facerec.calibration), "" = the shipped points of
    its model; operation: the running operation's id, "" when none."""

    collection_id: int
    name: str
    contract: Contract
    generation: int
    points: str
    keep_source_pictures: bool
    created_at_ms: int
    operation: str = ""


@dataclass(frozen=True)
class FailedFace:
    face_id: int
    identity: str
    reason: str  # one sentence


@dataclass(frozen=True)
class OperationRow:
    """A long-running operation (a re-embed) as the catalog keeps it: everything needed to resume it in
    another process after a crash.

    generation: the collection's store it builds; source_version: the old store's version up to which
    its changes were carried over; owner / heartbeat_ms: the process running it and when it last said so
    (an operation whose heartbeat is older than the stale bound is taken over by another); stage: "queued",
    "embedding", "catching up", "switching", "dropping old vectors", "done"; switched: the collection
    serves the new generation already (only the old one is left to drop); error / error_reason: set when
    it failed (the collection then unchanged)."""

    operation_id: str
    collection: str
    kind: str
    source: Contract
    target: Contract
    drop_failed: bool
    generation: int
    stage: str = "queued"
    faces_total: int = 0
    faces_done: int = 0
    failed: tuple[FailedFace, ...] = ()
    source_version: int = 0
    switched: bool = False
    done: bool = False
    error: str = ""
    error_reason: str = ""
    owner: str = ""
    heartbeat_ms: int = 0
    created_at_ms: int = 0
    updated_at_ms: int = 0


class Catalog(Protocol):
    """The deployment's collections and long-running operations (gallery/catalog.py: SQLite, in the
    gallery's own file; gallery/catalog_postgres.py: PostgreSQL, in its database), shared by replicas.
    Every change is one transaction and bumps version(), so a replica that sees a new version re-reads
    the list. Errors: NotFound, AlreadyExists, Precondition, Unavailable."""

    def version(self) -> int: ...
    def collections(self) -> list[CollectionRow]:
        """Every collection, in name order ("default" always among them)."""
        ...

    def get(self, name: str) -> CollectionRow:
        """NotFound when there is no collection of that name."""
        ...

    def create(self, name: str, contract: Contract, keep_source_pictures: bool) -> CollectionRow:
        """AlreadyExists when the name is taken. The caller creates its first store afterwards."""
        ...

    def delete(self, name: str) -> CollectionRow:
        """Removes the collection's row and returns it (the caller drops its stores). NotFound; Precondition
        for "default" and for a collection with a running operation."""
        ...

    def set_points(self, name: str, points: str) -> CollectionRow:
        """Stores the collection's operating points (calibration JSON; "" = its model's shipped ones)."""
        ...

    def start_operation(self, name: str, target: Contract, drop_failed: bool) -> OperationRow:
        """A queued re-embed of the collection into generation + 1, named in the collection's row.
        Precondition while another operation runs on it."""
        ...

    def operation(self, operation_id: str) -> OperationRow:
        """NotFound for an unknown id."""
        ...

    def claim_operation(self, owner: str, stale_after_ms: int) -> OperationRow | None:
        """An unfinished operation that no live process runs (never claimed, or its heartbeat is older than
        stale_after_ms), now owned by `owner`; None when there is none. Atomic: two claimers never both win."""
        ...

    def update_operation(self, op: OperationRow) -> OperationRow:
        """Saves progress (and the heartbeat, now). Precondition when op.owner no longer owns it (another
        process took it over): the caller stops working on it."""
        ...

    def switch(self, operation_id: str) -> CollectionRow:
        """In one transaction: the collection serves the operation's generation under its target contract,
        with its model's shipped points (calibrated points belong to the old model), and the operation is
        marked switched. Returns the collection as switched."""
        ...

    def finish_operation(self, operation_id: str, error: str = "", error_reason: str = "") -> OperationRow:
        """Marks it done (failed when error is given: the collection keeps serving its old generation) and
        frees the collection for the next operation."""
        ...

    def wait_for_change(self, timeout_s: float) -> bool:
        """Blocks until the catalog changes or timeout_s passes; True when it changed."""
        ...

    def close(self) -> None: ...

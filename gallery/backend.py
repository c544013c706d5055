"""The gallery's storage, built from its settings: the store (SQLite or PostgreSQL), the index (FAISS in
this process or a shared Milvus) and their upkeep, handed to the facade as the ports of gallery/ports.py.

Upkeep, by backend:
- SQLite + FAISS: the index is loaded from its saved file when that mirrors the store's version, else
  built from the store; saved again by checkpoints and at close (sidecar_paths).
- PostgreSQL (shared by replicas): a change follower (gallery/changes.py) keeps this replica's FAISS
  index and SVM level with what the others commit; a gap in the log rebuilds the index from the store.
- Milvus (shared by replicas): a reconciler (gallery/reconcile.py) brings it level with the store.

Each facerec collection generation has its own store (gallery/namespaces.py) and its own index: a FAISS
index of its own, or its own Milvus collection (milvus_collection_for; why not a partition key: see
gallery/index_milvus.py). drop_index removes a generation's index when its collection is deleted or a
re-embed has replaced it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from facerec.calibration import Calibration
from gallery.changes import ChangeFollower
from gallery.gallery import DEFAULT_OPTIONS, Gallery
from gallery.index import FaceIndex
from gallery.index_milvus import MilvusIndex, MilvusSettings, collection_name, drop_collection
from gallery.options import GalleryOptions
from gallery.ports import FaceDetector, FaceEmbedder, FaceStore, KeptClassifier, VectorIndex
from gallery.reconcile import Reconciler
from gallery.stores import is_postgres, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendSettings:
    """Where the gallery keeps its faces and how its index searches.

    store: a SQLite path or a postgresql:// URL; milvus: the shared index instead of FAISS in this process.
    exact_beyond: FAISS IVF searches again exactly a query whose approximate best distance is above it
    (Identify's threshold: a face within it is never missed by the probe).
    milvus_collection: the Milvus collection of this facerec collection generation
    (milvus_collection_for), "" = milvus.collection as configured (the default collection's first)."""

    store: str
    model: str
    dimension: int = 128
    password_file: str = ""
    milvus: MilvusSettings | None = None
    reconcile_s: float = 30.0
    ivf_min_size: int = 50_000
    nprobe: int | None = None
    exact_beyond: float | None = None
    follow_poll_s: float = 0.5
    milvus_collection: str = ""

    @property
    def shared_index(self) -> MilvusSettings | None:
        """The Milvus collection this backend uses, None for FAISS in this process."""
        if self.milvus is None or not self.milvus_collection:
            return self.milvus
        return replace(self.milvus, collection=self.milvus_collection)


def milvus_collection_for(milvus: MilvusSettings | None, collection_id: int, generation: int) -> str:
    """BackendSettings.milvus_collection for a facerec collection generation: its own Milvus collection,
    named from the configured base name and the ids (gallery.index_milvus.collection_name); "" without
    Milvus. The default collection's generation 1 keeps the configured name: an existing index stays."""
    return "" if milvus is None else collection_name(milvus.collection, collection_id, generation)


def drop_milvus_generation(milvus: MilvusSettings | None, collection_id: int, generation: int) -> bool:
    """Drops a facerec collection generation's Milvus collection (a deleted collection's, or the one a
    re-embed replaced), after its store: gallery.milvus_upkeep.drop_generation, the CollectionManager's drop_store.
    False without Milvus or when it was gone already; Unavailable when Milvus cannot be reached."""
    if milvus is None:
        return False
    return drop_collection(
        replace(milvus, collection=milvus_collection_for(milvus, collection_id, generation))
    )


def drop_index(settings: BackendSettings) -> bool:
    """Removes the index open_backend(settings) would open, for a deleted collection or a generation a
    re-embed replaced (its store is dropped by gallery.namespaces.drop_store): the Milvus collection, or
    the saved FAISS index and SVM beside a SQLite store (they hold the faces' vectors too). The backend
    must be closed first (its close saves them again). True when something was removed; running it again
    does nothing. Unavailable when Milvus cannot be reached."""
    shared = settings.shared_index
    if shared is not None:
        return drop_collection(shared)
    if is_postgres(settings.store):
        return False  # each replica's index lives in its memory only
    index_path, svm_path = sidecar_paths(Path(settings.store).expanduser())
    removed = index_path.exists() or svm_path.exists()
    FaceIndex.discard_saved(index_path)  # with its side file
    svm_path.unlink(missing_ok=True)
    return removed


def sidecar_paths(store_path: Path) -> tuple[Path, Path]:
    """Where the saved index and SVM of a SQLite store live: beside it, named after it."""
    return (
        store_path.with_name(store_path.name + ".faiss"),
        store_path.with_name(store_path.name + ".svm.npz"),
    )


class Backend:
    """A gallery.ports.Storage: the store and index ports, the lock a store commit and its index update
    share, and their upkeep (follower, reconciler, checkpoints). Closed by the facade's close()."""

    def __init__(
        self,
        store: FaceStore,
        index: VectorIndex,
        local: FaceIndex | None = None,
        shared: MilvusIndex | None = None,
        index_path: Path | None = None,
        saved_version: int = -1,
    ) -> None:
        """local: the index when it is this process's own FAISS index (kept level by the follower, saved to
        index_path); shared: the index when it is a Milvus collection (closed with the backend);
        saved_version: the store version the file at index_path mirrors (-1 = unknown)."""
        self._store = store
        self._index = index
        self._local = local
        self._shared = shared
        self._index_path = index_path
        self._saved_version = saved_version
        # Store commit + index update happen under this lock (the facade's writes, the follower's
        # replays), so the two never disagree for long and a duplicate check and its insert are one step.
        self._write = threading.Lock()
        self._classifier: KeptClassifier | None = None
        self.follower: ChangeFollower | None = None
        self.reconciler: Reconciler | None = None
        self._stop_checkpoints = threading.Event()
        self._closed = False

    @property
    def store(self) -> FaceStore:
        return self._store

    @property
    def index(self) -> VectorIndex:
        return self._index

    @property
    def write_lock(self) -> threading.Lock:
        return self._write

    def watch_classifier(self, classifier: KeptClassifier) -> None:
        self._classifier = classifier

    # --- what the change follower keeps level (gallery.changes.Follower) --------------------------------

    @property
    def classifier_version(self) -> int:
        """The store version this replica's SVM was fit at; -1 when it has none."""
        return self._classifier.version if self._classifier is not None else -1

    def adopt_classifier(self) -> bool:
        """Serves the classifier another replica trained, when it is current; True when adopted."""
        return self._classifier.adopt() if self._classifier is not None else False

    def follow(
        self, face_ids: Sequence[int], present_ids: NDArray[np.int64], vectors: NDArray[np.float32]
    ) -> None:
        """Brings this replica's index level with the store for face_ids, of which present_ids (with vectors
        (n, dim)) are the ones the store still holds. Idempotent: replaying its own changes is harmless.
        A shared index (Milvus) was written by the replica that made the change: nothing to do."""
        if self._local is None:
            return
        with self._write:
            self._local.remove([int(i) for i in face_ids])
            if len(present_ids):
                self._local.add(present_ids, vectors)

    def rebuild_index(self) -> int:
        """Rebuilds this replica's index from the store (it missed changes); returns the version it mirrors.
        A shared index is the reconciler's to repair: left as it is."""
        # Read before the embeddings: changes committed meanwhile, or written to the old index while the
        # new one is built, are replayed by the follower from this version on (idempotent).
        version = self._store.version()
        if self._local is not None:
            ids, vectors, _ = self._store.embeddings()
            self._local.reset(ids, vectors)
        return version

    # --- checkpoints --------------------------------------------------------------------------------

    def checkpoint(self) -> bool:
        """Saves the index with the store's version when the store changed since the last save, so a
        start after a crash loads it instead of rebuilding (minutes at millions of faces). Returns
        whether it saved. Enrolls wait meanwhile; searches do not."""
        if self._local is None or self._index_path is None:
            return False
        with self._write:
            version = self._store.version()
            if version == self._saved_version:
                return False
            try:
                self._local.save(self._index_path, version, self._store.store_id)
            except OSError as exc:
                log.warning("could not save the index to %s: %s", self._index_path, exc)
                return False
            self._saved_version = version
            return True

    def discard_saved_index(self) -> None:
        """A removal is for good: the saved index still holds the removed vectors, so it goes (the next
        checkpoint writes one without them; a start before that rebuilds from the store). The caller
        holds write_lock."""
        if self._local is not None and self._index_path is not None:
            FaceIndex.discard_saved(self._index_path)
            self._saved_version = -1

    def start_checkpoints(self, interval_s: float) -> None:
        """Saves the index every interval_s while the store changes, until close (0: only at close)."""
        if interval_s <= 0 or self._index_path is None:
            return

        def run() -> None:
            while not self._stop_checkpoints.wait(interval_s):
                if self.checkpoint():
                    log.info("index saved (%s faces)", self._index.ntotal)

        threading.Thread(target=run, name="index-checkpoint", daemon=True).start()

    def close(self) -> None:
        """Stops the upkeep, saves the index (a later start loads it), closes the store and the index.
        Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._stop_checkpoints.set()
        if self.follower is not None:
            self.follower.stop()
        if self.reconciler is not None:
            self.reconciler.stop()
        self.checkpoint()
        with self._write:
            self._store.close()
            if self._shared is not None:
                self._shared.close()


def open_backend(settings: BackendSettings) -> Backend:
    """Opens (or creates) the store for settings.model and its index: the saved FAISS index of a SQLite
    store when it mirrors the store's version, else one built from the store, or the Milvus collection
    (brought level with the store before it serves when it is not, reconciled every reconcile_s). A
    shared (PostgreSQL) store's changes by other replicas are followed from then on."""
    store = open_store(settings.store, settings.model, settings.dimension, settings.password_file)
    try:
        # Read before the embeddings: changes committed meanwhile are replayed by the follower (idempotent).
        version = store.version()
        milvus = settings.shared_index
        if milvus is not None:
            shared = MilvusIndex(milvus, settings.model, settings.dimension, store.identities_of)
            backend = Backend(store, shared, shared=shared)
            backend.reconciler = Reconciler(store, shared, settings.reconcile_s)
            # A generation a re-embed filled through its store alone (or an index that missed writes) is
            # brought level before it serves, so a collection switched to it never answers from a half-filled
            # index; a level one (a restart) serves at once.
            if shared.ntotal != store.counts()[1]:
                backend.reconciler.reconcile()
            backend.reconciler.start()
        else:
            # A shared store's replicas each build their own index: no file to share between them.
            path = (
                None if is_postgres(settings.store) else sidecar_paths(Path(settings.store).expanduser())[0]
            )
            backend = _local_backend(store, settings, version, path)
        if is_postgres(settings.store):
            backend.follower = ChangeFollower(backend, store, version, settings.follow_poll_s)
            backend.follower.start()
        return backend
    except BaseException:
        store.close()
        raise


def _local_backend(
    store: FaceStore, settings: BackendSettings, version: int, index_path: Path | None
) -> Backend:
    if index_path is not None:
        saved = FaceIndex.load(
            index_path,
            version,
            settings.dimension,
            settings.ivf_min_size,
            settings.nprobe,
            settings.exact_beyond,
            store.store_id,
        )
        if saved is not None:
            log.info("loaded the saved %s index: %s faces", saved.kind, saved.ntotal)
            return Backend(store, saved, local=saved, index_path=index_path, saved_version=version)
    ids, vectors, _ = store.embeddings()
    built = FaceIndex.build(
        ids, vectors, settings.dimension, settings.ivf_min_size, settings.nprobe, settings.exact_beyond
    )
    log.info("built the %s index from the store: %s faces", built.kind, built.ntotal)
    return Backend(store, built, local=built, index_path=index_path)


def open_gallery(
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
    """A Gallery on the store at store_location (a SQLite path or a postgresql:// URL) and its index
    (FAISS, or the Milvus collection `milvus`), for `model`; see open_backend and Gallery."""
    identification = (
        calibration().identification_threshold if calibration else options.identification_threshold
    )
    backend = open_backend(
        BackendSettings(
            str(store_location),
            model,
            options.dimension,
            password_file,
            milvus,
            reconcile_s,
            options.ivf_min_size,
            options.nprobe,
            identification,
            options.follow_poll_s,
        )
    )
    try:
        return Gallery(backend, detector, embedder, options, calibration)
    except BaseException:
        backend.close()
        raise

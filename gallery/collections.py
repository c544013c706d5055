"""The deployment's collections, each served by a Gallery facade of its own. Pure: no grpc.

The CollectionManager maps collection names to facades: each collection's current generation is a store
of its own (gallery/namespaces.py), with its own index and SVM, so a face of one collection can never
answer in another. The catalog (gallery/catalog.py, gallery/catalog_postgres.py) is the truth; a follower
thread re-reads it at every change (woken by the catalog, else within follow_poll_s), so a collection
created, deleted or switched to a new generation by another replica is opened, closed or reopened here,
and operating points set elsewhere are served here, within that bound.

A collection's operating points are calibration JSON (facerec.calibration's file format, one model):
"" = its model's defaults (the deployment's calibration file, else the shipped points).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from facerec.calibration import Calibration
from facerec.errors import FacerecError, InvalidInput, NotFound, Precondition, Unavailable
from gallery.collection_values import ALIGNMENTS, DETECTORS, collection_name, points_text
from gallery.gallery import Gallery
from gallery.options import GalleryOptions
from gallery.ports import (
    DEFAULT_COLLECTION,
    Catalog,
    CollectionRow,
    Contract,
    FaceDetector,
    FaceEmbedder,
    FaceStore,
    Storage,
)

log = logging.getLogger(__name__)

__all__ = ["ALIGNMENTS", "DETECTORS", "CollectionManager", "collection_name", "open_catalog", "points_text"]

# Opens the backend (store, index, upkeep) of a collection's generation: (row, generation).
OpenStorage = Callable[[CollectionRow, int], Storage]
# Opens the bare store of a collection's generation for a model (a re-embed's): (row, generation, model).
OpenStore = Callable[[CollectionRow, int, str], FaceStore]
# Drops a collection's generation's store for good: (collection id, generation).
DropStore = Callable[[int, int], None]
# The thresholds of a collection: (its contract, its points JSON, "" for its model's and detector's defaults).
CalibrationOf = Callable[[Contract, str], Calibration]


def open_catalog(home: str, default: Contract, password_file: str = "") -> Catalog:
    """The catalog beside the gallery's own store: in its SQLite file, or in its PostgreSQL database."""
    from gallery.stores import is_postgres, read_password

    if is_postgres(home):
        from gallery.catalog_postgres import PostgresCatalog

        return PostgresCatalog(home, default, read_password(password_file))
    from gallery.catalog import SqliteCatalog

    return SqliteCatalog(home, default)


@dataclass
class _Served:
    row: CollectionRow
    storage: Storage
    gallery: Gallery


class CollectionManager:
    """Names → Gallery facades, kept level with the catalog. Thread-safe."""

    def __init__(
        self,
        catalog: Catalog,
        open_storage: OpenStorage,
        drop_store: DropStore,
        open_store: OpenStore,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        options: GalleryOptions,
        calibration_of: CalibrationOf,
        defaults: Contract,
        follow_poll_s: float = 0.5,
        close_grace_s: float = 30.0,
    ) -> None:
        """defaults: the deployment's contract, whose fields fill those a new collection leaves empty;
        close_grace_s: how long a facade replaced by its next generation stays open for the requests
        already in it (a request's deadline is about as long)."""
        self.catalog = catalog
        self.detector = detector
        self.embedder = embedder
        self.options = options
        self.defaults = defaults
        self._open_storage = open_storage
        self._drop_store = drop_store
        self._open_store = open_store
        # Asked at every request: the caller caches what it parses, and re-reads a changed file.
        self._calibration_of = calibration_of
        self._follow_poll_s = follow_poll_s
        self._close_grace_s = close_grace_s
        self._retired: list[tuple[threading.Timer, _Served]] = []
        self._lock = threading.RLock()
        # Opening and closing one at a time: the follower and a request must not open one store twice.
        self._opening = threading.RLock()
        self._served: dict[str, _Served] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self.refresh()
        except BaseException:
            self.close()
            raise

    # --- the facades ---------------------------------------------------------------------------------

    def get(self, name: str) -> Gallery:
        """The facade of a collection ("" = default). NotFound for an unknown one."""
        return self._get(name or DEFAULT_COLLECTION).gallery

    def row(self, name: str) -> CollectionRow:
        """The collection as this replica serves it. NotFound for an unknown one."""
        return self._get(name or DEFAULT_COLLECTION).row

    def storage(self, name: str) -> Storage:
        return self._get(name or DEFAULT_COLLECTION).storage

    def calibration(self, name: str) -> Calibration:
        return self.calibration_of(self.row(name))

    def calibration_of(self, row: CollectionRow) -> Calibration:
        """The thresholds a collection row's points make (its model's defaults when it has none)."""
        return self._calibration_of(row.contract, row.points)

    def open_store_for(self, row: CollectionRow, generation: int) -> Storage:
        """A collection generation's storage (store, index), opened (created when new) for row.contract's
        model. The caller closes it."""
        return self._open_storage(row, generation)

    # --- what the re-embed runner needs (gallery.reembed.ReembedHost) -----------------------------------

    def open_store(self, row: CollectionRow, generation: int, model: str) -> FaceStore:
        """A collection generation's bare store for `model`, created when missing; the caller closes it."""
        return self._open_store(row, generation, model)

    def drop_store(self, row: CollectionRow, generation: int) -> None:
        """Removes a generation's store for good. The facade on it, replaced at the switch, is closed
        first, so nothing of it is saved again beside the store once it is gone."""
        self._close_retired(row.collection_id, generation)
        self._drop_store(row.collection_id, generation)

    def _close_retired(self, collection_id: int, generation: int | None = None) -> None:
        """Closes now the replaced facades of a collection (of one generation) whose store is to go."""
        with self._lock:
            retired = [
                (t, s)
                for t, s in self._retired
                if s.row.collection_id == collection_id and generation in (None, s.row.generation)
            ]
        for timer, served in retired:
            timer.cancel()
            served.gallery.close()  # closing again does nothing

    def switched(self, name: str) -> None:
        """The catalog switched the collection to its next generation: serve that one now."""
        self.swap(name)

    def totals(self) -> tuple[int, int]:
        """(identities, faces) over every collection served here (one that cannot be read counts 0)."""
        with self._lock:
            stores = [s.storage.store for s in self._served.values()]
        identities = faces = 0
        for store in stores:
            try:
                i, f = store.counts()
            except FacerecError:
                continue
            identities, faces = identities + i, faces + f
        return identities, faces

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._served)

    def _get(self, name: str) -> _Served:
        with self._lock:
            served = self._served.get(name)
        if served is None:
            # Created by another replica a moment ago? The catalog is the truth.
            try:
                self.swap(name)
            except NotFound:
                raise NotFound(f"There is no collection named {name!r}.") from None
            with self._lock:
                served = self._served.get(name)
            if served is None:
                raise NotFound(f"There is no collection named {name!r}.")
        return served

    # --- changes ---------------------------------------------------------------------------------------

    def contract_for(self, contract: Contract) -> Contract:
        """A requested contract with its empty fields filled from the deployment's defaults, checked."""
        filled = Contract(
            contract.detector or self.defaults.detector,
            contract.alignment or self.defaults.alignment,
            contract.model or self.defaults.model,
        )
        if filled.detector not in DETECTORS:
            raise InvalidInput(
                f"Unknown detector {filled.detector!r}; use {' or '.join(DETECTORS)}.",
                field="contract.detector",
            )
        if filled.alignment not in ALIGNMENTS:
            raise InvalidInput(
                f"Unknown alignment {filled.alignment!r}; use {' or '.join(ALIGNMENTS)}.",
                field="contract.alignment",
            )
        if filled.model != self.defaults.model:
            try:
                served = [m.name for m in self.embedder.models(timeout_s=10.0)]
            except Unavailable as exc:
                raise Unavailable(f"The embedder's models cannot be checked now ({exc}).") from None
            if filled.model not in served:
                raise InvalidInput(
                    f"The embedder does not serve model {filled.model!r}; it serves {', '.join(served)}.",
                    field="contract.model",
                )
        return filled

    def create(self, name: str, contract: Contract, keep_source_pictures: bool = False) -> CollectionRow:
        """A new collection (its catalog row, then its first store). InvalidInput, AlreadyExists."""
        name = collection_name(name)
        contract = self.contract_for(contract)
        # Held from the catalog row to the open facade: the follower, woken by the new row, must find
        # the collection open rather than open its store a second time.
        with self._opening:
            row = self.catalog.create(name, contract, keep_source_pictures)
            try:
                self._open(row)
            except BaseException:
                # Its store could not be made: the collection does not stay half there.
                self.catalog.delete(name)
                self._drop_store(row.collection_id, row.generation)
                raise
        return row

    def delete(self, name: str) -> tuple[int, int]:
        """Removes a collection, its facade and its store; returns the (identities, faces) it held.
        NotFound; Precondition for "default" and for one being re-embedded."""
        if (name or DEFAULT_COLLECTION) == DEFAULT_COLLECTION:
            raise Precondition("The default collection cannot be deleted.")
        counts = (0, 0)
        with self._lock:
            served = self._served.get(name)
        if served is not None:
            counts = served.storage.store.counts()
        with self._opening:
            row = self.catalog.delete(name)
            self._close(name)
            self._close_retired(row.collection_id)
        for generation in range(1, row.generation + 1):
            # Every generation it may have: a re-embed that failed leaves its next one behind too.
            self._drop_store(row.collection_id, generation)
        self._drop_store(row.collection_id, row.generation + 1)
        return counts

    def set_points(self, name: str, points: str) -> CollectionRow:
        """Stores a collection's operating points (calibration JSON; "" = its model's defaults)."""
        row = self.catalog.set_points(name or DEFAULT_COLLECTION, points)
        self._update(row)
        return row

    def swap(self, name: str) -> None:
        """Serves the collection as the catalog has it now: opened when new here, reopened on its new
        generation after a re-embed's switch, its row (points, operation) updated. NotFound when gone."""
        try:
            row = self.catalog.get(name)
        except NotFound:
            with self._lock:
                here = name in self._served
            if here:  # deleted elsewhere; a name that never was one takes no lock but this one
                self._close(name)
            raise
        self._update(row)

    def refresh(self) -> None:
        """Brings every collection level with the catalog (the follower's step)."""
        # One step against this replica's own creations and deletions: a catalog read before one of them
        # must not close what it just opened (or reopen what it just closed).
        with self._opening:
            rows = {r.name: r for r in self.catalog.collections()}
            for name in set(self.names()) - set(rows):
                log.info("collection %s was deleted elsewhere; closing it", name)
                self._close(name)
            for row in rows.values():
                try:
                    self._update(row)
                except FacerecError as exc:
                    log.warning("collection %s cannot be opened: %s", row.name, exc)

    def _update(self, row: CollectionRow) -> None:
        with self._opening:
            with self._lock:
                served = self._served.get(row.name)
                if served is not None and (
                    served.row.collection_id == row.collection_id and served.row.generation == row.generation
                ):
                    served.row = row  # points, operation: read by the facade's calibration at each request
                    return
            if served is not None:
                log.info("collection %s moved to generation %s; reopening it", row.name, row.generation)
            # Opened outside self._lock (building an index takes a while): requests keep being served.
            self._open(row)

    def _open(self, row: CollectionRow) -> None:
        storage = self._open_storage(row, row.generation)
        holder = _Served(row, storage, None)  # type: ignore[arg-type]  # the facade is set just below

        def calibration() -> Calibration:
            current = holder.row
            return self._calibration_of(current.contract, current.points)

        try:
            # The contract pins every detection and embedding of the collection (gallery/contracted.py).
            holder.gallery = Gallery(
                storage, self.detector, self.embedder, self.options, calibration, contract=row.contract
            )
        except BaseException:
            storage.close()
            raise
        with self._lock:
            old = self._served.get(row.name)
            self._served[row.name] = holder
        if old is not None:
            self._retire(old)

    def _retire(self, served: _Served) -> None:
        """Closes a facade replaced by its collection's next generation once the requests that took it
        before the switch are done (close_grace_s), so a switch fails none of them."""
        timer = threading.Timer(self._close_grace_s, served.gallery.close)
        timer.daemon = True
        with self._lock:
            self._retired = [(t, s) for t, s in self._retired if t.is_alive()]
            self._retired.append((timer, served))
        timer.start()

    def _close(self, name: str) -> None:
        with self._opening:
            with self._lock:
                served = self._served.pop(name, None)
            if served is not None:
                served.gallery.close()

    # --- the follower --------------------------------------------------------------------------------

    def start(self) -> None:
        """Follows the catalog from now on (other replicas' creations, deletions, switches, points)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._follow, name="collections-follower", daemon=True)
            self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self.catalog.wait_for_change(self._follow_poll_s)
                if not self._stop.is_set():
                    self.refresh()
            except FacerecError as exc:  # the catalog's database is away: keep serving, try again
                log.warning("collections follower: %s", exc)
                self._stop.wait(self._follow_poll_s)
            except Exception:  # noqa: BLE001 - the follower must outlive any one bad step
                log.exception("collections follower")
                self._stop.wait(self._follow_poll_s)

    def close(self) -> None:
        """Stops the follower, closes every facade (each saves what a restart loads), then the catalog."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            served, self._served = list(self._served.values()), {}
            retired, self._retired = self._retired, []
        for timer, old in retired:
            timer.cancel()
            old.gallery.close()  # closing again does nothing
        for s in served:
            s.gallery.close()
        self.catalog.close()

"""Milvus collections left behind, and dropping them later.

A facerec collection generation that goes (a deleted collection, the old generation after a re-embed, a
failed re-embed's new one) loses its store first, then its Milvus collection (drop_generation). When Milvus
cannot be reached at that moment, or the replica dies between the two, the Milvus collection stays. No
record of that is needed: the catalog says which generations are served, so any Milvus collection named
for a generation of this deployment (gallery.index_milvus.collection_name) that the catalog does not name
was left behind. Each replica sweeps them (MilvusUpkeep) when it starts and every SWEEP_EVERY_S after.
One Milvus base name (GALLERY_INDEX_COLLECTION) belongs to one catalog: a second deployment on the same
Milvus takes its own base name, as it must already (both would share the default collection's).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from facerec.errors import FacerecError
from gallery.backend import drop_milvus_generation
from gallery.index_milvus import MilvusSettings, drop_collection, generation_of, list_collections
from gallery.namespaces import drop_store
from gallery.ports import Catalog

log = logging.getLogger(__name__)

# How often a replica looks for Milvus collections left behind (besides once when it starts): a collection
# left behind holds memory in Milvus's query nodes, nothing that any request reads.
SWEEP_EVERY_S = 300.0


def drop_generation(
    home: str, password_file: str, milvus: MilvusSettings | None, collection_id: int, generation: int
) -> None:
    """Drops a collection generation that goes: its store (with its pictures), then its Milvus collection
    when the index is Milvus. A Milvus out of reach leaves that collection to the next sweep (logged), so
    deleting a collection still drops the stores of all its generations, and a re-embed still finishes."""
    drop_store(home, collection_id, generation, password_file)
    try:
        drop_milvus_generation(milvus, collection_id, generation)
    except FacerecError as exc:
        log.warning(
            "the Milvus collection of collection %d generation %d was left behind (%s); the next sweep "
            "drops it",
            collection_id,
            generation,
            exc,
        )


def served_generations(catalog: Catalog) -> set[tuple[int, int]]:
    """The (collection id, generation) pairs whose Milvus collections must stay: each collection's serving
    generation and, while an operation runs on it, the one it builds (generation + 1) and the one it
    replaces (generation - 1 once switched: the operation drops that itself when the requests in it end)."""
    served: set[tuple[int, int]] = set()
    for row in catalog.collections():
        served.add((row.collection_id, row.generation))
        if row.operation:
            served |= {(row.collection_id, row.generation - 1), (row.collection_id, row.generation + 1)}
    return served


def sweep(milvus: MilvusSettings, catalog: Catalog) -> list[str]:
    """Drops this deployment's Milvus collections that no served generation names; returns their names.
    Unavailable when Milvus cannot be reached."""
    # Listed before the catalog is read: a generation whose Milvus collection is made after this listing is
    # not in it, and one made before is in the catalog already (its row is written before its store opens).
    names = list_collections(milvus)
    served = served_generations(catalog)
    dropped = []
    for name in sorted(names):
        generation = generation_of(milvus.collection, name)
        if generation is not None and generation not in served:
            if drop_collection(replace(milvus, collection=name)):
                log.info("dropped the Milvus collection %s, left behind by an earlier drop", name)
                dropped.append(name)
    return dropped


class MilvusUpkeep:
    """Sweeps (sweep) in a thread of its own: at start, then every every_s, until stop."""

    def __init__(self, milvus: MilvusSettings, catalog: Catalog, every_s: float = SWEEP_EVERY_S) -> None:
        self._milvus, self._catalog, self._every_s = milvus, catalog, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="milvus-upkeep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sweep(self._milvus, self._catalog)
            except FacerecError as exc:  # Milvus or the catalog out of reach: the next sweep tries again
                log.warning("the sweep for Milvus collections left behind failed: %s", exc)
            except Exception:  # never the end of the thread: a later sweep may well succeed
                log.exception("the sweep for Milvus collections left behind failed")
            self._stop.wait(self._every_s)

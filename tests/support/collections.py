"""A CollectionManager for tests: real stores (a SQLite file or a PostgreSQL database as home), real
FAISS indexes, fake detector and embedder ports over synthetic faces (tests.support.gallery)."""

from __future__ import annotations

from collections.abc import Callable

from facerec.calibration import Calibration, calibration_from_text, default_calibration
from gallery.backend import BackendSettings, open_backend
from gallery.collections import CollectionManager, open_catalog
from gallery.namespaces import drop_store, store_location
from gallery.options import GalleryOptions
from gallery.ports import CollectionRow, Contract, Storage
from gallery.stores import open_store
from tests.support.gallery import MODEL, FakeDetector, FakeEmbedder, World

DEFAULTS = Contract("mtcnn", "box", MODEL)

# How a collection generation's storage opens: (home, row, generation).
OpenFor = Callable[[str, CollectionRow, int], Storage]


def faiss_storage(home: str, row: CollectionRow, generation: int) -> Storage:
    return open_backend(
        BackendSettings(
            store_location(home, row.collection_id, generation), row.contract.model, follow_poll_s=0.1
        )
    )


def calibration_of(contract: Contract, points: str) -> Calibration:
    if points:
        return calibration_from_text(points, contract.model, "the collection's points")
    return default_calibration(contract.model, contract.detector)


def make_manager(home: str, world: World, open_for: OpenFor = faiss_storage) -> CollectionManager:
    """A started manager (its follower polls every 0.1 s) on the gallery whose own store is `home`."""
    manager = CollectionManager(
        open_catalog(home, DEFAULTS),
        lambda row, generation: open_for(home, row, generation),
        lambda collection_id, generation: drop_store(home, collection_id, generation),
        lambda row, generation, model: open_store(store_location(home, row.collection_id, generation), model),
        FakeDetector(),
        FakeEmbedder(world),
        GalleryOptions(follow_poll_s=0.1),
        calibration_of,
        DEFAULTS,
        follow_poll_s=0.1,
    )
    manager.start()
    return manager

"""`facerec migrate` for a whole deployment: every collection, with its contract, its kept pictures and its
operating points, from one home store to another (SQLite <-> PostgreSQL). Pure: no grpc.

Each collection's serving generation is copied with gallery/migrate.py's migrate_store (same face ids,
bit-exact embeddings, pictures), into generation 1 of a collection of the same name at the destination
(its id there is the destination catalog's). The destination's `default` is the source's default, whatever
generation the source serves it from. A collection in the middle of a re-embed is refused: its two
generations would have to be copied at one instant; wait for the operation to end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from facerec.errors import NotFound, Precondition
from gallery.collections import open_catalog
from gallery.migrate import Migration, migrate_store
from gallery.namespaces import store_location
from gallery.ports import DEFAULT_COLLECTION, Catalog, CollectionRow, Contract
from gallery.stores import stored_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionMigration:
    collection: str
    contract: Contract
    migration: Migration
    points_copied: bool


def migrate_collections(
    source: str,
    dest: str,
    overwrite: bool = False,
    sample: int = 1000,
    source_password_file: str = "",
    dest_password_file: str = "",
) -> list[CollectionMigration]:
    """Copies every collection of the deployment whose home store is `source` to the one at `dest` (created
    when new). A gallery of an older version (no catalog yet) is its `default` collection. Precondition for a
    collection being re-embedded, or one whose contract differs at the destination."""
    model = stored_model(source, source_password_file)
    src = open_catalog(source, Contract("mtcnn", "box", model), source_password_file)
    try:
        rows = src.collections()
        busy = [row.name for row in rows if row.operation]
        if busy:
            raise Precondition(
                f"Collection {busy[0]!r} is being re-embedded; migrate once its operation has ended."
            )
        default = next(row for row in rows if row.name == DEFAULT_COLLECTION)
        dst = open_catalog(dest, default.contract, dest_password_file)
        try:
            copied = []
            for row in sorted(rows, key=lambda r: (r.name != DEFAULT_COLLECTION, r.name)):
                there = _target(dst, row)
                done = migrate_store(
                    store_location(source, row.collection_id, row.generation),
                    store_location(dest, there.collection_id, there.generation),
                    model=row.contract.model,
                    overwrite=overwrite,
                    sample=sample,
                    source_password_file=source_password_file,
                    dest_password_file=dest_password_file,
                )
                if row.points:  # calibrated on these faces: they travel with them
                    dst.set_points(there.name, row.points)
                log.info("collection %s: %s faces copied", row.name, done.faces)
                copied.append(CollectionMigration(row.name, row.contract, done, bool(row.points)))
            return copied
        finally:
            dst.close()
    finally:
        src.close()


def _target(dst: Catalog, row: CollectionRow) -> CollectionRow:
    """The destination's collection for a source one: made when missing; Precondition when its contract
    differs (its vectors would not be comparable)."""
    try:
        there = dst.get(row.name)
    except NotFound:
        there = dst.create(row.name, row.contract, row.keep_source_pictures)
    if there.contract != row.contract:
        raise Precondition(
            f"Collection {row.name!r} at the destination holds {there.contract.model} vectors "
            f"({there.contract.detector}, {there.contract.alignment}), not {row.contract.model} "
            f"({row.contract.detector}, {row.contract.alignment})."
        )
    return there


__all__ = ["CollectionMigration", "migrate_collections"]

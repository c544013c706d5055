"""The collections catalog on both engines (a SQLite file, a PostgreSQL database): the default collection
of a first open, ids never reused, the refusals, a re-embed operation's life, one of two claimers winning,
and a change made through another catalog object waking a waiter."""

from __future__ import annotations

import threading

import pytest

from facerec.errors import AlreadyExists, NotFound, Precondition
from gallery.collections import open_catalog
from gallery.ports import DEFAULT_COLLECTION, Catalog, Contract, FailedFace

DEFAULT = Contract("mtcnn", "box", "facenet-keras-128")
INT8 = Contract("mtcnn", "box", "facenet-keras-128-int8")
POINTS = '{"models": {"facenet-keras-128": {"threshold": 1.0}}}'


@pytest.fixture
def catalog(store_location: str):
    c = open_catalog(store_location, DEFAULT)
    yield c
    c.close()


def test_a_first_open_holds_the_default_collection_and_a_reopen_keeps_it(store_location: str) -> None:
    first = open_catalog(store_location, DEFAULT)
    (row,) = first.collections()
    assert (row.collection_id, row.name, row.generation, row.contract, row.points, row.operation) == (
        1,
        DEFAULT_COLLECTION,
        1,
        DEFAULT,
        "",
        "",
    )
    first.set_points(DEFAULT_COLLECTION, POINTS)
    first.close()
    # Another deployment default at the next start does not change what the default collection holds.
    again = open_catalog(store_location, INT8)
    try:
        assert again.get(DEFAULT_COLLECTION).contract == DEFAULT
        assert again.get(DEFAULT_COLLECTION).points == POINTS
    finally:
        again.close()


def test_collections_are_created_listed_and_deleted_and_ids_never_come_back(catalog: Catalog) -> None:
    version = catalog.version()
    a = catalog.create("door", INT8, keep_source_pictures=True)
    assert catalog.version() > version
    assert (a.collection_id, a.generation, a.contract, a.keep_source_pictures) == (2, 1, INT8, True)
    catalog.create("archive", DEFAULT, keep_source_pictures=False)
    assert [c.name for c in catalog.collections()] == ["archive", DEFAULT_COLLECTION, "door"]
    with pytest.raises(AlreadyExists, match="already a collection named 'door'"):
        catalog.create("door", DEFAULT, False)
    assert catalog.delete("door").collection_id == 2
    with pytest.raises(NotFound, match="There is no collection named 'door'."):
        catalog.get("door")
    with pytest.raises(NotFound):
        catalog.delete("door")
    # A new collection of the same name is another collection: its stores are named by a new id.
    assert catalog.create("door", DEFAULT, False).collection_id == 4
    with pytest.raises(Precondition, match="default collection cannot be deleted"):
        catalog.delete(DEFAULT_COLLECTION)
    assert catalog.set_points("door", POINTS).points == POINTS


def test_a_reembed_runs_from_start_to_switch_and_frees_its_collection(catalog: Catalog) -> None:
    catalog.create("door", DEFAULT, False)
    catalog.set_points("door", POINTS)
    op = catalog.start_operation("door", INT8, drop_failed=True)
    assert (op.collection, op.generation, op.source, op.target, op.stage, op.done) == (
        "door",
        2,
        DEFAULT,
        INT8,
        "queued",
        False,
    )
    assert catalog.get("door").operation == op.operation_id
    assert catalog.operation(op.operation_id) == op
    with pytest.raises(Precondition, match="already being re-embedded"):
        catalog.start_operation("door", INT8, False)
    with pytest.raises(Precondition, match="being re-embedded"):
        catalog.delete("door")
    with pytest.raises(NotFound):
        catalog.operation("nope")

    claimed = catalog.claim_operation("replica-1", stale_after_ms=60_000)
    assert claimed is not None and claimed.owner == "replica-1" and claimed.heartbeat_ms > 0
    # Running, with a fresh heartbeat: nobody else takes it.
    assert catalog.claim_operation("replica-2", stale_after_ms=60_000) is None
    progress = catalog.update_operation(
        _with(
            claimed,
            stage="embedding",
            faces_total=3,
            faces_done=2,
            failed=(FailedFace(7, "ann", "No face."),),
        )
    )
    assert (progress.stage, progress.faces_done, progress.failed) == (
        "embedding",
        2,
        (FailedFace(7, "ann", "No face."),),
    )
    with pytest.raises(Precondition):
        catalog.update_operation(_with(progress, owner="replica-2"))

    switched = catalog.switch(op.operation_id)
    assert (switched.generation, switched.contract, switched.points) == (2, INT8, "")
    assert catalog.operation(op.operation_id).switched
    assert catalog.switch(op.operation_id) == switched  # a resumed run switching again changes nothing
    done = catalog.finish_operation(op.operation_id)
    assert done.done and not done.error
    assert catalog.get("door").operation == ""
    assert catalog.claim_operation("replica-2", stale_after_ms=0) is None


def test_a_failed_operation_leaves_the_collection_as_it_was(catalog: Catalog) -> None:
    op = catalog.start_operation(DEFAULT_COLLECTION, INT8, drop_failed=False)
    failed = catalog.finish_operation(op.operation_id, "2 faces could not be re-embedded.", "REEMBED_FAILED")
    assert (failed.done, failed.error, failed.error_reason) == (
        True,
        "2 faces could not be re-embedded.",
        "REEMBED_FAILED",
    )
    row = catalog.get(DEFAULT_COLLECTION)
    assert (row.generation, row.contract, row.operation) == (1, DEFAULT, "")
    with pytest.raises(Precondition):
        catalog.switch(op.operation_id)


def test_a_stale_operation_is_taken_over_and_of_two_claimers_one_wins(store_location: str) -> None:
    catalogs = [open_catalog(store_location, DEFAULT) for _ in range(4)]
    try:
        op = catalogs[0].start_operation(DEFAULT_COLLECTION, INT8, False)
        start = threading.Barrier(len(catalogs))
        won: list[str] = []

        def claim(i: int) -> None:
            start.wait(timeout=30)
            got = catalogs[i].claim_operation(f"replica-{i}", stale_after_ms=60_000)
            if got is not None:
                won.append(got.owner)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(catalogs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(won) == 1
        assert catalogs[0].operation(op.operation_id).owner == won[0]
        # Its owner stopped saying it lives (a stale bound of 0: any heartbeat is old): another takes it.
        taken = catalogs[1].claim_operation("replica-new", stale_after_ms=-1)
        assert taken is not None and taken.owner == "replica-new"
        with pytest.raises(Precondition, match="run by replica-new"):
            catalogs[0].update_operation(_with(taken, owner=won[0]))
    finally:
        for c in catalogs:
            c.close()


def test_a_change_through_another_catalog_wakes_a_waiter(store_location: str) -> None:
    waiter = open_catalog(store_location, DEFAULT)
    writer = open_catalog(store_location, DEFAULT)
    try:
        assert waiter.wait_for_change(0.2) is False
        writer.create("door", DEFAULT, False)
        woke = threading.Event()

        def write_until_seen() -> None:
            # Changes keep coming until the waiter wakes: one made before it began waiting is not a wake.
            for i in range(600):
                writer.set_points("door", f'{{"n": {i}}}')
                if woke.wait(0.1):
                    return

        t = threading.Thread(target=write_until_seen)
        t.start()
        assert waiter.wait_for_change(60) is True
        woke.set()
        t.join(timeout=90)
        assert "door" in [c.name for c in waiter.collections()]
    finally:
        waiter.close()
        writer.close()


def _with(op, **changes):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(op, **changes)

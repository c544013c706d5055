"""The CollectionManager on real stores (SQLite files, PostgreSQL schemas) and real FAISS indexes, with
synthetic faces: collections are isolated (a face of A never answers in B), created and deleted with
their stores, their points served, and two managers on one PostgreSQL database (two replicas) see each
other's collections within a bounded wait.

`collection_backend` says how a collection generation's storage opens; helper tests for other indexes
(Milvus) add their parameters to it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from facerec.calibration import default_calibration
from facerec.errors import InvalidInput, NotFound, Precondition
from gallery.collections import CollectionManager, collection_name, points_text
from gallery.namespaces import store_location
from gallery.ports import DEFAULT_COLLECTION, Contract
from gallery.results import EnrollOutcome
from gallery.rows import NewFace
from tests.support.collections import OpenFor, faiss_storage, make_manager
from tests.support.gallery import MODEL, World, enroll_people, portrait

DEFAULTS_INT8 = Contract("mtcnn", "box", "facenet-keras-128-int8")
SEEN_WITHIN_S = 30.0  # far above the follower's bound (0.1 s poll here), so a loaded machine passes


@pytest.fixture(params=["sqlite+faiss", "postgresql+faiss"])
def collection_backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, OpenFor]:
    """(the gallery's home store, how a collection generation's storage opens), per store × index."""
    store, _, _index = request.param.partition("+")
    home = str(tmp_path / "g.sqlite") if store == "sqlite" else request.getfixturevalue("postgres_url")
    return home, faiss_storage


@pytest.fixture
def world() -> World:
    return World(people=4)


@pytest.fixture
def manager(collection_backend: tuple[str, OpenFor], world: World) -> Iterator[CollectionManager]:
    home, open_for = collection_backend
    m = make_manager(home, world, open_for)
    yield m
    m.close()


def test_a_face_of_one_collection_never_answers_in_another(manager: CollectionManager, world: World) -> None:
    manager.create("a", Contract("", "", ""))
    manager.create("b", Contract("", "", ""))
    a, b = manager.get("a"), manager.get("b")
    enroll_people(a, world, world.names[:2])
    enroll_people(manager.get(""), world, world.names[2:3])  # the default collection holds another one
    probe = world.val[world.names[0]][0]
    vector = world.vectors[probe]

    assert a.search(tuple(vector.tolist()), "", 5)[0].identity == world.names[0]
    assert a.identify_embedding(tuple(vector.tolist()), "", 3).faces[0].identity == world.names[0]
    assert a.verify(portrait(probe), identity=world.names[0]).match

    assert b.search(tuple(vector.tolist()), "", 5) == []
    assert not b.identify_embedding(tuple(vector.tolist()), "", 3).faces[0].known
    with pytest.raises(NotFound):
        b.verify(portrait(probe), identity=world.names[0])
    assert {h.identity for h in manager.get(DEFAULT_COLLECTION).search(tuple(vector.tolist()), "", 5)} == {
        world.names[2]
    }
    # Names are unique within a collection, not across them.
    results = b.enroll(world.names[0], [portrait(world.train[world.names[3]][0])])
    assert [r.outcome for r in results] == [EnrollOutcome.ENROLLED]
    assert b.stats().faces == 1 and a.stats().faces == 2 * len(world.train[world.names[0]])


def test_collections_are_created_and_deleted_with_their_stores(
    collection_backend: tuple[str, OpenFor], manager: CollectionManager, world: World
) -> None:
    home, _ = collection_backend
    row = manager.create("door", Contract("", "similarity", ""), keep_source_pictures=True)
    assert (row.contract, row.keep_source_pictures) == (Contract("mtcnn", "similarity", MODEL), True)
    enroll_people(manager.get("door"), world, world.names[:1])
    assert manager.names() == ["default", "door"]
    assert manager.delete("door") == (1, len(world.train[world.names[0]]))
    with pytest.raises(NotFound, match="There is no collection named 'door'."):
        manager.get("door")
    if not home.startswith("postgresql"):
        assert not Path(store_location(home, row.collection_id, row.generation)).exists()
    # A new "door" starts empty: the old one's faces went with it.
    manager.create("door", Contract("", "", ""))
    assert manager.get("door").stats().faces == 0
    with pytest.raises(Precondition, match="default collection cannot be deleted"):
        manager.delete(DEFAULT_COLLECTION)
    with pytest.raises(NotFound):
        manager.delete("nothing")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "The collection name is empty"),
        (" door", "begins or ends with whitespace"),
        ("a,b", "reserved"),
        ("*", "reserved"),
    ],
)
def test_collection_names_follow_the_identity_rules(name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        collection_name(name)


def test_a_contract_outside_what_the_deployment_serves_is_refused(manager: CollectionManager) -> None:
    with pytest.raises(InvalidInput, match="Unknown detector 'dlib'"):
        manager.create("x", Contract("dlib", "", ""))
    with pytest.raises(InvalidInput, match="Unknown alignment"):
        manager.create("x", Contract("", "crooked", ""))
    with pytest.raises(NotFound):
        manager.get("x")


def test_points_set_on_a_collection_are_served_by_it_alone(manager: CollectionManager) -> None:
    manager.create("door", Contract("", "", ""))
    shipped = default_calibration(MODEL)
    strict = shipped.points[1].__class__("strict", 0.9, 0.0, 0.001, 0.8, 100, 3000)
    manager.set_points("door", points_text(MODEL, [strict], "strict", None, shipped))
    stats = manager.get("door").stats()
    assert (stats.threshold, stats.operating_point, stats.threshold_source) == (0.9, "strict", "calibrated")
    assert manager.get(DEFAULT_COLLECTION).stats().threshold == shipped.threshold
    assert manager.get("door").identification_threshold == shipped.identification_threshold
    with pytest.raises(InvalidInput, match="not among the points"):
        points_text(MODEL, [strict], "eer", None, shipped)


def _eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + SEEN_WITHIN_S
    while not check():
        assert time.monotonic() < deadline, "the other replica did not follow within the bound"
        time.sleep(0.05)


def test_two_managers_on_one_postgresql_database_follow_each_other(postgres_url: str, world: World) -> None:
    first = make_manager(postgres_url, world)
    second = make_manager(postgres_url, world)
    try:
        first.create("door", Contract("", "", ""))
        _eventually(lambda: "door" in second.names())  # opened by the follower, not on demand
        enroll_people(first.get("door"), world, world.names[:1])
        vector = world.vectors[world.val[world.names[0]][0]]
        _eventually(lambda: bool(second.get("door").search(tuple(vector.tolist()), "", 1)))

        shipped = default_calibration(MODEL)
        strict = shipped.points[1].__class__("strict", 0.9, 0.0, 0.001, 0.8, 100, 3000)
        first.set_points("door", points_text(MODEL, [strict], "strict", None, shipped))
        _eventually(lambda: second.get("door").stats().operating_point == "strict")

        # A switch to the next generation made through the first (a re-embed's) is followed by the second.
        op = first.catalog.start_operation("door", DEFAULTS_INT8, drop_failed=False)
        fresh = first.open_store_for(replace(first.row("door"), contract=op.target), op.generation)
        fresh.store.add_faces(world.names[1], [NewFace(vector)])
        fresh.close()
        first.catalog.switch(op.operation_id)
        first.catalog.finish_operation(op.operation_id)
        _eventually(lambda: second.row("door").generation == 2)
        assert [h.identity for h in second.get("door").search(tuple(vector.tolist()), "", 5)] == [
            world.names[1]
        ]
        assert second.get("door").model == DEFAULTS_INT8.model

        first.delete("door")
        _eventually(lambda: "door" not in second.names())
        with pytest.raises(NotFound):
            second.get("door")
    finally:
        first.close()
        second.close()


def test_a_switched_collection_is_served_from_its_new_generation(
    manager: CollectionManager, world: World
) -> None:
    """What a re-embed does around the switch (gallery/reembed.py runs it for real): the next generation
    is filled beside the current one, the catalog switches, swap() serves it; a request that took the old
    facade before the switch is still answered."""
    manager.create("door", Contract("", "", ""))
    old = manager.get("door")
    enroll_people(old, world, world.names[:1])
    op = manager.catalog.start_operation("door", DEFAULTS_INT8, drop_failed=False)
    row = manager.row("door")
    target = replace(row, contract=op.target)
    fresh = manager.open_store_for(target, op.generation)
    try:
        ids, vectors, identities = old_store_faces(manager, "door")
        fresh.store.add_faces(world.names[1], [NewFace(v) for v in vectors])
    finally:
        fresh.close()
    manager.catalog.switch(op.operation_id)
    manager.catalog.finish_operation(op.operation_id)
    manager.swap("door")
    now = manager.get("door")
    assert now is not old and manager.row("door").generation == 2 and now.model == DEFAULTS_INT8.model
    assert [r.identity for r in now.list_identities()[0]] == [world.names[1]]
    assert [r.identity for r in old.list_identities()[0]] == [world.names[0]]  # still open for a while


def old_store_faces(manager: CollectionManager, name: str):  # type: ignore[no-untyped-def]
    return manager.storage(name).store.embeddings()


def test_the_totals_count_every_collection(manager: CollectionManager, world: World) -> None:
    manager.create("door", Contract("", "", ""))
    enroll_people(manager.get("door"), world, world.names[:1])
    enroll_people(manager.get(DEFAULT_COLLECTION), world, world.names[1:3])
    per_person = len(world.train[world.names[0]])
    assert manager.totals() == (3, 3 * per_person)

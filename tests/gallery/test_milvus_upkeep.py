"""Milvus collections left behind (gallery/milvus_upkeep.py), on milvus-lite: a drop that cannot reach Milvus
leaves the generation's Milvus collection but still drops its store; the sweep at the next start, and the
periodic one, drop what the catalog no longer serves and keep what it serves or a re-embed builds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gallery.backend import BackendSettings, milvus_collection_for, open_backend
from gallery.collections import open_catalog
from gallery.index_milvus import MilvusSettings, collection_name, generation_of
from gallery.milvus_upkeep import MilvusUpkeep, drop_generation, sweep
from gallery.namespaces import store_location
from gallery.ports import Catalog
from gallery.rows import NewFace
from tests.support.collections import DEFAULTS
from tests.support.engines import milvus_collection_names
from tests.support.gallery import MODEL


def test_a_milvus_collection_name_reads_back_as_its_generation() -> None:
    for ids in [(1, 1), (1, 2), (2, 1), (12, 3)]:
        assert generation_of("facerec_faces", collection_name("facerec_faces", *ids)) == ids
    for other in [
        "facerec_faces_c2",
        "facerec_faces_c02_g1",
        "facerec_faces_c2_g1_x",
        "other_c2_g1",
        "t_c2_g1",
    ]:
        assert generation_of("facerec_faces", other) is None
    assert generation_of("a.b", "aXb_c2_g1") is None  # the base name is matched as it is, not as a pattern


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    opened = open_catalog(str(tmp_path / "g.sqlite"), DEFAULTS)
    yield opened
    opened.close()


def make_generation(home: str, milvus: MilvusSettings, collection_id: int, generation: int) -> str:
    """Opens a generation's backend as the gallery does (its store and Milvus collection), with a face in it,
    and closes it; returns its Milvus collection's name."""
    name = milvus_collection_for(milvus, collection_id, generation)
    backend = open_backend(
        BackendSettings(
            store_location(home, collection_id, generation),
            MODEL,
            milvus=milvus,
            reconcile_s=3600,
            milvus_collection=name,
        )
    )
    try:
        vector = np.zeros(128, np.float32)
        vector[collection_id] = 1.0
        ids = backend.store.add_faces("alice", [NewFace(vector)])
        backend.index.add(np.array(ids, np.int64), vector[None])
    finally:
        backend.close()
    return name


def gone_within(milvus: MilvusSettings, name: str, within_s: float = 60.0) -> bool:
    deadline = time.monotonic() + within_s
    while name in milvus_collection_names(milvus.uri):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_collection_a_failed_drop_left_in_milvus_is_dropped_by_the_sweep_and_served_ones_stay(
    milvus_settings: MilvusSettings, catalog: Catalog, tmp_path: Path, dead: str
) -> None:
    home, milvus = str(tmp_path / "g.sqlite"), milvus_settings
    door = catalog.create("door", DEFAULTS, False)
    keep = catalog.create("keep", DEFAULTS, False)
    door_name = make_generation(home, milvus, door.collection_id, 1)
    keep_name = make_generation(home, milvus, keep.collection_id, 1)

    # The collection is deleted while Milvus cannot be reached: its store goes, its Milvus collection stays.
    catalog.delete("door")
    unreachable = replace(milvus, uri=f"http://{dead}", timeout_s=0.5)
    drop_generation(home, "", unreachable, door.collection_id, 1)
    assert not Path(store_location(home, door.collection_id, 1)).exists()
    assert door_name in milvus_collection_names(milvus.uri)

    # A re-embed of keep is building generation 2 meanwhile: that Milvus collection must stay too.
    catalog.start_operation("keep", DEFAULTS, False)
    building = make_generation(home, milvus, keep.collection_id, 2)

    upkeep = MilvusUpkeep(milvus, catalog, every_s=0.2)
    upkeep.start()  # as the gallery starts: it sweeps at once
    try:
        assert gone_within(milvus, door_name)
        # One more left behind after the start: the periodic sweep drops it.
        later = catalog.create("later", DEFAULTS, False)
        later_name = make_generation(home, milvus, later.collection_id, 1)
        catalog.delete("later")
        drop_generation(home, "", unreachable, later.collection_id, 1)
        assert gone_within(milvus, later_name)
    finally:
        upkeep.stop()
    names = milvus_collection_names(milvus.uri)
    assert {keep_name, building} <= names and door_name not in names
    assert sweep(milvus, catalog) == []  # nothing left behind; running it again drops nothing

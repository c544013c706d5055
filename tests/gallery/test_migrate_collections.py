"""`facerec migrate` of a whole deployment (gallery/migrate_collections.py): every collection, its contract,
kept pictures and operating points, SQLite -> PostgreSQL -> SQLite on the real engines; a collection being
re-embedded is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerec.errors import Precondition
from gallery.collections import open_catalog
from gallery.migrate_collections import migrate_collections
from gallery.namespaces import store_location
from gallery.ports import Contract
from gallery.rows import KeptPicture, NewFace
from gallery.stores import open_store

FP32 = "facenet-keras-128"
INT8 = "facenet-keras-128-int8"
POINTS = '{"model": "facenet-keras-128-int8", "threshold": 0.9}'


def _face(seed: int, picture: bool = True) -> NewFace:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    kept = (
        KeptPicture(f"jpeg {seed}".encode(), "image/jpeg", 64, 64, (8.0, 8.0, 32.0, 32.0))
        if picture
        else None
    )
    return NewFace(v / np.linalg.norm(v), f"sha{seed}", (1.0, 2.0, 3.0, 4.0), kept)


def _deployment(home: str) -> None:
    catalog = open_catalog(home, Contract("mtcnn", "box", FP32))
    try:
        with open_store(home, FP32) as default:
            default.add_faces("ada", [_face(1), _face(2, picture=False)])
        door = catalog.create("door", Contract("retinaface", "similarity", INT8), keep_source_pictures=True)
        catalog.set_points("door", POINTS)
        with open_store(store_location(home, door.collection_id, door.generation), INT8) as store:
            store.add_faces("bob", [_face(3)])
            store.add_faces("cy", [_face(4), _face(5)])
    finally:
        catalog.close()


def _contents(home: str) -> dict[str, tuple[Contract, str, list[int], list[str], dict[int, KeptPicture]]]:
    catalog = open_catalog(home, Contract("mtcnn", "box", FP32))
    try:
        out = {}
        for row in catalog.collections():
            where = store_location(home, row.collection_id, row.generation)
            with open_store(where, row.contract.model) as store:
                ids, _, names = store.embeddings()
                out[row.name] = (row.contract, row.points, ids.tolist(), names, store.pictures(ids.tolist()))
        return out
    finally:
        catalog.close()


def test_every_collection_travels_with_its_contract_pictures_and_points(
    tmp_path: Path, postgres_url: str
) -> None:
    home = str(tmp_path / "gallery.sqlite")
    _deployment(home)
    before = _contents(home)
    assert set(before) == {"default", "door"} and len(before["door"][4]) == 3
    done = migrate_collections(home, postgres_url)
    assert [(d.collection, d.migration.faces, d.points_copied) for d in done] == [
        ("default", 2, False),
        ("door", 3, True),
    ]
    assert _contents(postgres_url) == before
    back = str(tmp_path / "back.sqlite")
    migrate_collections(postgres_url, back)
    assert _contents(back) == before


def test_a_collection_being_reembedded_is_not_migrated(tmp_path: Path) -> None:
    home = str(tmp_path / "gallery.sqlite")
    _deployment(home)
    catalog = open_catalog(home, Contract("mtcnn", "box", FP32))
    catalog.start_operation("door", Contract("mtcnn", "box", FP32), drop_failed=False)
    catalog.close()
    with pytest.raises(Precondition, match="'door' is being re-embedded"):
        migrate_collections(home, str(tmp_path / "dest.sqlite"))


def test_facerec_migrate_says_what_each_collection_took(tmp_path: Path, capsys) -> None:
    from facerec_app.cli import main

    home = str(tmp_path / "gallery.sqlite")
    _deployment(home)
    assert main(["migrate", home, str(tmp_path / "copy.sqlite")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        "collection default (facenet-keras-128): copied 1 identity, 2 faces (1 with their"
    )
    assert lines[1].startswith(
        "collection door (facenet-keras-128-int8): copied 2 identities, 3 faces (3 with"
    )
    assert lines[1].endswith("; operating points copied")

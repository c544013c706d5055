"""`facerec migrate` carries kept pictures: one collection generation's store (gallery/namespaces.py) goes
from SQLite to PostgreSQL (a real server) and back with every face's picture and source picture, and the
faces without one stay without."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerec.errors import InvalidInput
from gallery.migrate import migrate_store
from gallery.namespaces import store_location
from gallery.rows import KeptPicture, NewFace
from gallery.stores import open_store

MODEL = "facenet-keras-128"


def unit_vectors(n: int, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def picture(i: int) -> KeptPicture:
    return KeptPicture(
        f"picture {i} ".encode() * 200, "image/webp", 100 + i, 120, (10.0, 12.0, 80.0, 90.0 + i)
    )


def pictures_of(where: str) -> tuple[dict[int, KeptPicture], dict[int, bytes], int, dict[int, bool]]:
    with open_store(where, MODEL) as store:
        ids = store.face_ids().tolist()
        has = {
            f.face_id: f.has_picture
            for r in store.list_identities("", 1000)
            for f in store.get_identity(r.identity)[1]
        }
        sources = {i: store.source_picture(i) for i in ids}
        return store.pictures(ids), sources, store.faces_without_picture(), has


def test_a_collection_s_store_goes_to_postgresql_and_back_with_its_pictures(
    tmp_path: Path, postgres_url: str
) -> None:
    v = unit_vectors(12)
    source = store_location(str(tmp_path / "g.sqlite"), 2, 1)
    with open_store(source, MODEL) as store:
        for i in range(4):
            store.add_faces(
                f"p{i}",
                [
                    NewFace(
                        v[3 * i], f"sha-{i}", picture=picture(3 * i), source_picture=f"whole {i}".encode()
                    ),
                    NewFace(v[3 * i + 1], f"sha-{i}b", picture=picture(3 * i + 1)),
                    NewFace(v[3 * i + 2]),  # enrolled as an embedding: no picture
                ],
            )
        store.remove_face(4)
    want = pictures_of(source)
    assert len(want[0]) == 7 and want[2] == 4 and sum(bool(s) for s in want[1].values()) == 3

    dest = store_location(postgres_url, 2, 1)
    done = migrate_store(source, dest, sample=11)
    assert (done.identities, done.faces, done.pictures, done.sampled) == (4, 11, 7, 11)
    assert pictures_of(dest) == want

    back = str(tmp_path / "back.sqlite")
    assert migrate_store(dest, back).pictures == 7
    assert pictures_of(back) == want
    with open_store(postgres_url, MODEL) as home:  # the database's home store was not touched
        assert home.counts() == (0, 0)


def test_migrate_store_names_a_missing_source_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"^There is no gallery at .*nothing\.sqlite\.$"):
        migrate_store(str(tmp_path / "nothing.sqlite"), str(tmp_path / "dest.sqlite"))

"""The derived files beside a store (the saved FAISS index, its side file, the SVM) are bound to their store:
damaged ones, ones of another store (deleted and made again at the same path, a migration into a used
path) and ones from the store's future (an older copy of the store restored) are set aside and rebuilt,
never served; a damaged one never stops a start."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

from gallery.backend import open_gallery, sidecar_paths
from gallery.gallery import Gallery
from gallery.migrate import migrate
from gallery.options import GalleryOptions
from gallery.rows import NewFace
from gallery.stores import open_store

MODEL = "facenet-keras-128"
PEOPLE = [f"person-{i}" for i in range(5)]


class _Unused:
    """The detector and embedder ports: never called here (everything is enrolled as embeddings)."""

    def detect(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("no picture is sent in these tests")

    embed = model_info = detect


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A closed gallery of 5 people x 6 faces with its index and SVM saved beside the store."""
    faces = people(7)
    g = gallery_in(tmp_path)
    for name, vectors in faces.items():
        g.enroll(name, embeddings=[(v.tolist(), MODEL) for v in vectors])
    g.train()
    g.close()
    index_path, _ = sidecar_paths(tmp_path / "g.sqlite")
    assert index_path.is_file()
    return tmp_path, faces


def people(seed: int, prefix: str = "person") -> dict[str, np.ndarray]:
    """5 people x 6 faces, seeded: unit vectors around a centre each."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(5, 128)))
    return {f"{prefix}-{i}": unit(centres[i] + 0.15 * rng.normal(size=(6, 128))) for i in range(5)}


def gallery_in(path: Path) -> Gallery:
    return open_gallery(path / "g.sqlite", MODEL, _Unused(), _Unused(), GalleryOptions())


def all_named_right(g: Gallery, faces: dict[str, np.ndarray]) -> bool:
    answers = [(name, g.identify_embedding(v.tolist())) for name, vs in faces.items() for v in vs]
    return all(a.faces[0].identity == name and a.faces[0].distance < 1e-3 for name, a in answers)


def flip_bytes(path: Path, start: int, count: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_an_index_with_garbled_vector_bytes_is_rebuilt_not_used(saved, caplog) -> None:
    path, faces = saved
    index_path, _ = sidecar_paths(path / "g.sqlite")
    size = index_path.stat().st_size
    flip_bytes(index_path, size // 2, 64)  # inside the vectors: same size, garbled values
    assert index_path.stat().st_size == size
    with caplog.at_level(logging.INFO):
        g = gallery_in(path)
    assert "does not match its checksum" in caplog.text
    assert "built the" in caplog.text
    assert all_named_right(g, faces)
    g.close()


def test_an_index_with_a_reversed_id_map_is_rebuilt_not_used(saved) -> None:
    path, faces = saved
    index_path, _ = sidecar_paths(path / "g.sqlite")
    import faiss

    raw = faiss.read_index(str(index_path))
    ids = faiss.vector_to_array(raw.id_map)
    faiss.copy_array_to_vector(ids[::-1].copy(), raw.id_map)
    faiss.write_index(raw, str(index_path))
    g = gallery_in(path)
    assert all_named_right(g, faces)
    g.close()


@pytest.mark.parametrize("content", ["null", "[]", "{}", '{"store_version": "x"}', ""])
def test_a_side_file_that_is_not_an_object_makes_a_rebuild(saved, content: str) -> None:
    path, faces = saved
    index_path, _ = sidecar_paths(path / "g.sqlite")
    index_path.with_name(index_path.name + ".json").write_text(content)
    g = gallery_in(path)
    assert all_named_right(g, faces)
    g.close()


def store_files(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm")]


def enroll_in_store(location: Path, faces: dict[str, np.ndarray]) -> None:
    """Enrolls each person in one change, through the store alone (no gallery saves any file)."""
    with open_store(location, MODEL) as store:
        for name, vectors in faces.items():
            store.add_faces(name, [NewFace(v) for v in vectors])


def never_served(g: Gallery, old: dict[str, np.ndarray]) -> bool:
    """No face of the old store comes back, under any name: every answer is the new store's."""
    names = {row.identity for row in g.list_identities()[0]}
    answers = [g.identify_embedding(v.tolist()) for vs in old.values() for v in vs]
    return all(
        not (a.faces[0].known and a.faces[0].distance < 1e-3)
        and {c.identity for c in a.faces[0].candidates} <= names
        for a in answers
    )


def test_a_store_deleted_and_made_again_at_the_same_path_gets_none_of_the_old_files(saved, caplog) -> None:
    path, old = saved
    for f in store_files(path / "g.sqlite"):
        f.unlink(missing_ok=True)
    new = people(8, "other")
    enroll_in_store(path / "g.sqlite", new)  # the same number of changes: the same version as the files
    with caplog.at_level(logging.WARNING):
        g = gallery_in(path)
    assert "removed the saved index" in caplog.text and "built from another store" in caplog.text
    assert "removed the saved SVM" in caplog.text and "fit from another store" in caplog.text
    assert all_named_right(g, new) and never_served(g, old)
    assert g.stats().index_size == g.stats().faces == 30
    g.close()


def test_a_migration_into_a_used_path_gets_none_of_the_old_files(saved, tmp_path: Path) -> None:
    path, old = saved
    for f in store_files(path / "g.sqlite"):
        f.unlink(missing_ok=True)
    source = tmp_path / "source" / "s.sqlite"
    new = people(9, "other")
    with open_store(source, MODEL) as s:
        s.add_many([(name, [NewFace(v) for v in vectors]) for name, vectors in new.items()])
    with open_store(source, MODEL) as s, open_store(path / "g.sqlite", MODEL) as d:
        migrate(s, d)
        assert d.store_id != s.store_id  # the target has its own id, not the source's
    g = gallery_in(path)
    assert all_named_right(g, new) and never_served(g, old)
    g.close()


def test_an_older_copy_of_the_store_restored_never_serves_the_files_of_its_future(tmp_path: Path) -> None:
    first, second, third = people(10, "first"), people(11, "second"), people(12, "third")
    g = gallery_in(tmp_path)
    for name, vectors in first.items():
        g.enroll(name, embeddings=[(v.tolist(), MODEL) for v in vectors])
    g.close()
    backup = tmp_path / "backup.sqlite"
    backup.write_bytes((tmp_path / "g.sqlite").read_bytes())  # closed: the WAL is in the main file
    g = gallery_in(tmp_path)
    for name, vectors in second.items():  # five more changes, saved with the files at close
        g.enroll(name, embeddings=[(v.tolist(), MODEL) for v in vectors])
    g.train()
    g.close()
    for f in store_files(tmp_path / "g.sqlite"):
        f.unlink(missing_ok=True)
    (tmp_path / "g.sqlite").write_bytes(backup.read_bytes())
    crashed = gallery_in(tmp_path)
    # Five other changes take the restored store to the version the files were saved at; then a crash
    # (no close, nothing saved): the next start must not take the files of the lost future for these.
    for name, vectors in third.items():
        crashed.enroll(name, embeddings=[(v.tolist(), MODEL) for v in vectors])
    g = gallery_in(tmp_path)
    assert all_named_right(g, first) and all_named_right(g, third) and never_served(g, second)
    assert g.stats().index_size == g.stats().faces == 60
    g.close()
    crashed.close()


@pytest.mark.parametrize("suffix", [".faiss", ".faiss.json", ".svm.npz"])
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_side_file_never_stops_the_start_and_is_rebuilt(
    saved, suffix: str, damage: str, caplog
) -> None:
    path, faces = saved
    side = path / ("g.sqlite" + suffix)
    size = side.stat().st_size
    if damage == "truncate":
        with open(side, "r+b") as f:
            f.truncate(size // 2)
    else:
        flip_bytes(side, size // 2, 8)
    with caplog.at_level(logging.WARNING):
        g = gallery_in(path)
    assert "removed the saved" in caplog.text  # one line says which file and why
    if suffix == ".svm.npz":
        # Refit off the request path: no request is made until the fit is in (stale meanwhile).
        deadline = time.monotonic() + 60
        while g.stats().classifier_stale:
            assert time.monotonic() < deadline, "the SVM was not refit in the background within 60 s"
            time.sleep(0.05)
    assert all_named_right(g, faces)
    g.close()
    # Rebuilt from the store and saved again: the next start loads it without a word.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = gallery_in(path)
    assert "removed the saved" not in caplog.text and all_named_right(again, faces)
    again.close()


def test_a_damaged_svm_in_postgresql_never_stops_the_start(postgres_url: str, caplog) -> None:
    import psycopg

    faces = people(7)
    g = open_gallery(postgres_url, MODEL, _Unused(), _Unused(), GalleryOptions())
    for name, vectors in faces.items():
        g.enroll(name, embeddings=[(v.tolist(), MODEL) for v in vectors])
    g.train()
    g.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE classifier SET arrays = substring(arrays from 1 for length(arrays) / 2)")
    with caplog.at_level(logging.WARNING):
        g = open_gallery(postgres_url, MODEL, _Unused(), _Unused(), GalleryOptions())
        assert all_named_right(g, faces)
    assert "unreadable saved SVM" in caplog.text
    g.close()

"""The saved index and its side file are derived: damaged ones are rebuilt, never used (the SVM is kept in
the store itself)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from gallery.backend import open_gallery, sidecar_paths
from gallery.gallery import Gallery
from gallery.options import GalleryOptions

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
    rng = np.random.default_rng(7)
    centres = unit(rng.normal(size=(5, 128)))
    faces = {name: unit(centres[i] + 0.15 * rng.normal(size=(6, 128))) for i, name in enumerate(PEOPLE)}
    g = gallery_in(tmp_path)
    for name, vectors in faces.items():
        g.enroll(name, embeddings=[(v.tolist(), MODEL) for v in vectors])
    g.train()
    g.close()
    index_path, _ = sidecar_paths(tmp_path / "g.sqlite")
    assert index_path.is_file()
    return tmp_path, faces


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

"""Removal is for good: once RemoveIdentity or RemoveFace returns, no file beside a SQLite store (the
database, its -wal and -shm, the saved FAISS index, the kept SVM) holds the removed name, picture hash
or embedding bytes. The kept SVM goes when it names a removed identity, and a fit made before a removal
is never written after it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from gallery.backend import Backend, BackendSettings, open_backend
from gallery.gallery import Gallery
from gallery.options import GalleryOptions
from gallery.rows import NewFace
from gallery.store import Store
from tests.support.gallery import DIM, MODEL, FakeDetector, FakeEmbedder, World, portrait

GONE = "zorro-the-removed"


def holding(folder: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """needle name -> the files under folder whose bytes contain it."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for label, needle in needles.items():
            if needle in data:
                found.setdefault(label, []).append(path.name)
    return found


def traces(world: World, faces: list[int], name: str = "") -> dict[str, bytes]:
    """What a removed face leaves if anything: its picture's sha256 (hex, as stored), its exact float32
    embedding bytes, and the identity's name (UTF-8, and UTF-32 as numpy keeps it) when it goes too."""
    out = {f"embedding {i}": world.vectors[i].astype("<f4").tobytes() for i in faces}
    out |= {f"sha {i}": hashlib.sha256(portrait(i)).hexdigest().encode() for i in faces}
    if name:
        out["name"] = name.encode()
        out["name (numpy's UTF-32)"] = name.encode("utf-32-le")  # as the SVM's class names are kept
    return out


def gallery_in(folder: Path, world: World) -> tuple[Gallery, Backend]:
    """A gallery on g.sqlite in folder with its FAISS index, and its backend (whose checkpoint saves it)."""
    backend = open_backend(BackendSettings(str(folder / "g.sqlite"), MODEL))
    return Gallery(backend, FakeDetector(), FakeEmbedder(world), GalleryOptions()), backend


def test_a_removed_identity_leaves_no_byte_in_any_file_of_the_store(tmp_path: Path) -> None:
    world = World(people=3)
    g, backend = gallery_in(tmp_path, world)
    try:
        faces = world.train["person-1"][:2]
        # Between the faces of others, so the removed rows share pages with rows that stay.
        g.enroll("person-0", [portrait(i) for i in world.train["person-0"][:3]])
        g.enroll(GONE, [portrait(i) for i in faces])
        g.enroll("person-2", [portrait(i) for i in world.train["person-2"][:3]])
        g.train()  # the kept SVM names every identity
        assert backend.checkpoint()  # the saved index holds every vector
        needles = traces(world, faces, GONE)
        # The search finds them while they are enrolled: in the WAL, the index, the SVM.
        before = holding(tmp_path, needles)
        assert set(before) == set(needles), before
        assert {"g.sqlite-wal", "g.sqlite.faiss"} <= set(before[f"embedding {faces[0]}"])
        assert before["name (numpy's UTF-32)"] == ["g.sqlite.svm.npz"]

        assert g.remove_identity(GONE) == 2
        assert holding(tmp_path, needles) == {}
        # The gallery still answers, and a checkpoint and a close write nothing of it back.
        assert g.identify_embedding(world.vectors[world.val["person-0"][0]].tolist()).faces[0].known
        backend.checkpoint()
    finally:
        g.close()
    assert holding(tmp_path, needles) == {}
    reopened, _ = gallery_in(tmp_path, world)
    try:
        assert [r.identity for r in reopened.list_identities()[0]] == ["person-0", "person-2"]
    finally:
        reopened.close()


def test_a_removed_face_leaves_neither_its_hash_nor_its_embedding(tmp_path: Path) -> None:
    world = World(people=2)
    g, backend = gallery_in(tmp_path, world)
    try:
        kept, gone = world.train["person-0"][:2]
        results = g.enroll("person-0", [portrait(kept), portrait(gone)])
        g.enroll("person-1", [portrait(i) for i in world.train["person-1"][:2]])
        assert backend.checkpoint()
        assert set(holding(tmp_path, traces(world, [gone]))) == set(traces(world, [gone]))
        assert g.remove_face(results[1].face_id) == "person-0"
        assert holding(tmp_path, traces(world, [gone])) == {}
        # What was not removed is still there (in the store: there is no SVM file, none was fit).
        still = {k: v for k, v in traces(world, [kept], "person-0").items() if "UTF-32" not in k}
        assert set(holding(tmp_path, still)) == set(still)
        assert np.array_equal(g.face_embeddings("person-0")[results[0].face_id], world.vectors[kept])
    finally:
        g.close()


def test_a_kept_svm_goes_with_an_identity_it_names_and_a_fit_from_before_a_removal_is_not_kept(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    v = rng.standard_normal((3, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    with Store(tmp_path / "g.sqlite", MODEL, DIM) as store:
        store.add_faces("alice", [NewFace(v[0])])
        (bob,) = store.add_faces("bob", [NewFace(v[1])])
        store.add_faces("carol", [NewFace(v[2])])
        fit_at = store.version()
        store.save_classifier({"classes": np.array(["alice", "carol"])}, fit_at)
        store.remove_face(bob)  # bob goes; the kept fit does not name him, so it stays
        assert store.classifier_version() == fit_at
        # A fit that started before the removal and ends after it names bob: never written.
        store.save_classifier({"classes": np.array(["alice", "bob", "carol"])}, fit_at)
        kept = store.load_classifier()
        assert kept is not None and kept[1]["classes"].tolist() == ["alice", "carol"]
        store.remove_identity("carol")  # the kept fit names carol: it goes
        assert store.load_classifier() is None and store.classifier_version() == -1
        assert not (tmp_path / "g.sqlite.svm.npz").exists()

"""`facerec migrate`: SQLite -> PostgreSQL (a real server) -> SQLite keeps ids, embeddings bit-exact,
pictures' sha256, boxes and the current SVM; a non-empty destination is refused unless --overwrite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerec_app.cli import main
from gallery.migrate import migrate
from gallery.rows import NewFace
from gallery.stores import open_store

MODEL = "facenet-keras-128"


def unit_vectors(n: int, seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def snapshot(location: str) -> tuple:
    with open_store(location, MODEL) as store:
        ids, vectors, names = store.embeddings()
        rows = []
        for r in store.list_identities("", 1000):
            identity, faces = store.get_identity(r.identity)
            rows.append(
                (
                    identity,
                    [
                        (
                            f.face_id,
                            f.identity,
                            f.embedding.tobytes(),
                            f.model,
                            f.image_sha256,
                            f.box,
                            f.created_at_ms,
                        )
                        for f in faces
                    ],
                )
            )
        return ids.tolist(), vectors.tobytes(), names, rows, store.load_classifier() is not None


def test_a_gallery_goes_to_postgresql_and_back_unchanged(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = str(tmp_path / "source.sqlite")
    v = unit_vectors(40)
    with open_store(source, MODEL) as store:
        for i in range(8):
            store.add_faces(
                f"p{i}", [NewFace(v[5 * i + j], f"sha-{i}-{j}", (1.0, 2.0, 3.0 + j, 4.0)) for j in range(5)]
            )
        store.remove_face(3)  # a gap in the ids, kept by the copy
        store.save_classifier({"w": np.ones(3, np.float32)}, store.version())
    assert main(["migrate", source, postgres_url, "--sample", "10"]) == 0
    out = capsys.readouterr().out
    assert (
        "copied 8 identities, 39 faces" in out
        and "10 sampled embeddings identical" in out
        and "SVM copied" in out
    )
    assert snapshot(postgres_url) == snapshot(source)

    back = str(tmp_path / "back.sqlite")
    assert main(["migrate", postgres_url, back]) == 0
    assert snapshot(back) == snapshot(source)
    # New faces continue after the copied ids, in both directions.
    with open_store(postgres_url, MODEL) as pg, open_store(back, MODEL) as sq:
        assert pg.add_faces("new", [NewFace(v[0])])[0] > 40 and sq.add_faces("new", [NewFace(v[0])])[0] > 40


def test_a_non_empty_destination_is_refused_unless_overwritten(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = str(tmp_path / "source.sqlite")
    v = unit_vectors(3)
    with open_store(source, MODEL) as s, open_store(postgres_url, MODEL) as d:
        s.add_faces("alice", [NewFace(v[0]), NewFace(v[1])])
        d.add_faces("mallory", [NewFace(v[2])])
    assert main(["migrate", source, postgres_url]) == 1
    assert "holds 1 faces of 1 identities; pass --overwrite" in capsys.readouterr().err
    with open_store(postgres_url, MODEL) as d:
        assert d.counts() == (1, 1)  # untouched
    assert main(["migrate", source, postgres_url, "--overwrite"]) == 0
    with open_store(postgres_url, MODEL) as d:
        assert [r.identity for r in d.list_identities()] == ["alice"] and d.counts() == (1, 2)


def test_a_missing_source_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", str(tmp_path / "nothing.sqlite"), str(tmp_path / "dest.sqlite")]) == 1
    assert (
        capsys.readouterr().err.strip() == f"facerec: There is no gallery at {tmp_path / 'nothing.sqlite'}."
    )
    assert not (tmp_path / "nothing.sqlite").exists()


def test_sqlite_to_sqlite_verifies_a_sample(tmp_path: Path) -> None:
    v = unit_vectors(6)
    with open_store(tmp_path / "a.sqlite", MODEL) as a, open_store(tmp_path / "b.sqlite", MODEL) as b:
        a.add_many([(f"p{i}", [NewFace(v[i])]) for i in range(6)])
        done = migrate(a, b, sample=4)
        assert (done.identities, done.faces, done.sampled, done.classifier_copied) == (6, 6, 4, False)

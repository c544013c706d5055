"""Identity names are one identity whatever Unicode form they come in."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np

from gallery import validation
from gallery.backend import open_gallery
from gallery.options import GalleryOptions
from gallery.results import EnrollOutcome

MODEL = "facenet-keras-128"

NFC = unicodedata.normalize("NFC", "José")
NFD = unicodedata.normalize("NFD", "José")


def test_nfc_and_nfd_forms_of_a_name_are_one_identity(tmp_path: Path) -> None:
    assert NFC != NFD
    # Enrolled as embeddings: the detector and embedder ports are never called.
    g = open_gallery(tmp_path / "g.sqlite", MODEL, _Unused(), _Unused(), GalleryOptions())
    rng = np.random.default_rng(7)
    for name in (NFC, NFD):
        vector = rng.normal(size=128)
        results = g.enroll(name, embeddings=[((vector / np.linalg.norm(vector)).tolist(), MODEL)])
        assert [r.outcome for r in results] == [EnrollOutcome.ENROLLED]
    rows, _ = g.list_identities()
    assert [(r.identity, r.face_count) for r in rows] == [(NFC, 2)]
    assert g.get_identity(NFD)[0].identity == NFC
    assert g.remove_identity(NFD) == 2
    g.close()


def test_validation_returns_names_in_nfc() -> None:
    assert validation.identity(NFD) == NFC


class _Unused:
    def detect(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("no picture is sent in these tests")

    embed = model_info = detect

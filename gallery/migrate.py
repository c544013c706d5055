"""Copies a gallery from one store to another (SQLite <-> PostgreSQL) and verifies the copy. Pure: no grpc.

Face ids, identities, pictures' sha256, boxes and times are kept as they are, so clients' face ids stay
valid; the embeddings are copied bit-exact. The trained SVM is copied when it is current. A destination
that holds faces is refused unless overwrite is asked for (it is then emptied first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from facerec.errors import Precondition
from gallery.ports import FaceStore
from gallery.rows import FaceRow, IdentityRow

log = logging.getLogger(__name__)

# Identities read and written per transaction: bounded memory at millions of faces.
_IDENTITIES_PER_BATCH = 500


@dataclass(frozen=True)
class Migration:
    identities: int
    faces: int
    sampled: int  # faces whose embedding and identity were compared bit for bit
    classifier_copied: bool


def _empty(dest: FaceStore) -> None:
    while page := dest.list_identities("", _IDENTITIES_PER_BATCH):
        for row in page:
            dest.remove_identity(row.identity)


def migrate(source: FaceStore, dest: FaceStore, overwrite: bool = False, sample: int = 1000) -> Migration:
    """Copies everything in source to dest, then checks counts and `sample` random faces."""
    held = dest.counts()
    if held != (0, 0):
        if not overwrite:
            raise Precondition(
                f"The destination {dest.location} holds {held[1]} faces of {held[0]} identities; "
                "pass --overwrite to replace them."
            )
        log.warning("emptying %s (%s identities) before the copy", dest.location, held[0])
        _empty(dest)
    after = ""
    while page := source.list_identities(after, _IDENTITIES_PER_BATCH):
        identities: list[IdentityRow] = []
        faces: list[FaceRow] = []
        for row in page:
            identity, rows = source.get_identity(row.identity)
            identities.append(identity)
            faces += rows
        dest.import_faces(identities, faces)
        after = page[-1].identity
        log.info("copied identities up to %r", after)

    if dest.counts() != source.counts():
        raise Precondition(
            f"The copy holds {dest.counts()} identities and faces; the source {source.counts()}."
        )
    ids = source.face_ids()
    rng = np.random.default_rng(0)
    picked = rng.choice(ids, size=min(sample, len(ids)), replace=False).tolist() if len(ids) else []
    want_ids, want, want_names = source.faces_by_id(picked)
    got_ids, got, got_names = dest.faces_by_id(picked)
    if want_ids.tolist() != got_ids.tolist() or want_names != got_names or want.tobytes() != got.tobytes():
        raise Precondition("Sampled faces differ between the source and the copy.")

    copied = False
    saved = source.load_classifier()
    if saved is not None and saved[0] == source.version():
        dest.save_classifier(saved[1], dest.version())
        copied = True
    identities_n, faces_n = dest.counts()
    return Migration(identities_n, faces_n, len(picked), copied)

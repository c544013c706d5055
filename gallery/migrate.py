"""Copies a gallery from one store to another (SQLite <-> PostgreSQL) and verifies the copy. Pure: no grpc.

Face ids, identities, pictures' sha256, boxes and times are kept as they are, so clients' face ids stay
valid; the embeddings are copied bit-exact, and each face's kept picture (and source picture) with it.
The trained SVM is copied when it is current. A destination that holds faces is refused unless overwrite
is asked for (it is then emptied first). One store is one collection generation (gallery/namespaces.py):
migrate_store copies one, by location; a deployment's collections are copied one by one with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from facerec.errors import Precondition
from gallery.ports import FaceStore
from gallery.rows import FaceRow, IdentityRow, KeptPicture
from gallery.stores import open_store, stored_model

log = logging.getLogger(__name__)

# Identities read and written per transaction: bounded memory at millions of faces.
_IDENTITIES_PER_BATCH = 500


@dataclass(frozen=True)
class Migration:
    identities: int
    faces: int
    sampled: int  # faces whose embedding and identity were compared bit for bit
    classifier_copied: bool
    pictures: int = 0  # faces whose kept picture was copied


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
        pictures = source.pictures([f.face_id for f in faces])
        # A source picture is kept only with a face's picture (both come from the enrolled picture).
        sources = {i: data for i in sorted(pictures) if (data := source.source_picture(i))}
        if pictures:
            dest.import_pictures(pictures, sources)
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
    without = source.faces_without_picture()
    if dest.faces_without_picture() != without or not _same_pictures(source, dest, picked):
        raise Precondition("Kept pictures differ between the source and the copy.")

    copied = False
    saved = source.load_classifier()
    if saved is not None and saved[0] == source.version():
        dest.save_classifier(saved[1], dest.version())
        copied = True
    identities_n, faces_n = dest.counts()
    return Migration(identities_n, faces_n, len(picked), copied, faces_n - without)


def _same_pictures(source: FaceStore, dest: FaceStore, face_ids: list[int]) -> bool:
    want: dict[int, KeptPicture] = source.pictures(face_ids)
    return want == dest.pictures(face_ids) and all(
        source.source_picture(i) == dest.source_picture(i) for i in want
    )


def migrate_store(
    source: str,
    dest: str,
    model: str = "",
    overwrite: bool = False,
    sample: int = 1000,
    source_password_file: str = "",
    dest_password_file: str = "",
) -> Migration:
    """migrate() between the stores at two locations (SQLite paths, postgresql:// URLs, or one collection
    generation's, gallery.namespaces.store_location); model: the source's when "". InvalidInput when there
    is no gallery at source."""
    model = model or stored_model(source, source_password_file)
    with (
        open_store(source, model, password_file=source_password_file) as src,
        open_store(dest, model, password_file=dest_password_file) as dst,
    ):
        return migrate(src, dst, overwrite=overwrite, sample=sample)

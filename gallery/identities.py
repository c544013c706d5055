"""The gallery's identities as things to manage: list, read, rename, remove, and the faces' kept pictures.
Store first, then the index, under the storage's write lock. Pure: no grpc."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from facerec.errors import InvalidInput, NotFound
from gallery import validation
from gallery.ports import Storage
from gallery.rows import FaceRow, IdentityRow, KeptPicture


class Identities:
    """What Gallery's management calls do. refit: called after a rename (the SVM's labels are the names)."""

    def __init__(self, storage: Storage, refit: Callable[[], None]) -> None:
        self._storage = storage
        self._store = storage.store
        self._index = storage.index
        self._refit = refit

    def list_identities(self, page_size: int = 0, page_token: str = "") -> tuple[list[IdentityRow], str]:
        """A page of identities in name order and the token of the next page ("" on the last)."""
        size = validation.page_size(page_size)
        after = validation.decode_page_token(page_token)
        rows = self._store.list_identities(after, size + 1)
        if len(rows) > size:
            return rows[:size], validation.encode_page_token(rows[size - 1].identity)
        return rows, ""

    def get_identity(self, identity: str) -> tuple[IdentityRow, list[FaceRow]]:
        """An identity and all its faces, for in-process use (tools, tests); a request reads identity_page."""
        return self._store.get_identity(validation.identity(identity))

    def identity_page(
        self, identity: str, page_size: int = 0, page_token: str = "", with_pictures: bool = False
    ) -> tuple[IdentityRow, list[FaceRow], str]:
        """An identity (its whole face count), a page of its faces in face id order, and the token of the
        next page ("" on the last). A page holds at most 1000 faces, or 32 when their pictures will be sent:
        what one call reads and answers is bounded however many faces the identity holds."""
        size = validation.face_page_size(page_size, with_pictures)
        after = validation.decode_face_page_token(page_token)
        row, faces = self._store.get_identity(validation.identity(identity), after, size + 1)
        if len(faces) > size:
            return row, faces[:size], validation.encode_page_token(str(faces[size - 1].face_id))
        return row, faces, ""

    def face_embeddings(self, identity: str) -> dict[int, NDArray[np.float32]]:
        """face id → unit (d,) embedding of each of the identity's faces (for calibrating on them)."""
        ids, vectors = self._store.embeddings_of(validation.identity(identity))
        return {int(i): v for i, v in zip(ids, vectors, strict=True)}

    def face_picture(self, face_id: int) -> KeptPicture:
        """A face's kept picture. NotFound for an unknown face or one enrolled without a picture (an embedding,
        or a face from before pictures were kept)."""
        if face_id <= 0:
            raise NotFound(f"No face has id {face_id}.")
        return self._store.picture(face_id)

    def face_pictures(self, face_ids: Sequence[int]) -> dict[int, KeptPicture]:
        """The kept pictures of these faces by id; faces without one (or unknown) are left out."""
        return self._store.pictures([i for i in face_ids if i > 0]) if face_ids else {}

    def rename_identity(self, identity: str, new_name: str) -> IdentityRow:
        """Renames an identity, keeping its faces (their ids, vectors and pictures). new_name obeys the rules
        of a new identity, and may not look like another enrolled identity (TR39); it may look like the old
        name (correcting a typo). NotFound for an unknown identity; AlreadyExists when new_name is taken."""
        old = validation.identity(identity)
        new = validation.new_identity(new_name)
        with self._storage.write_lock:
            # Under the write lock, as enrolment checks: a concurrent Enroll may create a look-alike.
            look_alike = self._store.confusable_identity(new)
            if look_alike is not None and look_alike not in (old, new):
                raise InvalidInput(
                    f"The name {new!r} looks like the enrolled identity {look_alike!r}; choose a name that "
                    "does not look like it.",
                    field="new_name",
                )
            row = self._store.rename_identity(old, new)
        # Face ids and vectors are unchanged, so the index stays as it is (it knows faces, not names); the
        # SVM's classes are names: the store's version moved, so it is stale and the nearest neighbour answers
        # for the renamed faces until the refit started here ends.
        self._refit()
        return row

    def remove_identity(self, identity: str) -> int:
        """Removes the identity and its faces (store, then index); returns how many faces went."""
        name = validation.identity(identity)
        with self._storage.write_lock:
            removed = self._store.remove_identity(name)
            self._index.remove(removed)
            self._storage.discard_saved_index()
        return len(removed)

    def remove_face(self, face_id: int) -> str:
        """Removes one face (store, then index); returns the identity it belonged to."""
        if face_id <= 0:
            raise NotFound(f"No face has id {face_id}.")
        with self._storage.write_lock:
            identity = self._store.remove_face(face_id)
            self._index.remove([face_id])
            self._storage.discard_saved_index()
        return identity

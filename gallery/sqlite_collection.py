"""What the SQLite store does for collections: faces' kept pictures, renaming an identity, sealing the
store while a re-embed moves its collection on. A mixin of gallery.store.Store (its connection, lock and
transactions), kept apart so the store's file stays readable. Pure: no grpc."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager

from facerec.errors import AlreadyExists, NotFound
from gallery.pictures_sql import PictureSQL
from gallery.rows import ADD, REMOVE, FaceRow, IdentityRow, KeptPicture, check_identity
from gallery.validation import skeleton

PICTURES = PictureSQL("?")


class CollectionStore:
    """Kept pictures, renames and sealing on gallery.store.Store's connection."""

    _db: sqlite3.Connection
    _lock: threading.Lock

    def _transaction(self, sealable: bool = True) -> AbstractContextManager[None]:
        raise NotImplementedError  # gallery.store.Store's

    def _log_change(self, op: str, face_ids: Sequence[int]) -> None:
        raise NotImplementedError  # gallery.store.Store's

    def _set_meta(self, key: str, value: str) -> None:
        raise NotImplementedError  # gallery.store.Store's

    def get_identity(
        self, identity: str, after: int = 0, limit: int | None = None
    ) -> tuple[IdentityRow, list[FaceRow]]:
        raise NotImplementedError  # gallery.store.Store's

    def picture(self, face_id: int) -> KeptPicture:
        """A face's kept picture. NotFound for an unknown face or one kept without a picture."""
        with self._lock:
            return PICTURES.one(self._db, face_id)

    def pictures(self, face_ids: Sequence[int]) -> dict[int, KeptPicture]:
        """The kept pictures of these faces, by id (faces without one, or unknown, are left out)."""
        with self._lock:
            return PICTURES.many(self._db, face_ids)

    def source_picture(self, face_id: int) -> bytes:
        """The whole source picture kept with a face; b"" when none is kept."""
        with self._lock:
            return PICTURES.source(self._db, face_id)

    def faces_without_picture(self) -> int:
        with self._lock:
            return PICTURES.without_picture(self._db)

    def import_pictures(self, pictures: dict[int, KeptPicture], sources: dict[int, bytes]) -> None:
        """Stores kept pictures (and source pictures) of faces held here, replacing theirs, in one
        transaction. NotFound when one names no face. Not a change of the vectors: the version stays."""
        with self._lock, self._transaction():
            missing = PICTURES.missing_faces(self._db, [*pictures, *sources])
            if missing:
                raise NotFound(f"No face {missing[0]} in the gallery.")
            PICTURES.write(self._db, pictures, sources)

    def rename_identity(self, identity: str, new_name: str) -> IdentityRow:
        """Renames an identity, keeping its faces, in one transaction: its faces are logged as removed,
        then added (two versions), so a follower re-reads their identity. NotFound; AlreadyExists."""
        check_identity(new_name)
        if new_name == identity:
            return self.get_identity(identity, limit=0)[0]  # nothing to change (NotFound if unknown)
        with self._lock, self._transaction():
            row = self._db.execute(
                "SELECT created_at_ms FROM identities WHERE name = ?", (identity,)
            ).fetchone()
            if row is None:
                raise NotFound(f"No identity {identity!r} in the gallery.")
            ids = [
                int(r[0])
                for r in self._db.execute(
                    "SELECT face_id FROM faces WHERE identity = ? ORDER BY face_id", (identity,)
                )
            ]
            if self._db.execute("SELECT 1 FROM identities WHERE name = ?", (new_name,)).fetchone():
                raise AlreadyExists(f"An identity named {new_name!r} is in the gallery already.")
            # The new row first: the faces' foreign key must name an identity at every statement.
            self._db.execute(
                "INSERT INTO identities(name, created_at_ms, skeleton) VALUES (?, ?, ?)",
                (new_name, int(row[0]), skeleton(new_name)),
            )
            self._db.execute("UPDATE faces SET identity = ? WHERE identity = ?", (new_name, identity))
            self._db.execute("DELETE FROM identities WHERE name = ?", (identity,))
            self._log_change(REMOVE, ids)
            self._log_change(ADD, ids)
        return IdentityRow(new_name, len(ids), int(row[0]))

    def seal(self) -> None:
        """From now on every write raises Unavailable, in every process opening the file (reads go on)."""
        with self._lock, self._transaction(sealable=False):
            self._set_meta("sealed", "1")

    def unseal(self) -> None:
        """Takes seal() back (a re-embed that failed before its switch leaves the collection writable)."""
        with self._lock, self._transaction(sealable=False):
            self._db.execute("DELETE FROM meta WHERE key = 'sealed'")

    def last_face_id(self) -> int:
        """The largest face id this store ever gave (removed faces' included); 0 when none."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'faces'").fetchone()
        return 0 if row is None else int(row[0])

    def reserve_face_ids(self, up_to: int) -> None:
        """New faces get ids above up_to from now on (a re-embed's next store continues its old one's ids)."""
        with self._lock, self._transaction(sealable=False):
            if (
                self._db.execute(
                    "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'faces'", (up_to,)
                ).rowcount
                == 0
            ):
                self._db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('faces', ?)", (up_to,))

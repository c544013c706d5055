"""What the PostgreSQL store does for collections: faces' kept pictures, renaming an identity, sealing the
store while a re-embed moves its collection on. A mixin of gallery.store_postgres.PostgresStore (its
session and change log), kept apart so the store's file stays readable. Pure: no grpc.

Removed pictures: their rows go in the removal's transaction (ON DELETE CASCADE); PostgreSQL has no
secure_delete, so the bytes stay in the table's dead tuples until VACUUM (autovacuum) reclaims them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from facerec.errors import AlreadyExists, NotFound
from gallery.pg_session import Session
from gallery.pictures_sql import PictureSQL
from gallery.rows import ADD, REMOVE, FaceRow, IdentityRow, KeptPicture, check_identity, sealed
from gallery.validation import skeleton

PICTURES = PictureSQL("%s")


class CollectionStore:
    """Kept pictures, renames and sealing on gallery.store_postgres.PostgresStore's session."""

    _session: Session

    def _begin_change(self, conn: psycopg.Connection[Any]) -> int:
        raise NotImplementedError  # PostgresStore's

    def _log_change(self, conn: psycopg.Connection[Any], version: int, op: str, face_ids: list[int]) -> None:
        raise NotImplementedError  # PostgresStore's

    def get_identity(
        self, identity: str, after: int = 0, limit: int | None = None
    ) -> tuple[IdentityRow, list[FaceRow]]:
        raise NotImplementedError  # PostgresStore's

    def picture(self, face_id: int) -> KeptPicture:
        """A face's kept picture. NotFound for an unknown face or one kept without a picture."""
        return self._session.run(lambda conn: PICTURES.one(conn, face_id))

    def pictures(self, face_ids: Sequence[int]) -> dict[int, KeptPicture]:
        """The kept pictures of these faces, by id (faces without one, or unknown, are left out)."""
        return self._session.run(lambda conn: PICTURES.many(conn, face_ids), atomic=True)

    def source_picture(self, face_id: int) -> bytes:
        """The whole source picture kept with a face; b"" when none is kept."""
        return self._session.run(lambda conn: PICTURES.source(conn, face_id))

    def faces_without_picture(self) -> int:
        return self._session.run(PICTURES.without_picture)

    def import_pictures(self, pictures: dict[int, KeptPicture], sources: dict[int, bytes]) -> None:
        """Stores kept pictures (and source pictures) of faces held here, replacing theirs, in one
        transaction. NotFound when one names no face. Not a change of the vectors: the version stays."""

        def work(conn: psycopg.Connection[Any]) -> None:
            # The writers' lock, as _begin_change takes it, without moving the version.
            row = conn.execute("SELECT sealed FROM state FOR UPDATE").fetchone()
            if row is not None and row[0]:
                raise sealed()
            missing = PICTURES.missing_faces(conn, [*pictures, *sources])
            if missing:
                raise NotFound(f"No face {missing[0]} in the gallery.")
            PICTURES.write(conn, pictures, sources)

        self._session.run(work, write=True)

    def rename_identity(self, identity: str, new_name: str) -> IdentityRow:
        """Renames an identity, keeping its faces, in one transaction: its faces are logged as removed,
        then added (two versions), so a follower re-reads their identity. NotFound; AlreadyExists."""
        check_identity(new_name)
        if new_name == identity:
            return self.get_identity(identity, limit=0)[0]  # nothing to change (NotFound if unknown)

        def work(conn: psycopg.Connection[Any]) -> IdentityRow:
            version = self._begin_change(conn)  # a refusal below rolls the version back too
            row = conn.execute("SELECT created_at_ms FROM identities WHERE name = %s", (identity,)).fetchone()
            if row is None:
                raise NotFound(f"No identity {identity!r} in the gallery.")
            if conn.execute("SELECT 1 FROM identities WHERE name = %s", (new_name,)).fetchone():
                raise AlreadyExists(f"An identity named {new_name!r} is in the gallery already.")
            created = int(row[0])
            # The new row first: the faces' foreign key must name an identity at every statement.
            conn.execute(
                "INSERT INTO identities (name, created_at_ms, skeleton) VALUES (%s, %s, %s)",
                (new_name, created, skeleton(new_name)),
            )
            ids = sorted(
                int(r[0])
                for r in conn.execute(
                    "UPDATE faces SET identity = %s WHERE identity = %s RETURNING face_id",
                    (new_name, identity),
                )
            )
            conn.execute("DELETE FROM identities WHERE name = %s", (identity,))
            self._log_change(conn, version, REMOVE, ids)
            again = conn.execute("UPDATE state SET version = version + 1 RETURNING version").fetchone()
            assert again is not None
            self._log_change(conn, int(again[0]), ADD, ids)
            return IdentityRow(new_name, len(ids), created)

        return self._session.run(work, write=True)

    def seal(self) -> None:
        """From now on every write raises Unavailable, in every replica (reads go on). Waits for the write
        in flight: it takes the row lock every writer takes first."""
        self._session.run(lambda conn: conn.execute("UPDATE state SET sealed = true"), write=True)

    def unseal(self) -> None:
        """Takes seal() back (a re-embed that failed before its switch leaves the collection writable)."""
        self._session.run(lambda conn: conn.execute("UPDATE state SET sealed = false"), write=True)

    def last_face_id(self) -> int:
        """The largest face id this store ever gave (removed faces' included); 0 when none."""

        def work(conn: Any) -> int:
            row = conn.execute("SELECT last_value, is_called FROM faces_face_id_seq").fetchone()
            return int(row[0]) if row[1] else 0

        return self._session.run(work)

    def reserve_face_ids(self, up_to: int) -> None:
        """New faces get ids above up_to from now on (a re-embed's next store continues its old one's ids)."""
        self._session.run(
            lambda conn: conn.execute(
                "SELECT setval('faces_face_id_seq', GREATEST(%s, (SELECT MAX(face_id) FROM faces),"
                " (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM faces_face_id_seq), 1),"
                " GREATEST(%s, (SELECT MAX(face_id) FROM faces),"
                " (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM faces_face_id_seq)) > 0)",
                (int(up_to), int(up_to)),
            ),
            write=True,
        )

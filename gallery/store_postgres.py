"""The gallery's store in PostgreSQL: the same truth as the SQLite store, shared by any number of replicas.

Identities, faces (embeddings bit-exact as bytea), the fitted classifier and a change log live in one
database. Every change is one transaction that first takes the `state` row lock and bumps the store
version there, so writers from all replicas commit one at a time, in version order, and the change log
(one row per version) can be followed by version without gaps. The schema is created and migrated by
the gallery itself (schema_migrations), under an advisory lock so replicas starting together agree.
A gallery.ports.FaceStore; rows and codecs are gallery/rows.py's, the connection gallery/pg_session.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray

from facerec.errors import InvalidInput, NotFound
from gallery.pg_collection import PICTURES, CollectionStore
from gallery.pg_schema import SCHEMA_VERSION, claim_store, integrity_check, migrate
from gallery.pg_session import Session, url_schema
from gallery.pictures_sql import new_pictures
from gallery.rows import (
    ADD,
    CHANGE_LOG_KEEP_MS,
    FACE_COLUMNS_WITH_PICTURE,
    IDENTITY_WITH_COUNT,
    PRUNE_EVERY_VERSIONS,
    REMOVE,
    Change,
    DuplicatePicture,
    FaceRow,
    IdentityRow,
    NewFace,
    StoreState,
    box_columns,
    check_identity,
    classifier_bytes,
    classifier_from_bytes,
    embedding_bytes,
    face_row,
    now_ms,
    sealed,
    unpack,
)
from gallery.validation import skeleton

log = logging.getLogger(__name__)

__all__ = ["CHANNEL", "SCHEMA_VERSION", "PostgresStore"]

# The default schema's; a collection's schema (gallery/namespaces.py) has its own, so one collection's
# writes wake only its own followers.
CHANNEL = "facerec_gallery_changes"


class PostgresStore(CollectionStore):
    """Identities and faces in PostgreSQL. Thread-safe: one connection (gallery.pg_session, which reopens
    it once lost) with synchronous_commit=on, so an acknowledged change is in the server's fsynced WAL.
    A URL naming a search_path (gallery.namespaces.store_location) keeps the store in that schema."""

    def __init__(
        self, url: str, model: str, dim: int = 128, password: str = "", connect_timeout_s: float = 10.0
    ) -> None:
        if not model:
            raise InvalidInput("The store needs a model name.")
        self._url = url
        self._dim = dim
        self._model = model
        self._schema = url_schema(url)
        self._channel = f"{CHANNEL}_{self._schema}" if self._schema else CHANNEL
        self._session = Session(url, password, connect_timeout_s)
        self._run = self._session.run
        try:
            self._run(lambda conn: migrate(conn, self._schema), write=True)
            self._store_id = self._run(lambda conn: claim_store(conn, model, dim), write=True)
        except BaseException:
            self._session.close()  # a refused store (another model, a newer schema) leaves no connection
            raise

    # -- plumbing ---------------------------------------------------------------------------------

    def _begin_change(self, conn: psycopg.Connection[Any]) -> int:
        """Takes the writers' lock and returns the version this change will commit as; Unavailable when
        the store is sealed (read under the lock that seal() takes too, so no write commits after it)."""
        row = conn.execute("UPDATE state SET version = version + 1 RETURNING version, sealed").fetchone()
        assert row is not None  # the migration inserted the one row
        if row[1]:
            raise sealed()  # the transaction rolls back, the bumped version with it
        version = int(row[0])
        if version % PRUNE_EVERY_VERSIONS == 0:
            conn.execute("DELETE FROM changes WHERE at_ms < %s", (now_ms() - CHANGE_LOG_KEEP_MS,))
        return version

    def _log_change(self, conn: psycopg.Connection[Any], version: int, op: str, face_ids: list[int]) -> None:
        conn.execute(
            "INSERT INTO changes (version, op, face_ids, at_ms) VALUES (%s, %s, %s, %s)",
            (version, op, face_ids, now_ms()),
        )
        # Delivered at commit, to every replica listening: they wake up instead of waiting for a poll.
        conn.execute("SELECT pg_notify(%s, %s)", (self._channel, str(version)))

    # -- public API (gallery.ports.FaceStore) --------------------------------------------------------

    @property
    def model(self) -> str:
        return self._model

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def store_id(self) -> str:
        return self._store_id

    @property
    def location(self) -> str:
        """The URL without its password, safe to log."""
        info = psycopg.conninfo.conninfo_to_dict(self._url)
        where = f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        return f"{where} (schema {self._schema})" if self._schema else where

    def add_faces(self, identity: str, faces: Sequence[NewFace]) -> list[int]:
        """Store faces for an identity (created if new) in one transaction, durably committed on return."""
        return self.add_many([(identity, faces)])[0]

    def add_many(self, batches: Sequence[tuple[str, Sequence[NewFace]]]) -> list[list[int]]:
        """add_faces for several identities in ONE transaction. Returns ids per batch, ascending."""
        rows: list[list[tuple[Any, ...]]] = []
        now = now_ms()
        for identity, faces in batches:
            check_identity(identity)
            rows.append(
                [
                    (
                        embedding_bytes(face.embedding, self._dim),
                        face.image_sha256,
                        *box_columns(face.box),
                    )
                    for face in faces
                ]
            )
        total = sum(len(r) for r in rows)
        if not total:
            return [[] for _ in batches]

        def work(conn: psycopg.Connection[Any]) -> list[list[int]]:
            version = self._begin_change(conn)
            # Ids are taken first so that COPY (fast for bulk enrolls) can write them; under the writers'
            # lock they ascend in commit order.
            ids = sorted(
                int(r[0])
                for r in conn.execute(
                    "SELECT nextval('faces_face_id_seq') FROM generate_series(1, %s)", (total,)
                )
            )
            new_identities = 0
            out: list[list[int]] = []
            at = 0
            with conn.cursor() as cur:
                for (identity, _), face_rows in zip(batches, rows, strict=True):
                    if face_rows:
                        cur.execute(
                            "INSERT INTO identities (name, created_at_ms, skeleton) VALUES (%s, %s, %s)"
                            " ON CONFLICT (name) DO NOTHING",
                            (identity, now, skeleton(identity)),
                        )
                        new_identities += cur.rowcount
                    out.append(ids[at : at + len(face_rows)])
                    at += len(face_rows)
                with cur.copy(
                    "COPY faces (face_id, identity, embedding, model, image_sha256, box_x, box_y, box_w, box_h,"
                    " created_at_ms) FROM STDIN"
                ) as copy:
                    for (identity, _), face_rows, face_ids in zip(batches, rows, out, strict=True):
                        for face_id, (blob, sha, *box) in zip(face_ids, face_rows, strict=True):
                            copy.write_row((face_id, identity, blob, self._model, sha, *box, now))
            for (_, faces), face_ids in zip(batches, out, strict=True):
                PICTURES.write(
                    conn,
                    new_pictures(face_ids, [f.picture for f in faces]),
                    dict(zip(face_ids, [f.source_picture for f in faces], strict=True)),
                )
            conn.execute(
                "UPDATE state SET identities = identities + %s, faces = faces + %s", (new_identities, total)
            )
            self._log_change(conn, version, ADD, ids)
            return out

        try:
            return self._run(work, write=True)
        except psycopg.errors.UniqueViolation:
            # Another replica stored one of these pictures for the identity since the caller checked.
            raise DuplicatePicture(
                "A picture of this request was enrolled for its identity meanwhile."
            ) from None

    def import_faces(self, identities: Sequence[IdentityRow], faces: Sequence[FaceRow]) -> None:
        """Copies identities and faces from another store as they are (ids, pictures' sha256, boxes,
        times) in one transaction: `facerec migrate`. The ids must be new here."""
        if not faces:
            return
        blobs = [embedding_bytes(f.embedding, self._dim) for f in faces]

        def work(conn: psycopg.Connection[Any]) -> None:
            version = self._begin_change(conn)
            with conn.cursor() as cur:
                new_identities = 0
                for row in identities:
                    cur.execute(
                        "INSERT INTO identities (name, created_at_ms, skeleton) VALUES (%s, %s, %s)"
                        " ON CONFLICT (name) DO NOTHING",
                        (row.identity, row.created_at_ms, skeleton(row.identity)),
                    )
                    new_identities += cur.rowcount
                with cur.copy(
                    "COPY faces (face_id, identity, embedding, model, image_sha256, box_x, box_y, box_w, box_h,"
                    " created_at_ms) FROM STDIN"
                ) as copy:
                    for f, blob in zip(faces, blobs, strict=True):
                        copy.write_row(
                            (
                                f.face_id,
                                f.identity,
                                blob,
                                self._model,
                                f.image_sha256,
                                *box_columns(f.box),
                                f.created_at_ms,
                            )
                        )
            # New ids continue after the copied ones, never reusing one.
            conn.execute(
                "SELECT setval('faces_face_id_seq', GREATEST((SELECT MAX(face_id) FROM faces),"
                " (SELECT last_value FROM faces_face_id_seq)))"
            )
            conn.execute(
                "UPDATE state SET identities = identities + %s, faces = faces + %s",
                (new_identities, len(faces)),
            )
            self._log_change(conn, version, ADD, [f.face_id for f in faces])

        self._run(work, write=True)

    def find_face_by_image(self, identity: str, image_sha256: str) -> int | None:
        """The id of this identity's face enrolled from the picture with this sha256, if any."""
        if not image_sha256:
            return None
        row = self._run(
            lambda conn: conn.execute(
                "SELECT face_id FROM faces WHERE identity = %s AND image_sha256 = %s ORDER BY face_id LIMIT 1",
                (identity, image_sha256),
            ).fetchone()
        )
        return None if row is None else int(row[0])

    def other_identity_with_image(self, identity: str, image_sha256: str) -> str | None:
        """Another identity with a face enrolled from the picture with this sha256, if any."""
        if not image_sha256:
            return None
        # "<> ''" lets the planner use the partial unique index, whose leading column is the sha256.
        row = self._run(
            lambda conn: conn.execute(
                "SELECT identity FROM faces WHERE image_sha256 = %s AND image_sha256 <> '' AND identity <> %s"
                " ORDER BY face_id LIMIT 1",
                (image_sha256, identity),
            ).fetchone()
        )
        return None if row is None else str(row[0])

    def confusable_identity(self, identity: str) -> str | None:
        """An enrolled identity other than this one that looks like it (the same TR39 skeleton), if any."""
        row = self._run(
            lambda conn: conn.execute(
                "SELECT name FROM identities WHERE skeleton = %s AND name <> %s ORDER BY name LIMIT 1",
                (skeleton(identity), identity),
            ).fetchone()
        )
        return None if row is None else str(row[0])

    def remove_identity(self, identity: str) -> list[int]:
        """Remove an identity and all its faces; returns the removed face ids. NotFound if unknown."""

        def work(conn: psycopg.Connection[Any]) -> list[int]:
            version = self._begin_change(conn)
            if conn.execute("SELECT 1 FROM identities WHERE name = %s", (identity,)).fetchone() is None:
                raise NotFound(f"No identity {identity!r} in the gallery.")
            ids = sorted(
                int(r[0])
                for r in conn.execute("DELETE FROM faces WHERE identity = %s RETURNING face_id", (identity,))
            )
            conn.execute("DELETE FROM identities WHERE name = %s", (identity,))
            conn.execute("UPDATE state SET identities = identities - 1, faces = faces - %s", (len(ids),))
            self._log_change(conn, version, REMOVE, ids)
            return ids

        return self._run(work, write=True)

    def remove_face(self, face_id: int) -> str:
        """Remove one face; returns its identity (removed too if left with no faces). NotFound if unknown."""

        def work(conn: psycopg.Connection[Any]) -> str:
            version = self._begin_change(conn)
            row = conn.execute(
                "DELETE FROM faces WHERE face_id = %s RETURNING identity", (int(face_id),)
            ).fetchone()
            if row is None:
                raise NotFound(f"No face {int(face_id)} in the gallery.")
            identity = str(row[0])
            gone = 0
            if (
                conn.execute("SELECT 1 FROM faces WHERE identity = %s LIMIT 1", (identity,)).fetchone()
                is None
            ):
                conn.execute("DELETE FROM identities WHERE name = %s", (identity,))
                gone = 1
            conn.execute("UPDATE state SET identities = identities - %s, faces = faces - 1", (gone,))
            self._log_change(conn, version, REMOVE, [int(face_id)])
            return identity

        return self._run(work, write=True)

    def get_identity(
        self, identity: str, after: int = 0, limit: int | None = None
    ) -> tuple[IdentityRow, list[FaceRow]]:
        """As gallery.store.Store.get_identity: a page of faces with face_id > after, the whole count."""

        def work(conn: psycopg.Connection[Any]) -> tuple[IdentityRow, list[FaceRow]]:
            row = conn.execute(f"{IDENTITY_WITH_COUNT} %s", (identity,)).fetchone()
            if row is None:
                raise NotFound(f"No identity {identity!r} in the gallery.")
            faces = [
                face_row(r)
                for r in conn.execute(
                    f"SELECT {FACE_COLUMNS_WITH_PICTURE} FROM faces WHERE identity = %s AND face_id > %s"
                    " ORDER BY face_id LIMIT %s",
                    (identity, after, limit),
                )
            ]
            return IdentityRow(identity, int(row[1]), int(row[0])), faces

        return self._run(work, atomic=True)

    def has_identity(self, identity: str) -> bool:
        return (
            self._run(
                lambda conn: conn.execute("SELECT 1 FROM identities WHERE name = %s", (identity,)).fetchone()
            )
            is not None
        )

    def list_identities(self, after: str = "", limit: int = 100) -> list[IdentityRow]:
        """Identities in name order with names > after, at most limit."""
        if limit <= 0:
            return []
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT i.name, i.created_at_ms, (SELECT COUNT(*) FROM faces f WHERE f.identity = i.name)"
                ' FROM identities i WHERE i.name COLLATE "C" > %s ORDER BY i.name COLLATE "C" LIMIT %s',
                (after, int(limit)),
            ).fetchall()
        )
        return [IdentityRow(name, int(count), int(created)) for name, created, count in rows]

    def embeddings(self) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
        """Everything, in face_id order: ids (n,) int64, vectors (n, dim) float32, identities (n)."""
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT face_id, identity, embedding FROM faces ORDER BY face_id"
            ).fetchall()
        )
        return unpack(rows, self._dim)

    def embeddings_of(self, identity: str) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """One identity's faces: ids (n,) int64, vectors (n, dim) float32 (n = 0 when unknown)."""
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT face_id, identity, embedding FROM faces WHERE identity = %s ORDER BY face_id",
                (identity,),
            ).fetchall()
        )
        ids, vectors, _ = unpack(rows, self._dim)
        return ids, vectors

    def face_ids(self) -> NDArray[np.int64]:
        """Every face id, ascending."""
        rows = self._run(lambda conn: conn.execute("SELECT face_id FROM faces ORDER BY face_id").fetchall())
        return np.array([r[0] for r in rows], dtype=np.int64)

    def faces_by_id(
        self, face_ids: Sequence[int]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
        """The faces among these ids that still exist, in face_id order (as embeddings())."""
        wanted = sorted({int(i) for i in face_ids})
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT face_id, identity, embedding FROM faces WHERE face_id = ANY(%s) ORDER BY face_id",
                (wanted,),
            ).fetchall()
        )
        return unpack(rows, self._dim)

    def identities_of(self, face_ids: Sequence[int]) -> dict[int, str]:
        """face id -> identity for the ids that exist (unknown ids are left out)."""
        wanted = sorted({int(i) for i in face_ids if int(i) >= 0})
        if not wanted:
            return {}
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT face_id, identity FROM faces WHERE face_id = ANY(%s)", (wanted,)
            ).fetchall()
        )
        return {int(face_id): identity for face_id, identity in rows}

    def counts(self) -> tuple[int, int]:
        """(identities, faces), kept in the state row by every change (COUNT(*) scans at millions)."""
        row = self._run(lambda conn: conn.execute("SELECT identities, faces FROM state").fetchone())
        assert row is not None
        return int(row[0]), int(row[1])

    def version(self) -> int:
        """A persisted counter bumped by every change: equal versions mean equal contents."""
        row = self._run(lambda conn: conn.execute("SELECT version FROM state").fetchone())
        assert row is not None
        return int(row[0])

    def state(self) -> StoreState:
        """Version, counts and the kept classifier's version in one statement (one round trip)."""
        row = self._run(
            lambda conn: conn.execute(
                "SELECT version, identities, faces,"
                " COALESCE((SELECT store_version FROM classifier WHERE id = 1), -1) FROM state"
            ).fetchone()
        )
        assert row is not None
        return StoreState(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def integrity_check(self) -> bool:
        """True when the kept counts match the tables and every version since the oldest kept is logged."""

        return self._run(integrity_check, atomic=True)

    # -- the fitted classifier, shared by every replica ---------------------------------------------

    def save_classifier(self, arrays: dict[str, NDArray[Any]], store_version: int) -> None:
        """Keeps a fitted classifier for every replica; an older fit never replaces a newer one."""
        data = classifier_bytes(arrays, store_version, self._store_id)
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO classifier VALUES (1, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                " store_version = excluded.store_version, arrays = excluded.arrays, saved_at_ms = excluded.saved_at_ms"
                " WHERE classifier.store_version <= excluded.store_version",
                (store_version, data, now_ms()),
            ),
            write=True,
        )

    def load_classifier(self) -> tuple[int, dict[str, NDArray[Any]]] | None:
        """The kept classifier: (store version it was fit at, arrays), or None."""
        row = self._run(lambda conn: conn.execute("SELECT arrays FROM classifier WHERE id = 1").fetchone())
        if row is None:
            return None
        try:
            return classifier_from_bytes(bytes(row[0]))
        except (ValueError, KeyError) as exc:
            log.warning("ignoring the unreadable saved SVM in the store: %s", exc)
            return None

    def classifier_version(self) -> int:
        """The store version the kept classifier was fit at; -1 when none is kept."""
        row = self._run(
            lambda conn: conn.execute("SELECT store_version FROM classifier WHERE id = 1").fetchone()
        )
        return -1 if row is None else int(row[0])

    # -- following the changes of other replicas ----------------------------------------------------

    def changes_since(self, version: int, limit: int = 10_000) -> list[Change]:
        """Committed changes with versions > version, ascending (at most limit)."""
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT version, op, face_ids FROM changes WHERE version > %s ORDER BY version LIMIT %s",
                (int(version), int(limit)),
            ).fetchall()
        )
        return [Change(int(v), op, [int(i) for i in ids]) for v, op, ids in rows]

    def wait_for_change(self, timeout_s: float) -> bool:
        """Blocks until another change is committed (a NOTIFY) or timeout_s passes; True when notified."""
        return self._session.wait_for_notify(self._channel, timeout_s)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The gallery's store in PostgreSQL: the same truth as the SQLite store, shared by any number of replicas.

Identities, faces (embeddings bit-exact as bytea), the fitted classifier and a change log live in one
database. Every change is one transaction that first takes the `state` row lock and bumps the store
version there, so writers from all replicas commit one at a time, in version order, and the change log
(one row per version) can be followed by version without gaps. The schema is created and migrated by
the gallery itself (schema_migrations), under an advisory lock so replicas starting together agree.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import psycopg
from numpy.typing import NDArray

from facerec.errors import InvalidInput, NotFound, Precondition, Unavailable
from gallery.store import (
    DuplicatePicture,
    FaceRow,
    IdentityRow,
    NewFace,
    classifier_bytes,
    classifier_from_bytes,
    embedding_bytes,
)
from gallery.validation import skeleton

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 3
CHANNEL = "facerec_gallery_changes"
# Any fixed number: the key of the advisory lock that serialises schema migrations across replicas.
_MIGRATION_LOCK = 0x66616365
# Change-log rows older than this are pruned by writers; a replica that was away longer rebuilds its
# index from the store instead of replaying (it notices the gap in versions).
CHANGE_LOG_KEEP_MS = 24 * 3600 * 1000
_PRUNE_EVERY_VERSIONS = 1000


def _add_skeletons(conn: psycopg.Connection[Any]) -> None:
    """Fills the skeleton (TR39, for the look-alike check) of every identity named before it existed."""
    names = [str(r[0]) for r in conn.execute("SELECT name FROM identities")]
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE identities SET skeleton = %s WHERE name = %s", [(skeleton(n), n) for n in names]
        )


def _drop_repeated_pictures(conn: psycopg.Connection[Any]) -> None:
    """Removes the faces that repeat a picture already enrolled for the same identity (replicas enrolling it
    at the same moment could both store it before the constraint), keeping the first; logged as one
    change, so every replica's index drops them too."""
    ids = sorted(
        int(r[0])
        for r in conn.execute(
            "DELETE FROM faces f USING faces g WHERE f.image_sha256 <> '' AND f.identity = g.identity"
            " AND f.image_sha256 = g.image_sha256 AND f.face_id > g.face_id RETURNING f.face_id"
        )
    )
    if not ids:
        return
    row = conn.execute(
        "UPDATE state SET version = version + 1, faces = faces - %s RETURNING version", (len(ids),)
    ).fetchone()
    assert row is not None
    conn.execute(
        "INSERT INTO changes (version, op, face_ids, at_ms) VALUES (%s, 'remove', %s, %s)",
        (int(row[0]), ids, _now_ms()),
    )
    log.warning("removed %s faces that repeated a picture of the same identity", len(ids))


Migration = str | Callable[[psycopg.Connection[Any]], None]

_MIGRATIONS: dict[int, tuple[Migration, ...]] = {
    1: (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # One row: its lock serialises writers, so versions and commits come in the same order.
        "CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL,"
        " identities BIGINT NOT NULL, faces BIGINT NOT NULL)",
        "INSERT INTO state VALUES (1, 0, 0, 0)",
        "CREATE TABLE identities (name TEXT PRIMARY KEY CHECK (name <> ''), created_at_ms BIGINT NOT NULL)",
        "CREATE TABLE faces (face_id BIGSERIAL PRIMARY KEY,"
        " identity TEXT NOT NULL REFERENCES identities(name),"
        " embedding BYTEA NOT NULL, model TEXT NOT NULL, image_sha256 TEXT NOT NULL DEFAULT '',"
        " box_x REAL, box_y REAL, box_w REAL, box_h REAL, created_at_ms BIGINT NOT NULL)",
        "CREATE INDEX faces_by_identity ON faces(identity, image_sha256)",
        "CREATE TABLE changes (version BIGINT PRIMARY KEY, op TEXT NOT NULL CHECK (op IN ('add', 'remove')),"
        " face_ids BIGINT[] NOT NULL, at_ms BIGINT NOT NULL)",
        "CREATE TABLE classifier (id INTEGER PRIMARY KEY CHECK (id = 1), store_version BIGINT NOT NULL,"
        " arrays BYTEA NOT NULL, saved_at_ms BIGINT NOT NULL)",
    ),
    2: (
        "ALTER TABLE identities ADD COLUMN skeleton TEXT NOT NULL DEFAULT ''",
        _add_skeletons,
        "CREATE INDEX identities_by_skeleton ON identities(skeleton)",
    ),
    # One picture once per identity, whatever replicas do at the same moment: the database refuses the
    # second (faces given as embeddings have no picture, hence the partial index).
    3: (
        _drop_repeated_pictures,
        "CREATE UNIQUE INDEX faces_one_picture_per_identity ON faces(image_sha256, identity)"
        " WHERE image_sha256 <> ''",
    ),
}

_FACE_COLUMNS = "face_id, identity, embedding, model, image_sha256, box_x, box_y, box_w, box_h, created_at_ms"


@dataclass(frozen=True)
class Change:
    """One committed change: the store version it made, and the faces it added or removed."""

    version: int
    op: str  # "add" or "remove"
    face_ids: list[int]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _reason(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")


class PostgresStore:
    """Identities and faces in PostgreSQL. Thread-safe: one connection guarded by a lock.

    A lost connection (the server restarted, the network dropped) is reopened on the next call; a read,
    or a write that failed before its commit was sent, is retried once on the new connection, otherwise
    the call raises Unavailable. Durability: synchronous_commit=on for this session, so an
    acknowledged change is in the server's fsynced WAL (with its fsync setting on, the default).
    """

    shared = True

    def __init__(
        self, url: str, model: str, dim: int = 128, password: str = "", connect_timeout_s: float = 10.0
    ) -> None:
        if not model:
            raise InvalidInput("The store needs a model name.")
        self._url = url
        self._password = password
        self._connect_timeout_s = connect_timeout_s
        self._dim = dim
        self._model = model
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._listener: psycopg.Connection[Any] | None = None
        self._listener_lock = threading.Lock()
        self._run(self._migrate, write=True)
        self._run(self._adopt_model, write=True)

    # -- plumbing ---------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        extra: dict[str, Any] = {"password": self._password} if self._password else {}
        try:
            conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=max(1, round(self._connect_timeout_s)),
                application_name="facerec-gallery",
                **extra,
            )
        except psycopg.OperationalError as exc:
            raise Unavailable(f"The gallery's PostgreSQL store cannot be reached ({_reason(exc)}).") from None
        # Whatever the server's default: an acknowledged change must be flushed to its WAL first.
        conn.execute("SET synchronous_commit = on")
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def _run(
        self, work: Callable[[psycopg.Connection[Any]], T], write: bool = False, atomic: bool = False
    ) -> T:
        """Runs work(conn) in one transaction (writes, and reads of several statements: atomic), or as
        one autocommitted statement; reconnects once when the connection was lost."""
        with self._lock:
            for attempt in (0, 1):
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                conn = self._conn
                body_done = False
                try:
                    if not (write or atomic):
                        # autocommit: the one statement is its own transaction (saves BEGIN and COMMIT)
                        return work(conn)
                    with conn.transaction():
                        result = work(conn)
                        body_done = True
                    return result
                except psycopg.OperationalError as exc:
                    self._drop()
                    # A write whose COMMIT was sent may or may not have happened: never run it twice.
                    if attempt == 0 and not (write and body_done):
                        log.warning("lost the PostgreSQL connection (%s); reconnecting", _reason(exc))
                        continue
                    raise Unavailable(
                        f"The gallery's PostgreSQL store cannot be reached ({_reason(exc)})."
                    ) from None
            raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)"
        )
        done = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
        if done and max(done) > SCHEMA_VERSION:
            raise Precondition(
                f"The gallery's database has schema version {max(done)}, newer than this gallery's "
                f"{SCHEMA_VERSION}; run a newer gallery."
            )
        for version in sorted(set(_MIGRATIONS) - done):
            for step in _MIGRATIONS[version]:
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(conn)
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, _now_ms()))
            log.info("PostgreSQL store migrated to schema version %s", version)

    def _adopt_model(self, conn: psycopg.Connection[Any]) -> None:
        (version, faces) = conn.execute("SELECT version, faces FROM state FOR UPDATE").fetchone() or (0, 0)
        held = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('model', 'dim')").fetchall())
        if held.get("model") not in (None, self._model):
            if faces:
                raise Precondition(
                    f"The gallery holds embeddings of model {held['model']!r}, not {self._model!r}; "
                    "use a new database or re-enroll."
                )
            # An empty gallery adopts the new model.
            held = {}
            conn.execute("UPDATE state SET version = version + 1")
        if not held:
            for key, value in (("model", self._model), ("dim", str(self._dim))):
                conn.execute(
                    "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
        held_dim = int(held.get("dim", self._dim))
        if held_dim != self._dim:
            raise Precondition(f"The gallery holds {held_dim}-d embeddings, not {self._dim}-d.")

    def _begin_change(self, conn: psycopg.Connection[Any]) -> int:
        """Takes the writers' lock and returns the version this change will commit as."""
        row = conn.execute("UPDATE state SET version = version + 1 RETURNING version").fetchone()
        assert row is not None  # the migration inserted the one row
        version = int(row[0])
        if version % _PRUNE_EVERY_VERSIONS == 0:
            conn.execute("DELETE FROM changes WHERE at_ms < %s", (_now_ms() - CHANGE_LOG_KEEP_MS,))
        return version

    def _log_change(self, conn: psycopg.Connection[Any], version: int, op: str, face_ids: list[int]) -> None:
        conn.execute(
            "INSERT INTO changes (version, op, face_ids, at_ms) VALUES (%s, %s, %s, %s)",
            (version, op, face_ids, _now_ms()),
        )
        # Delivered at commit, to every replica listening: they wake up instead of waiting for a poll.
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(version)))

    def _vector(self, blob: bytes) -> NDArray[np.float32]:
        return np.frombuffer(blob, dtype="<f4").astype(np.float32)

    def _face_row(self, row: tuple[Any, ...]) -> FaceRow:
        face_id, identity, blob, model, sha, bx, by, bw, bh, created = row
        box = None if bx is None else (float(bx), float(by), float(bw), float(bh))
        return FaceRow(int(face_id), identity, self._vector(bytes(blob)), model, sha, box, int(created))

    def _unpack(
        self, rows: list[tuple[Any, ...]]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(bytes(r[2]) for r in rows), dtype="<f4").astype(np.float32)
        return ids, vectors.reshape(len(rows), self._dim), [r[1] for r in rows]

    # -- public API (as gallery.store.Store) --------------------------------------------------------

    @property
    def model(self) -> str:
        return self._model

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def location(self) -> str:
        """The URL without its password, safe to log."""
        info = psycopg.conninfo.conninfo_to_dict(self._url)
        return f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"

    def add_faces(self, identity: str, faces: Sequence[NewFace]) -> list[int]:
        """Store faces for an identity (created if new) in one transaction, durably committed on return."""
        return self.add_many([(identity, faces)])[0]

    def add_many(self, batches: Sequence[tuple[str, Sequence[NewFace]]]) -> list[list[int]]:
        """add_faces for several identities in ONE transaction. Returns ids per batch, ascending."""
        rows: list[list[tuple[Any, ...]]] = []
        now = _now_ms()
        for identity, faces in batches:
            if not identity:
                raise InvalidInput("The identity must not be empty.")
            rows.append(
                [
                    (
                        embedding_bytes(face.embedding, self._dim),
                        face.image_sha256,
                        *(face.box if face.box is not None else (None, None, None, None)),
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
            conn.execute(
                "UPDATE state SET identities = identities + %s, faces = faces + %s", (new_identities, total)
            )
            self._log_change(conn, version, "add", ids)
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
                        box = f.box if f.box is not None else (None, None, None, None)
                        copy.write_row(
                            (f.face_id, f.identity, blob, self._model, f.image_sha256, *box, f.created_at_ms)
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
            self._log_change(conn, version, "add", [f.face_id for f in faces])

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
            self._log_change(conn, version, "remove", ids)
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
            self._log_change(conn, version, "remove", [int(face_id)])
            return identity

        return self._run(work, write=True)

    def get_identity(self, identity: str) -> tuple[IdentityRow, list[FaceRow]]:
        """An identity and its faces in face_id order. NotFound if unknown."""

        def work(conn: psycopg.Connection[Any]) -> tuple[IdentityRow, list[FaceRow]]:
            row = conn.execute("SELECT created_at_ms FROM identities WHERE name = %s", (identity,)).fetchone()
            if row is None:
                raise NotFound(f"No identity {identity!r} in the gallery.")
            faces = [
                self._face_row(r)
                for r in conn.execute(
                    f"SELECT {_FACE_COLUMNS} FROM faces WHERE identity = %s ORDER BY face_id", (identity,)
                )
            ]
            return IdentityRow(identity, len(faces), int(row[0])), faces

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
        return self._unpack(rows)

    def embeddings_of(self, identity: str) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """One identity's faces: ids (n,) int64, vectors (n, dim) float32 (n = 0 when unknown)."""
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT face_id, identity, embedding FROM faces WHERE identity = %s ORDER BY face_id",
                (identity,),
            ).fetchall()
        )
        ids, vectors, _ = self._unpack(rows)
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
        return self._unpack(rows)

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

    def integrity_check(self) -> bool:
        """True when the kept counts match the tables and every version since the oldest kept is logged."""

        def work(conn: psycopg.Connection[Any]) -> bool:
            kept = conn.execute("SELECT identities, faces FROM state").fetchone()
            real = conn.execute(
                "SELECT (SELECT COUNT(*) FROM identities), (SELECT COUNT(*) FROM faces)"
            ).fetchone()
            orphans = conn.execute(
                "SELECT COUNT(*) FROM identities i WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.identity = i.name)"
            ).fetchone()
            ok = kept == real and orphans == (0,)
            if not ok:
                log.error(
                    "integrity check failed: kept %s, real %s, identities without faces %s",
                    kept,
                    real,
                    orphans,
                )
            return ok

        return self._run(work, atomic=True)

    # -- the fitted classifier, shared by every replica ---------------------------------------------

    def save_classifier(self, arrays: dict[str, NDArray[Any]], store_version: int) -> None:
        """Keeps a fitted classifier for every replica; an older fit never replaces a newer one."""
        data = classifier_bytes(arrays, store_version)
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO classifier VALUES (1, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                " store_version = excluded.store_version, arrays = excluded.arrays, saved_at_ms = excluded.saved_at_ms"
                " WHERE classifier.store_version <= excluded.store_version",
                (store_version, data, _now_ms()),
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
        """Blocks until another change is committed (a NOTIFY) or timeout_s passes; True when notified.

        Uses its own connection; when that cannot be had it just waits, so a caller polling with it keeps
        working through an outage."""
        with self._listener_lock:
            try:
                if self._listener is None or self._listener.closed:
                    self._listener = self._connect()
                    self._listener.execute(f"LISTEN {CHANNEL}")
                notified = False
                for _ in self._listener.notifies(timeout=timeout_s, stop_after=1):
                    notified = True
                return notified
            except (psycopg.Error, Unavailable) as exc:
                log.debug("change listener: %s", exc)
                if self._listener is not None:
                    self._listener.close()
                self._listener = None
        time.sleep(timeout_s)
        return False

    def close(self) -> None:
        with self._lock:
            self._drop()
        with self._listener_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The gallery's durable store: identities and their faces in one SQLite file (WAL), the source of truth.

A gallery.ports.FaceStore: rows and codecs are gallery/rows.py's, shared with the PostgreSQL store.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facerec.errors import InvalidInput, NotFound, Overloaded
from gallery.classifier_file import ClassifierFile
from gallery.pictures_sql import new_pictures
from gallery.rows import (
    ADD,
    CHANGE_LOG_KEEP_MS,
    PRUNE_EVERY_VERSIONS,
    REMOVE,
    Change,
    FaceRow,
    IdentityRow,
    NewFace,
    StoreState,
    box_columns,
    check_identity,
    embedding_bytes,
    face_row,
    now_ms,
    sealed,
    unpack,
)
from gallery.sqlite_collection import PICTURES, CollectionStore
from gallery.sqlite_schema import claim_store, configure, empty_wal
from gallery.sqlite_schema import create as create_schema
from gallery.validation import skeleton

log = logging.getLogger(__name__)

# SQLite's default limit on host parameters is 32766 (3.32+); stay well below it for IN (...) lists.
_IN_CHUNK = 900


class Store(CollectionStore):
    """Identities and faces in SQLite. Thread-safe: one connection guarded by a lock.

    Every change is one transaction, durably committed (WAL, synchronous=FULL) before the method
    returns, and bumps a persisted change counter (`version`). The store holds embeddings of one
    model only: opening a file that holds faces of another model raises Precondition.
    """

    def __init__(self, path: str | Path, model: str, dim: int = 128) -> None:
        if not model:
            raise InvalidInput("The store needs a model name.")
        self._path = Path(path)
        self._dim = dim
        self._lock = threading.Lock()
        # isolation_level=None: no implicit transactions; each change opens BEGIN IMMEDIATE itself.
        self._db = sqlite3.connect(
            str(self._path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        try:
            configure(self._db)
            create_schema(self._db)
            with self._transaction(sealable=False):
                self._store_id = claim_store(self._db, model, dim)
        except BaseException:
            self._db.close()
            raise
        self._model = model
        # Commits wake wait_for_change: one process owns a SQLite store, so its own commits are all there are.
        self._changed = threading.Condition()
        self._classifier = ClassifierFile(self._path.with_name(self._path.name + ".svm.npz"), self._store_id)
        self._classifier.vet(self.version())
        self._changed_in_transaction = False
        self._removed_at = -1  # the version of this process's last removal: older fits are never kept

    # -- plumbing ---------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, sealable: bool = True) -> Iterator[None]:
        """One write transaction; Unavailable when the store is sealed (unless not sealable: opening,
        sealing). The caller holds self._lock (or is the constructor)."""
        self._db.execute("BEGIN IMMEDIATE")
        self._changed_in_transaction = False
        try:
            # Read under the write lock (BEGIN IMMEDIATE): no write of any connection commits after a seal.
            if sealable and self._meta("sealed") == "1":
                raise sealed()
            yield
            self._db.execute("COMMIT")
            if self._changed_in_transaction:
                with self._changed:
                    self._changed.notify_all()
        except BaseException as exc:
            # SQLite may have rolled back already (a failed COMMIT); then ROLLBACK has nothing to undo.
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                log.error("the store's disk is full: %s", exc)
                raise Overloaded("The store's disk is full; nothing of this request was stored.") from None
            raise

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _bump(self) -> int:
        """Moves the version on; returns the new one. The caller holds a transaction."""
        (version,) = self._db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version' RETURNING value"
        ).fetchone()
        return int(version)

    def _log_change(self, op: str, face_ids: Sequence[int]) -> None:
        """Bumps the version and logs the change under it. The caller holds a transaction."""
        version = self._bump()
        if version % PRUNE_EVERY_VERSIONS == 0:
            self._db.execute("DELETE FROM changes WHERE at_ms < ?", (now_ms() - CHANGE_LOG_KEEP_MS,))
        self._db.execute(
            "INSERT INTO changes (version, op, face_ids, at_ms) VALUES (?, ?, ?, ?)",
            (version, op, json.dumps([int(i) for i in face_ids]), now_ms()),
        )
        self._changed_in_transaction = True

    # -- public API -------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self._model

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def path(self) -> Path:
        return self._path

    @property
    def store_id(self) -> str:
        return self._store_id

    @property
    def location(self) -> str:
        """Where the store lives, safe to log."""
        return str(self._path)

    def add_faces(self, identity: str, faces: Sequence[NewFace]) -> list[int]:
        """Store faces for an identity (created if new) in one transaction, durably committed on return.

        Returns the new face ids, in order; ids are never reused (they are also the index's ids).
        """
        return self.add_many([(identity, faces)])[0]

    def add_many(self, batches: Sequence[tuple[str, Sequence[NewFace]]]) -> list[list[int]]:
        """add_faces for several identities in ONE transaction (bulk enroll, one fsync). Returns ids per batch."""
        rows: list[list[tuple[Any, ...]]] = []
        now = now_ms()
        for identity, faces in batches:
            check_identity(identity)
            rows.append(
                [
                    (
                        identity,
                        embedding_bytes(face.embedding, self._dim),
                        self._model,
                        face.image_sha256,
                        *box_columns(face.box),
                        now,
                    )
                    for face in faces
                ]
            )
        out: list[list[int]] = []
        with self._lock, self._transaction():
            for (identity, _), face_rows in zip(batches, rows, strict=True):
                if not face_rows:
                    out.append([])
                    continue
                self._db.execute(
                    "INSERT OR IGNORE INTO identities(name, created_at_ms, skeleton) VALUES (?, ?, ?)",
                    (identity, now, skeleton(identity)),
                )
                ids = []
                for r in face_rows:
                    cur = self._db.execute(
                        "INSERT INTO faces(identity, embedding, model, image_sha256, box_x, box_y, box_w, box_h,"
                        " created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        r,
                    )
                    ids.append(int(cur.lastrowid or 0))  # always set after an INSERT
                out.append(ids)
            for (_, faces), ids in zip(batches, out, strict=True):
                PICTURES.write(
                    self._db,
                    new_pictures(ids, [f.picture for f in faces]),
                    dict(zip(ids, [f.source_picture for f in faces], strict=True)),
                )
            if any(out):
                self._log_change(ADD, [i for ids in out for i in ids])
        return out

    def import_faces(self, identities: Sequence[IdentityRow], faces: Sequence[FaceRow]) -> None:
        """Copies identities and faces from another store as they are (ids, pictures' sha256, boxes,
        times) in one transaction: `facerec migrate`. The ids must be new here."""
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO identities(name, created_at_ms, skeleton) VALUES (?, ?, ?)",
                [(row.identity, row.created_at_ms, skeleton(row.identity)) for row in identities],
            )
            self._db.executemany(
                "INSERT INTO faces(face_id, identity, embedding, model, image_sha256, box_x, box_y, box_w, box_h,"
                " created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f.face_id,
                        f.identity,
                        embedding_bytes(f.embedding, self._dim),
                        self._model,
                        f.image_sha256,
                        *box_columns(f.box),
                        f.created_at_ms,
                    )
                    for f in faces
                ],
            )
            self._log_change(ADD, [f.face_id for f in faces])

    def find_face_by_image(self, identity: str, image_sha256: str) -> int | None:
        """The id of this identity's face enrolled from the picture with this sha256, if any."""
        if not image_sha256:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT face_id FROM faces WHERE identity = ? AND image_sha256 = ? ORDER BY face_id LIMIT 1",
                (identity, image_sha256),
            ).fetchone()
        return None if row is None else int(row[0])

    def other_identity_with_image(self, identity: str, image_sha256: str) -> str | None:
        """Another identity with a face enrolled from the picture with this sha256, if any."""
        if not image_sha256:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT identity FROM faces WHERE image_sha256 = ? AND identity <> ? ORDER BY face_id LIMIT 1",
                (image_sha256, identity),
            ).fetchone()
        return None if row is None else str(row[0])

    def confusable_identity(self, identity: str) -> str | None:
        """An enrolled identity other than this one that looks like it (the same TR39 skeleton), if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT name FROM identities WHERE skeleton = ? AND name <> ? ORDER BY name LIMIT 1",
                (skeleton(identity), identity),
            ).fetchone()
        return None if row is None else str(row[0])

    def remove_identity(self, identity: str) -> list[int]:
        """Remove an identity and all its faces; returns the removed face ids. NotFound if unknown."""
        with self._lock, self._transaction():
            if self._db.execute("SELECT 1 FROM identities WHERE name = ?", (identity,)).fetchone() is None:
                raise NotFound(f"No identity {identity!r} in the gallery.")
            ids = [
                int(r[0])
                for r in self._db.execute(
                    "SELECT face_id FROM faces WHERE identity = ? ORDER BY face_id", (identity,)
                )
            ]
            self._db.execute("DELETE FROM faces WHERE identity = ?", (identity,))
            self._db.execute("DELETE FROM identities WHERE name = ?", (identity,))
            self._log_change(REMOVE, ids)
        self._erase_removed(identity)
        return ids

    def remove_face(self, face_id: int) -> str:
        """Remove one face; returns its identity (removed too if left with no faces). NotFound if unknown."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT identity FROM faces WHERE face_id = ?", (int(face_id),)).fetchone()
            if row is None:
                raise NotFound(f"No face {int(face_id)} in the gallery.")
            identity = str(row[0])
            self._db.execute("DELETE FROM faces WHERE face_id = ?", (int(face_id),))
            left = self._db.execute("SELECT 1 FROM faces WHERE identity = ? LIMIT 1", (identity,)).fetchone()
            if left is None:
                self._db.execute("DELETE FROM identities WHERE name = ?", (identity,))
            self._log_change(REMOVE, [int(face_id)])
        self._erase_removed("" if left else identity)
        return identity

    def _erase_removed(self, identity: str) -> None:
        """After a committed removal (of `identity` too, unless ""): the WAL's frames hold the old pages
        until a checkpoint copies the zeroed ones over them and TRUNCATE empties it; a kept SVM naming
        the identity goes (the next fit writes one without it)."""
        with self._lock:
            self._removed_at = int(self._meta("version") or 0)
            if not empty_wal(self._db):
                log.warning(
                    "the WAL of %s could not be emptied after a removal (a reader held it)", self._path
                )
            if identity and self._classifier.names(identity):
                self._classifier.discard()

    def get_identity(
        self, identity: str, after: int = 0, limit: int | None = None
    ) -> tuple[IdentityRow, list[FaceRow]]:
        """An identity (with its whole face count) and its faces with face_id > after in face_id order, at
        most limit (None: all). NotFound if unknown."""
        with self._lock:
            row = self._db.execute(
                "SELECT created_at_ms, (SELECT COUNT(*) FROM faces WHERE identity = ?)"
                " FROM identities WHERE name = ?",
                (identity, identity),
            ).fetchone()
            if row is None:
                raise NotFound(f"No identity {identity!r} in the gallery.")
            faces = [
                face_row(r)
                for r in self._db.execute(
                    "SELECT face_id, identity, embedding, model, image_sha256, box_x, box_y, box_w, box_h,"
                    " created_at_ms, EXISTS (SELECT 1 FROM pictures p WHERE p.face_id = faces.face_id)"
                    " FROM faces WHERE identity = ? AND face_id > ? ORDER BY face_id LIMIT ?",
                    (identity, after, -1 if limit is None else limit),
                )
            ]
        return IdentityRow(identity, int(row[1]), int(row[0])), faces

    def has_identity(self, identity: str) -> bool:
        with self._lock:
            return (
                self._db.execute("SELECT 1 FROM identities WHERE name = ?", (identity,)).fetchone()
                is not None
            )

    def list_identities(self, after: str = "", limit: int = 100) -> list[IdentityRow]:
        """Identities in name order with names > after, at most limit (a page; pass the last name to go on)."""
        if limit <= 0:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT i.name, i.created_at_ms,"
                " (SELECT COUNT(*) FROM faces f WHERE f.identity = i.name)"
                " FROM identities i WHERE i.name > ? ORDER BY i.name LIMIT ?",
                (after, int(limit)),
            ).fetchall()
        return [IdentityRow(name, int(count), int(created)) for name, created, count in rows]

    def embeddings(self) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
        """Everything, in face_id order: ids (n,) int64, vectors (n, dim) float32, identities (n)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT face_id, identity, embedding FROM faces ORDER BY face_id"
            ).fetchall()
        return unpack(rows, self._dim)

    def embeddings_of(self, identity: str) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """One identity's faces: ids (n,) int64, vectors (n, dim) float32 (n = 0 when unknown)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT face_id, identity, embedding FROM faces WHERE identity = ? ORDER BY face_id",
                (identity,),
            ).fetchall()
        ids, vectors, _ = unpack(rows, self._dim)
        return ids, vectors

    def face_ids(self) -> NDArray[np.int64]:
        """Every face id, ascending."""
        with self._lock:
            rows = self._db.execute("SELECT face_id FROM faces ORDER BY face_id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def faces_by_id(
        self, face_ids: Sequence[int]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
        """The faces among these ids that still exist, in face_id order (as embeddings())."""
        wanted = sorted({int(i) for i in face_ids})
        rows: list[tuple[Any, ...]] = []
        with self._lock:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows += self._db.execute(
                    f"SELECT face_id, identity, embedding FROM faces WHERE face_id IN ({marks})", chunk
                ).fetchall()
        rows.sort(key=lambda r: r[0])
        return unpack(rows, self._dim)

    def identities_of(self, face_ids: Sequence[int]) -> dict[int, str]:
        """face id -> identity for the ids that exist (unknown ids are left out)."""
        wanted = sorted({int(i) for i in face_ids if int(i) >= 0})
        out: dict[int, str] = {}
        with self._lock:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                # Only "?" marks are interpolated; the values travel as parameters.
                for face_id, identity in self._db.execute(
                    f"SELECT face_id, identity FROM faces WHERE face_id IN ({marks})", chunk
                ):
                    out[int(face_id)] = identity
        return out

    def counts(self) -> tuple[int, int]:
        """(identities, faces)."""
        with self._lock:
            (identities,) = self._db.execute("SELECT COUNT(*) FROM identities").fetchone()
            (faces,) = self._db.execute("SELECT COUNT(*) FROM faces").fetchone()
        return int(identities), int(faces)

    def version(self) -> int:
        """A persisted counter bumped by every change: equal versions mean equal contents."""
        with self._lock:
            return int(self._meta("version") or 0)

    def state(self) -> StoreState:
        """Version, counts and the kept classifier's version (gallery.rows.StoreState)."""
        with self._lock:
            version = int(self._meta("version") or 0)
            (identities,) = self._db.execute("SELECT COUNT(*) FROM identities").fetchone()
            (faces,) = self._db.execute("SELECT COUNT(*) FROM faces").fetchone()
        return StoreState(version, int(identities), int(faces), self.classifier_version())

    def integrity_check(self) -> bool:
        """True when SQLite's PRAGMA integrity_check says ok."""
        with self._lock:
            rows = self._db.execute("PRAGMA integrity_check").fetchall()
        ok = rows == [("ok",)]
        if not ok:
            log.error("integrity_check of %s failed: %s", self._path, rows[:10])
        return ok

    # -- the fitted classifier, kept beside the store so a restart serves it without a refit ---------

    def save_classifier(self, arrays: dict[str, NDArray[Any]], store_version: int) -> None:
        """Keeps a fitted classifier (fsynced, replaced atomically); a failure to write is logged, not raised."""
        # Under the store's lock: a fit made before a removal is never written after it (it would name
        # the removed identity).
        with self._lock:
            if store_version >= self._removed_at:
                self._classifier.save(arrays, store_version)

    def load_classifier(self) -> tuple[int, dict[str, NDArray[Any]]] | None:
        """The kept classifier: (store version it was fit at, arrays), or None when none is readable."""
        return self._classifier.load()

    def classifier_version(self) -> int:
        """The store version the kept classifier was fit at; -1 when none is readable."""
        return self._classifier.version()

    # -- the change log ---------------------------------------------------------------------------

    def changes_since(self, version: int, limit: int = 10_000) -> list[Change]:
        """Committed changes with versions > version, ascending (at most limit)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT version, op, face_ids FROM changes WHERE version > ? ORDER BY version LIMIT ?",
                (int(version), int(limit)),
            ).fetchall()
        return [Change(int(v), op, [int(i) for i in json.loads(ids)]) for v, op, ids in rows]

    def wait_for_change(self, timeout_s: float) -> bool:
        """Blocks until this store commits a change or timeout_s passes; True when one was committed."""
        with self._changed:
            return self._changed.wait(timeout_s)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

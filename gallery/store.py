"""The gallery's durable store: identities and their faces in one SQLite file (WAL), the source of truth."""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from facerec.errors import InvalidInput, NotFound, Overloaded, Precondition
from gallery.validation import skeleton

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# SQLite's default limit on host parameters is 32766 (3.32+); stay well below it for IN (...) lists.
_IN_CHUNK = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (
    name TEXT PRIMARY KEY,
    created_at_ms INTEGER NOT NULL,
    skeleton TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS faces (
    face_id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL REFERENCES identities(name),
    embedding BLOB NOT NULL,
    model TEXT NOT NULL,
    image_sha256 TEXT NOT NULL DEFAULT '',
    box_x REAL, box_y REAL, box_w REAL, box_h REAL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_by_identity ON faces(identity, image_sha256);
CREATE INDEX IF NOT EXISTS faces_by_image ON faces(image_sha256);
"""


@dataclass(frozen=True)
class NewFace:
    """A face to enroll. embedding: (dim,) float32 unit vector; box: x, y, w, h in pixels of the source image."""

    embedding: NDArray[np.float32]
    image_sha256: str = ""
    box: tuple[float, float, float, float] | None = None


class DuplicatePicture(Exception):
    """add_faces refused a picture already enrolled for the identity (by another writer since the caller's
    check: a shared store's constraint). Nothing of the call was stored; check again and retry."""


@dataclass(frozen=True)
class FaceRow:
    """A stored face. embedding: (dim,) float32, bit-exact as enrolled."""

    face_id: int
    identity: str
    embedding: NDArray[np.float32]
    model: str
    image_sha256: str
    box: tuple[float, float, float, float] | None
    created_at_ms: int


@dataclass(frozen=True)
class IdentityRow:
    identity: str
    face_count: int
    created_at_ms: int


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def embedding_bytes(embedding: NDArray[np.float32], dim: int) -> bytes:
    """The stored form of an embedding: dim little-endian float32s. InvalidInput for a wrong shape or NaN."""
    vec = np.asarray(embedding)
    if vec.shape != (dim,):
        raise InvalidInput(f"An embedding must have {dim} values, not shape {vec.shape}.")
    if not np.issubdtype(vec.dtype, np.floating):
        raise InvalidInput("An embedding must hold floating-point values.")
    vec = vec.astype("<f4", copy=False)
    if not np.all(np.isfinite(vec)):
        raise InvalidInput("An embedding holds NaN or infinite values.")
    return vec.tobytes()


def classifier_bytes(arrays: dict[str, NDArray[Any]], store_version: int) -> bytes:
    """A fitted classifier's arrays and the store version it was fit at, as one .npz (no pickles)."""
    out = io.BytesIO()
    named: dict[str, Any] = {"store_version": np.int64(store_version), **arrays}
    np.savez(out, **named)
    return out.getvalue()


def classifier_from_bytes(data: bytes) -> tuple[int, dict[str, NDArray[Any]]]:
    """classifier_bytes read back: (store version, arrays). ValueError/KeyError when unreadable."""
    with np.load(io.BytesIO(data), allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    return int(arrays.pop("store_version")), arrays


class Store:
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
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, so an acknowledged enroll survives power loss,
            # not only a process crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            # A removal is for good: deleted rows are overwritten with zeros, not left in free space.
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            self._add_skeletons()
            with self._transaction():
                self._db.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('version', '0')")
                held = self._meta("model")
                if held is None:
                    self._set_meta("model", model)
                    self._set_meta("dim", str(dim))
                elif held != model:
                    (faces,) = self._db.execute("SELECT COUNT(*) FROM faces").fetchone()
                    if faces:
                        raise Precondition(
                            f"The gallery holds embeddings of model {held!r}, not {model!r}; "
                            "use a new gallery file or re-enroll."
                        )
                    # An empty gallery adopts the new model.
                    self._set_meta("model", model)
                    self._set_meta("dim", str(dim))
                    self._bump()
                held_dim = int(self._meta("dim") or dim)
                if held_dim != dim:
                    raise Precondition(f"The gallery holds {held_dim}-d embeddings, not {dim}-d.")
        except BaseException:
            self._db.close()
            raise
        self._model = model

    # -- plumbing ---------------------------------------------------------------------------------

    def _add_skeletons(self) -> None:
        """Gives a store made before names had skeletons (TR39, for the look-alike check) their column."""
        with self._transaction():
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(identities)")}
            if "skeleton" not in columns:
                self._db.execute("ALTER TABLE identities ADD COLUMN skeleton TEXT NOT NULL DEFAULT ''")
                names = [row[0] for row in self._db.execute("SELECT name FROM identities")]
                self._db.executemany(
                    "UPDATE identities SET skeleton = ? WHERE name = ?", [(skeleton(n), n) for n in names]
                )
            self._db.execute("CREATE INDEX IF NOT EXISTS identities_by_skeleton ON identities(skeleton)")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction. The caller holds self._lock (or is the constructor)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
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

    def _bump(self) -> None:
        self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")

    def _blob(self, embedding: NDArray[np.float32]) -> bytes:
        return embedding_bytes(embedding, self._dim)

    def _vector(self, blob: bytes) -> NDArray[np.float32]:
        return np.frombuffer(blob, dtype="<f4").astype(np.float32)

    def _face_row(self, row: tuple[Any, ...]) -> FaceRow:
        face_id, identity, blob, model, sha, bx, by, bw, bh, created = row
        box = None if bx is None else (float(bx), float(by), float(bw), float(bh))
        return FaceRow(int(face_id), identity, self._vector(blob), model, sha, box, int(created))

    @staticmethod
    def _check_identity(identity: str) -> None:
        if not identity:
            raise InvalidInput("The identity must not be empty.")

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
    def location(self) -> str:
        """Where the store lives, safe to log."""
        return str(self._path)

    # One process owns a SQLite store: there are no other writers whose changes to follow.
    shared = False

    def add_faces(self, identity: str, faces: Sequence[NewFace]) -> list[int]:
        """Store faces for an identity (created if new) in one transaction, durably committed on return.

        Returns the new face ids, in order; ids are never reused (they are also the index's ids).
        """
        return self.add_many([(identity, faces)])[0]

    def add_many(self, batches: Sequence[tuple[str, Sequence[NewFace]]]) -> list[list[int]]:
        """add_faces for several identities in ONE transaction (bulk enroll, one fsync). Returns ids per batch."""
        rows: list[list[tuple[Any, ...]]] = []
        now = _now_ms()
        for identity, faces in batches:
            self._check_identity(identity)
            rows.append(
                [
                    (
                        identity,
                        self._blob(face.embedding),
                        self._model,
                        face.image_sha256,
                        *(face.box if face.box is not None else (None, None, None, None)),
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
            if any(out):
                self._bump()
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
                        self._blob(f.embedding),
                        self._model,
                        f.image_sha256,
                        *(f.box if f.box is not None else (None, None, None, None)),
                        f.created_at_ms,
                    )
                    for f in faces
                ],
            )
            self._bump()

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
            self._bump()
        self._erase_removed()
        return ids

    def remove_face(self, face_id: int) -> str:
        """Remove one face; returns its identity (removed too if left with no faces). NotFound if unknown."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT identity FROM faces WHERE face_id = ?", (int(face_id),)).fetchone()
            if row is None:
                raise NotFound(f"No face {int(face_id)} in the gallery.")
            identity = str(row[0])
            self._db.execute("DELETE FROM faces WHERE face_id = ?", (int(face_id),))
            if (
                self._db.execute("SELECT 1 FROM faces WHERE identity = ? LIMIT 1", (identity,)).fetchone()
                is None
            ):
                self._db.execute("DELETE FROM identities WHERE name = ?", (identity,))
            self._bump()
        self._erase_removed()
        return identity

    def _erase_removed(self) -> None:
        """After a committed removal: the WAL's frames still hold the old pages (the name, the picture's
        hash, the embedding) until a checkpoint copies the zeroed pages over them and TRUNCATE empties
        the file; the kept SVM names the removed identity until the next fit saves a new one."""
        with self._lock:
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                log.warning(
                    "the WAL of %s could not be emptied after a removal (a reader held it)", self._path
                )
            self.classifier_path.unlink(missing_ok=True)

    def get_identity(self, identity: str) -> tuple[IdentityRow, list[FaceRow]]:
        """An identity and its faces in face_id order. NotFound if unknown."""
        with self._lock:
            row = self._db.execute(
                "SELECT created_at_ms FROM identities WHERE name = ?", (identity,)
            ).fetchone()
            if row is None:
                raise NotFound(f"No identity {identity!r} in the gallery.")
            faces = [
                self._face_row(r)
                for r in self._db.execute(
                    "SELECT face_id, identity, embedding, model, image_sha256, box_x, box_y, box_w, box_h,"
                    " created_at_ms FROM faces WHERE identity = ? ORDER BY face_id",
                    (identity,),
                )
            ]
        return IdentityRow(identity, len(faces), int(row[0])), faces

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
        return self._unpack(rows)

    def embeddings_of(self, identity: str) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """One identity's faces: ids (n,) int64, vectors (n, dim) float32 (n = 0 when unknown)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT face_id, identity, embedding FROM faces WHERE identity = ? ORDER BY face_id",
                (identity,),
            ).fetchall()
        ids, vectors, _ = self._unpack(rows)
        return ids, vectors

    def _unpack(
        self, rows: list[tuple[Any, ...]]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").astype(np.float32)
        return ids, vectors.reshape(len(rows), self._dim), [r[1] for r in rows]

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
        return self._unpack(rows)

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

    def integrity_check(self) -> bool:
        """True when SQLite's PRAGMA integrity_check says ok."""
        with self._lock:
            rows = self._db.execute("PRAGMA integrity_check").fetchall()
        ok = rows == [("ok",)]
        if not ok:
            log.error("integrity_check of %s failed: %s", self._path, rows[:10])
        return ok

    # -- the fitted classifier, kept beside the store so a restart serves it without a refit ---------

    @property
    def classifier_path(self) -> Path:
        return self._path.with_name(self._path.name + ".svm.npz")

    def save_classifier(self, arrays: dict[str, NDArray[Any]], store_version: int) -> None:
        """Keeps a fitted classifier (fsynced, replaced atomically); a failure to write is logged, not raised."""
        path = self.classifier_path
        # Under the store's lock, so a fit made before a removal is never written after it (it would
        # name the removed identity); a fit of an older version is of no use to a restart anyway.
        with self._lock:
            if store_version != int(self._meta("version") or 0):
                return
            try:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".svm-", suffix=".npz")
                with os.fdopen(fd, "wb") as f:
                    f.write(classifier_bytes(arrays, store_version))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("could not save the SVM to %s: %s", path, exc)

    def load_classifier(self) -> tuple[int, dict[str, NDArray[Any]]] | None:
        """The kept classifier: (store version it was fit at, arrays), or None when none is readable."""
        path = self.classifier_path
        if not path.is_file():
            return None
        try:
            return classifier_from_bytes(path.read_bytes())
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring the unreadable saved SVM %s: %s", path, exc)
            return None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

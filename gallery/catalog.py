"""The deployment's collections and long-running operations (gallery.ports.Catalog): the logic shared by
both engines, and the SQLite catalog, kept in the gallery's own SQLite file on a connection of its own.
gallery/catalog_postgres.py is the PostgreSQL one. Pure: no grpc.

Tables: `collections` (one row per collection; ids from AUTOINCREMENT, so never reused), `operations` (a
re-embed's progress, enough to resume it elsewhere) and `catalog_state` (one row: the version every
change bumps, which also serialises writers). On first open the catalog holds `default`: id 1, generation
1 (the gallery's own store, so an existing gallery is the default collection untouched), the deployment's
contract, its model's shipped points.

Every write is one transaction that first bumps the version, so a claim, a switch, a delete are atomic
against other replicas: claim_operation's UPDATE names the owner and heartbeat it read, so of two
claimers exactly one updates the row.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from facerec.errors import AlreadyExists, NotFound, Precondition
from gallery.ports import (
    DEFAULT_COLLECTION,
    REEMBED,
    CollectionRow,
    Contract,
    FailedFace,
    OperationRow,
)
from gallery.rows import now_ms

T = TypeVar("T")
# Runs one statement in the current transaction: sql with ? placeholders, its parameters; the rows.
Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

CATALOG_VERSION = 1  # the shape of the tables below; a newer catalog is refused
DEFAULT_ID = 1
FIRST_GENERATION = 1

COLLECTION_COLUMNS = (
    "collection_id, name, detector, alignment, model, generation, points, keep_source_pictures,"
    " created_at_ms, operation"
)
OPERATION_COLUMNS = (
    "operation_id, collection, kind, source, target, drop_failed, generation, stage, faces_total,"
    " faces_done, failed, source_version, switched, done, error, error_reason, owner, heartbeat_ms,"
    " created_at_ms, updated_at_ms"
)


def collection_row(r: Sequence[Any]) -> CollectionRow:
    return CollectionRow(
        collection_id=int(r[0]),
        name=str(r[1]),
        contract=Contract(str(r[2]), str(r[3]), str(r[4])),
        generation=int(r[5]),
        points=str(r[6]),
        keep_source_pictures=bool(r[7]),
        created_at_ms=int(r[8]),
        operation=str(r[9]),
    )


def _contract_json(c: Contract) -> str:
    return json.dumps({"detector": c.detector, "alignment": c.alignment, "model": c.model})


def _contract_of(text: str) -> Contract:
    d = json.loads(text)
    return Contract(str(d["detector"]), str(d["alignment"]), str(d["model"]))


def operation_row(r: Sequence[Any]) -> OperationRow:
    failed = tuple(FailedFace(int(f[0]), str(f[1]), str(f[2])) for f in json.loads(r[10]))
    return OperationRow(
        operation_id=str(r[0]),
        collection=str(r[1]),
        kind=str(r[2]),
        source=_contract_of(r[3]),
        target=_contract_of(r[4]),
        drop_failed=bool(r[5]),
        generation=int(r[6]),
        stage=str(r[7]),
        faces_total=int(r[8]),
        faces_done=int(r[9]),
        failed=failed,
        source_version=int(r[11]),
        switched=bool(r[12]),
        done=bool(r[13]),
        error=str(r[14]),
        error_reason=str(r[15]),
        owner=str(r[16]),
        heartbeat_ms=int(r[17]),
        created_at_ms=int(r[18]),
        updated_at_ms=int(r[19]),
    )


class CatalogLogic:
    """gallery.ports.Catalog over any engine that runs a transaction of `?`-placeholder statements:
    the subclass gives _write (a transaction that bumps the version first) and _read."""

    def _write(self, work: Callable[[Query], T]) -> T:
        raise NotImplementedError

    def _read(self, work: Callable[[Query], T]) -> T:
        raise NotImplementedError

    def _seed(self, q: Query, default: Contract) -> None:
        """The default collection, when the catalog has none yet (the first open)."""
        if not q("SELECT 1 FROM collections WHERE collection_id = ?", (DEFAULT_ID,)):
            q(
                f"INSERT INTO collections ({COLLECTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, '', 0, ?, '')",
                (DEFAULT_ID, DEFAULT_COLLECTION, *_contract_tuple(default), FIRST_GENERATION, now_ms()),
            )

    # -- reads --

    def version(self) -> int:
        return self._read(lambda q: int(q("SELECT version FROM catalog_state", ())[0][0]))

    def collections(self) -> list[CollectionRow]:
        rows = self._read(lambda q: q(f"SELECT {COLLECTION_COLUMNS} FROM collections ORDER BY name", ()))
        return [collection_row(r) for r in rows]

    def get(self, name: str) -> CollectionRow:
        return self._read(lambda q: _collection(q, name))

    def operation(self, operation_id: str) -> OperationRow:
        return self._read(lambda q: _operation(q, operation_id))

    # -- collections --

    def create(self, name: str, contract: Contract, keep_source_pictures: bool) -> CollectionRow:
        def work(q: Query) -> CollectionRow:
            if q("SELECT 1 FROM collections WHERE name = ?", (name,)):
                raise AlreadyExists(f"There is already a collection named {name!r}.")
            q(
                "INSERT INTO collections (name, detector, alignment, model, generation, points,"
                " keep_source_pictures, created_at_ms, operation) VALUES (?, ?, ?, ?, ?, '', ?, ?, '')",
                (name, *_contract_tuple(contract), FIRST_GENERATION, int(keep_source_pictures), now_ms()),
            )
            return _collection(q, name)

        return self._write(work)

    def delete(self, name: str) -> CollectionRow:
        def work(q: Query) -> CollectionRow:
            row = _collection(q, name)
            if row.collection_id == DEFAULT_ID:
                raise Precondition("The default collection cannot be deleted.")
            if row.operation:
                raise Precondition(
                    f"Collection {name!r} is being re-embedded (operations/{row.operation}); "
                    "delete it once that ends."
                )
            q("DELETE FROM collections WHERE collection_id = ?", (row.collection_id,))
            return row

        return self._write(work)

    def set_points(self, name: str, points: str) -> CollectionRow:
        def work(q: Query) -> CollectionRow:
            _collection(q, name)
            q("UPDATE collections SET points = ? WHERE name = ?", (points, name))
            return _collection(q, name)

        return self._write(work)

    # -- operations --

    def start_operation(self, name: str, target: Contract, drop_failed: bool) -> OperationRow:
        def work(q: Query) -> OperationRow:
            row = _collection(q, name)
            if row.operation:
                raise Precondition(
                    f"Collection {name!r} is already being re-embedded (operations/{row.operation})."
                )
            op_id = secrets.token_hex(8)
            at = now_ms()
            q(
                f"INSERT INTO operations ({OPERATION_COLUMNS}) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, 'queued', 0, 0, '[]', 0, 0, 0, '', '', '', 0, ?, ?)",
                (
                    op_id,
                    name,
                    REEMBED,
                    _contract_json(row.contract),
                    _contract_json(target),
                    int(drop_failed),
                    row.generation + 1,
                    at,
                    at,
                ),
            )
            q("UPDATE collections SET operation = ? WHERE collection_id = ?", (op_id, row.collection_id))
            return _operation(q, op_id)

        return self._write(work)

    def claim_operation(self, owner: str, stale_after_ms: int) -> OperationRow | None:
        def work(q: Query) -> OperationRow | None:
            at = now_ms()
            candidates = q(
                "SELECT operation_id, owner, heartbeat_ms FROM operations WHERE done = 0"
                " AND (owner = '' OR heartbeat_ms < ?) ORDER BY created_at_ms, operation_id",
                (at - stale_after_ms,),
            )
            for op_id, held_by, heartbeat in candidates:
                # Guarded by what was read: a claimer that read the same row and committed first has
                # changed owner and heartbeat, so this UPDATE matches nothing.
                if q(
                    "UPDATE operations SET owner = ?, heartbeat_ms = ?, updated_at_ms = ?"
                    " WHERE operation_id = ? AND owner = ? AND heartbeat_ms = ? AND done = 0"
                    " RETURNING operation_id",
                    (owner, at, at, op_id, held_by, heartbeat),
                ):
                    return _operation(q, str(op_id))
            return None

        return self._write(work)

    def update_operation(self, op: OperationRow) -> OperationRow:
        def work(q: Query) -> OperationRow:
            current = _operation(q, op.operation_id)
            if current.owner != op.owner or current.done:
                raise Precondition(
                    f"Operation {op.operation_id} is run by {current.owner or 'nobody'} now, not {op.owner}."
                )
            at = now_ms()
            failed = json.dumps([[f.face_id, f.identity, f.reason] for f in op.failed])
            q(
                "UPDATE operations SET stage = ?, faces_total = ?, faces_done = ?, failed = ?,"
                " source_version = ?, heartbeat_ms = ?, updated_at_ms = ? WHERE operation_id = ?",
                (op.stage, op.faces_total, op.faces_done, failed, op.source_version, at, at, op.operation_id),
            )
            return _operation(q, op.operation_id)

        return self._write(work)

    def switch(self, operation_id: str) -> CollectionRow:
        def work(q: Query) -> CollectionRow:
            op = _operation(q, operation_id)
            if op.switched:
                return _collection(q, op.collection)
            if op.done:
                raise Precondition(f"Operation {operation_id} has ended; it cannot switch its collection.")
            # The target's calibrated points are not the old model's: back to its model's shipped ones.
            q(
                "UPDATE collections SET detector = ?, alignment = ?, model = ?, generation = ?, points = ''"
                " WHERE name = ? AND operation = ?",
                (*_contract_tuple(op.target), op.generation, op.collection, operation_id),
            )
            q(
                "UPDATE operations SET switched = 1, updated_at_ms = ? WHERE operation_id = ?",
                (now_ms(), operation_id),
            )
            return _collection(q, op.collection)

        return self._write(work)

    def finish_operation(self, operation_id: str, error: str = "", error_reason: str = "") -> OperationRow:
        def work(q: Query) -> OperationRow:
            _operation(q, operation_id)
            q(
                "UPDATE operations SET done = 1, stage = ?, error = ?, error_reason = ?, updated_at_ms = ?"
                " WHERE operation_id = ?",
                ("done", error, error_reason, now_ms(), operation_id),
            )
            q("UPDATE collections SET operation = '' WHERE operation = ?", (operation_id,))
            return _operation(q, operation_id)

        return self._write(work)


def _contract_tuple(c: Contract) -> tuple[str, str, str]:
    return (c.detector, c.alignment, c.model)


def _collection(q: Query, name: str) -> CollectionRow:
    rows = q(f"SELECT {COLLECTION_COLUMNS} FROM collections WHERE name = ?", (name,))
    if not rows:
        raise NotFound(f"There is no collection named {name!r}.")
    return collection_row(rows[0])


def _operation(q: Query, operation_id: str) -> OperationRow:
    rows = q(f"SELECT {OPERATION_COLUMNS} FROM operations WHERE operation_id = ?", (operation_id,))
    if not rows:
        raise NotFound(f"There is no operation named operations/{operation_id}.")
    return operation_row(rows[0])


_SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS catalog_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    catalog_version INTEGER NOT NULL
);
INSERT OR IGNORE INTO catalog_state VALUES (1, 0, {CATALOG_VERSION});
CREATE TABLE IF NOT EXISTS collections (
    collection_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE CHECK (name <> ''),
    detector TEXT NOT NULL,
    alignment TEXT NOT NULL,
    model TEXT NOT NULL,
    generation INTEGER NOT NULL,
    points TEXT NOT NULL DEFAULT '',
    keep_source_pictures INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    operation TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS operations (
    operation_id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    drop_failed INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    stage TEXT NOT NULL,
    faces_total INTEGER NOT NULL,
    faces_done INTEGER NOT NULL,
    failed TEXT NOT NULL,
    source_version INTEGER NOT NULL,
    switched INTEGER NOT NULL,
    done INTEGER NOT NULL,
    error TEXT NOT NULL,
    error_reason TEXT NOT NULL,
    owner TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
"""


class SqliteCatalog(CatalogLogic):
    """The catalog in the gallery's SQLite file (its own connection; one process owns the file, so its
    own commits wake wait_for_change, and the version is polled for anything else). Thread-safe."""

    POLL_S = 0.5  # wait_for_change also reads the version this often: another connection may have written

    def __init__(self, path: str | Path, default: Contract) -> None:
        self._path = Path(path).expanduser()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._db = sqlite3.connect(
            str(self._path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript("BEGIN IMMEDIATE;" + _SQLITE_SCHEMA + "COMMIT;")
            (held,) = self._db.execute("SELECT catalog_version FROM catalog_state").fetchone()
            if int(held) > CATALOG_VERSION:
                raise Precondition(
                    f"The gallery's collections catalog has version {held}, newer than this gallery's "
                    f"{CATALOG_VERSION}; run a newer gallery."
                )
            self._write(lambda q: self._seed(q, default))
        except BaseException:
            self._db.close()
            raise

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Query]:
        def q(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            return self._db.execute(sql, tuple(params)).fetchall()

        with self._lock:
            self._db.execute(begin)
            try:
                yield q
                self._db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise

    def _write(self, work: Callable[[Query], T]) -> T:
        with self._transaction("BEGIN IMMEDIATE") as q:
            q("UPDATE catalog_state SET version = version + 1", ())
            result = work(q)
        with self._changed:
            self._changed.notify_all()
        return result

    def _read(self, work: Callable[[Query], T]) -> T:
        with self._transaction("BEGIN") as q:
            return work(q)

    def wait_for_change(self, timeout_s: float) -> bool:
        start = self.version()
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            with self._changed:
                self._changed.wait(min(left, self.POLL_S))
            if self.version() != start:
                return True
        return False

    def close(self) -> None:
        with self._lock:
            self._db.close()

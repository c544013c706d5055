"""The SQLite store's connection settings and schema: the tables a new file gets, and the steps that
bring a file made by an older gallery level with them, run when the store opens (one process owns a
SQLite store); and emptying the WAL after a removal. Pure."""

from __future__ import annotations

import sqlite3
from contextlib import suppress

from gallery.validation import skeleton

SCHEMA_VERSION = 1

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
CREATE TABLE IF NOT EXISTS changes (
    version INTEGER PRIMARY KEY,
    op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
    face_ids TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
"""


def configure(db: sqlite3.Connection) -> None:
    """The connection's settings, before anything else."""
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so an acknowledged enroll survives power loss,
    # not only a process crash.
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    # A removal is for good: deleted rows are overwritten with zeros, not left in free space.
    db.execute("PRAGMA secure_delete=ON")


def create(db: sqlite3.Connection) -> None:
    """Creates what a new file lacks and upgrades an older one, each in its own transaction. db is in
    autocommit mode (isolation_level=None)."""
    db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
    db.execute("BEGIN IMMEDIATE")
    try:
        _add_skeletons(db)
        db.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def _add_skeletons(db: sqlite3.Connection) -> None:
    """Gives a store made before names had skeletons (TR39, for the look-alike check) their column."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(identities)")}
    if "skeleton" not in columns:
        db.execute("ALTER TABLE identities ADD COLUMN skeleton TEXT NOT NULL DEFAULT ''")
        names = [row[0] for row in db.execute("SELECT name FROM identities")]
        db.executemany("UPDATE identities SET skeleton = ? WHERE name = ?", [(skeleton(n), n) for n in names])
    db.execute("CREATE INDEX IF NOT EXISTS identities_by_skeleton ON identities(skeleton)")


def empty_wal(db: sqlite3.Connection) -> bool:
    """Copies the WAL into the database and truncates it to nothing; False when a reader held it."""
    busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return not busy

"""The SQLite store's connection settings and schema: the tables a new file gets, and the steps that
bring a file made by an older gallery level with them, run when the store opens (one process owns a
SQLite store); and emptying the WAL after a removal. Pure."""

from __future__ import annotations

import sqlite3
from contextlib import suppress

from gallery.rows import ModelClaim, claim_model, new_store_id
from gallery.validation import skeleton

# 2: kept face pictures (pictures, source_pictures); a file of version 1 gains them, empty, when opened.
SCHEMA_VERSION = 2

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
-- A face's kept picture (gallery/pictures_sql.py), gone with its face (ON DELETE CASCADE, and
-- secure_delete overwrites its bytes).
CREATE TABLE IF NOT EXISTS pictures (
    face_id INTEGER PRIMARY KEY REFERENCES faces(face_id) ON DELETE CASCADE,
    data BLOB NOT NULL,
    media_type TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    box_x REAL NOT NULL, box_y REAL NOT NULL, box_w REAL NOT NULL, box_h REAL NOT NULL,
    landmarks TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS source_pictures (
    face_id INTEGER PRIMARY KEY REFERENCES faces(face_id) ON DELETE CASCADE,
    data BLOB NOT NULL
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
        # The tables above were created where missing; the file now has this version's schema.
        db.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value"
            " WHERE CAST(meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
            (str(SCHEMA_VERSION),),
        )
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


def claim_store(db: sqlite3.Connection, model: str, dim: int) -> str:
    """Claims the file for this model (gallery.rows.claim_model; Precondition when it holds faces of
    another) and returns the store's id, drawn when the store is created. The caller holds a transaction."""
    db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('version', '0')")
    # Drawn when the store is created (or first opened by a gallery that keeps one).
    db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('store_id', ?)", (new_store_id(),))
    held = dict(
        db.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'model', 'dim')").fetchall()
    )
    (faces,) = db.execute("SELECT COUNT(*) FROM faces").fetchone()
    claim = claim_model(
        held.get("model"),
        int(held["dim"]) if "dim" in held else None,
        faces,
        model,
        dim,
        "a new gallery file",
    )
    if claim is not ModelClaim.KEEP:
        db.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [("model", model), ("dim", str(dim))],
        )
    if claim is ModelClaim.SWITCH:
        # Another model's (empty) store: a change, so derived files of the old model are never served.
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
    return str(held["store_id"])


def empty_store(db: sqlite3.Connection) -> None:
    """Empties a store whose file holds the catalog too (gallery.namespaces.drop_store of the home store):
    its faces (their pictures with them), identities and change log go, the catalog's tables and the
    store's meta stay, and the version moves on so a follower rebuilds to nothing. Then empties the WAL.
    db: configured (secure_delete), in autocommit mode."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("DELETE FROM faces")  # ON DELETE CASCADE: pictures and source pictures
        db.execute("DELETE FROM identities")
        db.execute("DELETE FROM changes")
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
        db.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    empty_wal(db)

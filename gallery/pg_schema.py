"""The PostgreSQL store's schema: versioned migrations, applied by the gallery itself under an advisory
lock so replicas starting together agree. Pure: no grpc."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from facerec.errors import Precondition
from gallery.rows import now_ms

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Any fixed number: the key of the advisory lock that serialises schema migrations across replicas.
_MIGRATION_LOCK = 0x66616365

_MIGRATIONS: dict[int, tuple[str, ...]] = {
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
}


def migrate(conn: psycopg.Connection[Any]) -> None:
    """Brings the database to SCHEMA_VERSION; Precondition when it is newer than this gallery."""
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
        for statement in _MIGRATIONS[version]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, now_ms()))
        log.info("PostgreSQL store migrated to schema version %s", version)

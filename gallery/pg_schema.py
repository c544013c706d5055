"""The PostgreSQL store's schema: versioned migrations, applied by the gallery itself under an advisory
lock so replicas starting together agree. Pure: no grpc."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from facerec.errors import Precondition
from gallery.rows import REMOVE, ModelClaim, claim_model, new_store_id, now_ms
from gallery.validation import skeleton

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4
# Any fixed number: the key of the advisory lock that serialises schema migrations across replicas.
_MIGRATION_LOCK = 0x66616365


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
        "INSERT INTO changes (version, op, face_ids, at_ms) VALUES (%s, %s, %s, %s)",
        (int(row[0]), REMOVE, ids, now_ms()),
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
    # Kept face pictures (gallery/pictures_sql.py), gone with their face in its transaction (ON DELETE
    # CASCADE); the store's seal (a re-embed moving the collection on), on the row every writer locks.
    # A deleted row's bytes stay in the table's pages until VACUUM reuses them (PostgreSQL has no
    # secure_delete): they are out of every query at once, and of the files once vacuumed.
    4: (
        "CREATE TABLE pictures (face_id BIGINT PRIMARY KEY REFERENCES faces(face_id) ON DELETE CASCADE,"
        " data BYTEA NOT NULL, media_type TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,"
        " box_x REAL NOT NULL, box_y REAL NOT NULL, box_w REAL NOT NULL, box_h REAL NOT NULL,"
        " landmarks TEXT NOT NULL DEFAULT '')",
        # Pictures are compressed already (WebP, JPEG): TOAST would try to compress them again in vain.
        "ALTER TABLE pictures ALTER COLUMN data SET STORAGE EXTERNAL",
        "CREATE TABLE source_pictures (face_id BIGINT PRIMARY KEY REFERENCES faces(face_id)"
        " ON DELETE CASCADE, data BYTEA NOT NULL)",
        "ALTER TABLE source_pictures ALTER COLUMN data SET STORAGE EXTERNAL",
        "ALTER TABLE state ADD COLUMN sealed BOOLEAN NOT NULL DEFAULT false",
    ),
}


def migrate(conn: psycopg.Connection[Any], schema: str = "") -> None:
    """Brings the database (the store's schema, created when missing: a collection's other than the
    default's, gallery/namespaces.py) to SCHEMA_VERSION; Precondition when it is newer than this gallery."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
    if schema:
        # Under the lock: replicas opening a new collection together do not both create it.
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
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
        conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, now_ms()))
        log.info("PostgreSQL store migrated to schema version %s", version)


def claim_store(conn: psycopg.Connection[Any], model: str, dim: int) -> str:
    """Claims the database for this model (gallery.rows.claim_model; Precondition when it holds faces of
    another) and returns the store's id, drawn when the store is created. One write transaction."""
    (_, faces) = conn.execute("SELECT version, faces FROM state FOR UPDATE").fetchone() or (0, 0)
    held = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('model', 'dim')").fetchall())
    claim = claim_model(
        held.get("model"),
        int(held["dim"]) if "dim" in held else None,
        faces,
        model,
        dim,
        "a new database",
    )
    if claim is ModelClaim.SWITCH:
        conn.execute("UPDATE state SET version = version + 1")
    # Drawn when the store is created (or first opened by a gallery that keeps one).
    conn.execute("INSERT INTO meta VALUES ('store_id', %s) ON CONFLICT (key) DO NOTHING", (new_store_id(),))
    row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    if claim is not ModelClaim.KEEP:
        for key, value in (("model", model), ("dim", str(dim))):
            conn.execute(
                "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
    return str(row[0]) if row is not None else ""


def integrity_check(conn: psycopg.Connection[Any]) -> bool:
    """True when the kept counts match the tables and no identity is left without faces."""
    kept = conn.execute("SELECT identities, faces FROM state").fetchone()
    real = conn.execute("SELECT (SELECT COUNT(*) FROM identities), (SELECT COUNT(*) FROM faces)").fetchone()
    orphans = conn.execute(
        "SELECT COUNT(*) FROM identities i WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.identity = i.name)"
    ).fetchone()
    ok = kept == real and orphans == (0,)
    if not ok:
        log.error(
            "integrity check failed: kept %s, real %s, identities without faces %s", kept, real, orphans
        )
    return ok


def drop_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Drops a collection generation's schema and everything in it (gallery.namespaces.drop_store)."""
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def empty_store(conn: psycopg.Connection[Any]) -> None:
    """Empties the default schema's store, which shares its database with the catalog (gallery.namespaces
    .drop_store of the home store): faces (their pictures with them), identities, the change log and the
    kept classifier go; the version moves on so a follower rebuilds to nothing. Nothing when no store is
    there."""
    if conn.execute("SELECT to_regclass('state')").fetchone() in (None, (None,)):
        return
    # The writers' lock first, as every change takes it.
    conn.execute("UPDATE state SET version = version + 1, identities = 0, faces = 0")
    for statement in (
        "DELETE FROM faces",
        "DELETE FROM identities",
        "DELETE FROM changes",
        "DELETE FROM classifier",
    ):
        conn.execute(statement)

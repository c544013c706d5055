"""Where each collection generation keeps its store, beside the gallery's own store `home`. Pure: no grpc.

Each generation of each collection is a store of its own (gallery/store.py, gallery/store_postgres.py),
so one collection's faces are never among another's: isolation by construction, and a re-embed builds the
next generation beside the serving one. Generation 1 of the default collection (id 1) is `home` itself,
so a gallery made before collections is the default collection as it is.

- SQLite: `<home>.collections/c<ID>-g<GEN>.sqlite`, with its own sidecars (-wal, -shm, .faiss, .svm.npz).
- PostgreSQL: the same database, in the schema `facerec_c<ID>_g<GEN>`, named to the store by the URL's
  libpq `options` (`-c search_path=...`); the store creates the schema when it is missing, and its
  change notifications go out on a channel of that schema's own.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from facerec.errors import InvalidInput
from gallery.sqlite_schema import configure
from gallery.sqlite_schema import empty_store as empty_sqlite_store
from gallery.stores import is_postgres, read_password

log = logging.getLogger(__name__)

HOME = (1, 1)  # (collection id, generation) of the gallery's own store


def _check(collection_id: int, generation: int) -> None:
    if int(collection_id) < 1 or int(generation) < 1:
        raise InvalidInput(f"No store for collection {collection_id}, generation {generation}.")


def schema_name(collection_id: int, generation: int) -> str:
    """The PostgreSQL schema of a collection generation other than the home store's."""
    _check(collection_id, generation)
    return f"facerec_c{int(collection_id)}_g{int(generation)}"


def store_location(home: str, collection_id: int, generation: int) -> str:
    """Where generation `generation` of collection `collection_id` keeps its store: (1, 1) is home."""
    _check(collection_id, generation)
    if (int(collection_id), int(generation)) == HOME:
        return home
    if is_postgres(home):
        return with_schema(home, schema_name(collection_id, generation))
    path = Path(home).expanduser()
    return str(
        path.with_name(path.name + ".collections") / f"c{int(collection_id)}-g{int(generation)}.sqlite"
    )


def with_schema(url: str, schema: str) -> str:
    """A postgresql:// URL whose sessions use only `schema` (search_path; public is left out, so a table
    missing there is never found in the home store's schema instead). gallery.pg_session.url_schema reads
    it back."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
    options = " ".join(
        [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "options" and v]
        + [f"-c search_path={schema}"]
    )
    return urlunsplit(parts._replace(query=urlencode([*query, ("options", options)], quote_via=quote)))


def drop_store(home: str, collection_id: int, generation: int, password_file: str = "") -> None:
    """Removes a collection generation's store for good (a deleted collection, a re-embed's old vectors).

    Home (1, 1) holds the catalog too, so it is emptied instead: its faces, identities, pictures, change
    log and kept classifier go (SQLite: with secure_delete, the WAL emptied; its .faiss and .svm.npz
    deleted), and its version moves on so a follower rebuilds to nothing. Others: the SQLite file and
    every sidecar named after it deleted; the PostgreSQL schema dropped (DROP SCHEMA ... CASCADE; as with
    every PostgreSQL deletion, the bytes leave the files as VACUUM reclaims them). Dropping what is not
    there does nothing."""
    location = store_location(home, collection_id, generation)
    home_store = (int(collection_id), int(generation)) == HOME
    if is_postgres(home):
        schema = "" if home_store else schema_name(collection_id, generation)
        _drop_postgres(home, schema, read_password(password_file))
    elif home_store:
        _empty_sqlite(Path(home).expanduser())
    else:
        path = Path(location)
        for file in sorted(path.parent.glob(path.name + "*")):
            # c1-g1.sqlite*, not c1-g10.sqlite: every sidecar's name goes on with a "-" or a ".".
            if file.name == path.name or file.name[len(path.name)] in "-.":
                file.unlink(missing_ok=True)
        log.info("dropped the store %s", path)


def _empty_sqlite(path: Path) -> None:
    if not path.is_file():
        return
    with contextlib.closing(sqlite3.connect(str(path), isolation_level=None, timeout=30.0)) as db:
        configure(db)  # secure_delete: the deleted rows' bytes are overwritten, not left free
        empty_sqlite_store(db)
    for suffix in (".faiss", ".svm.npz"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    log.info("emptied the store %s", path)


def _drop_postgres(home: str, schema: str, password: str) -> None:
    import psycopg

    from gallery.pg_schema import drop_schema, empty_store

    extra: dict[str, Any] = {"password": password} if password else {}
    with psycopg.connect(home, connect_timeout=10, **extra) as conn, conn.transaction():
        if schema:
            drop_schema(conn, schema)
        else:
            empty_store(conn)
    log.info("dropped the store %s", schema or "in the default schema")

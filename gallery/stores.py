"""Which store a setting names: a path is a SQLite file, a postgresql:// URL a PostgreSQL database."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from facerec.errors import InvalidInput
from gallery.ports import FaceStore
from gallery.store import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: str | Path) -> bool:
    return str(location).startswith(POSTGRES_SCHEMES)


def read_password(password_file: str) -> str:
    """The password kept in a file (a mounted secret), without its trailing newline; "" for no file."""
    if not password_file:
        return ""
    try:
        return Path(password_file).read_text().rstrip("\r\n")
    except OSError as exc:
        raise InvalidInput(
            f"The store password file {password_file} cannot be read ({exc.strerror})."
        ) from None


def stored_model(location: str | Path, password_file: str = "") -> str:
    """The model a store holds, read without opening it for a model (which would adopt one when empty).
    InvalidInput when there is no gallery there."""
    if is_postgres(location):
        import psycopg

        extra: dict[str, Any] = {"password": read_password(password_file)} if password_file else {}
        try:
            with psycopg.connect(str(location), connect_timeout=10, **extra) as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        except psycopg.Error:
            row = None
    else:
        path = Path(location).expanduser()
        if not path.is_file():
            raise InvalidInput(f"There is no gallery at {path}.")
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            try:
                row = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
            except sqlite3.Error:
                row = None
    if row is None:
        raise InvalidInput(f"There is no gallery at {location}.")
    return str(row[0])


def open_store(location: str | Path, model: str, dim: int = 128, password_file: str = "") -> FaceStore:
    """Opens (creating or migrating) the store at location: a SQLite path or a postgresql:// URL."""
    if is_postgres(location):
        # Imported here: a SQLite gallery needs no PostgreSQL driver (the `postgres` extra).
        try:
            from gallery.store_postgres import PostgresStore
        except ImportError:
            raise InvalidInput(
                "A postgresql:// store needs the PostgreSQL driver: pip install 'facerec[postgres]'."
            ) from None

        return PostgresStore(str(location), model, dim, password=read_password(password_file))
    path = Path(location).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return Store(path, model, dim)

"""Where each collection generation keeps its store. Pure: no grpc.

STAND-IN written by helper "collections" so the CollectionManager can be tested before helper "stores"'
version lands: same signatures (COMMON3.md); the integrator keeps the stores' module.

Generation 1 of the default collection (id 1) is the gallery's own store, `home` itself. Others: SQLite
`<home>.collections/c<ID>-g<GEN>.sqlite`; PostgreSQL the same database, schema `facerec_c<ID>_g<GEN>`
(search_path in the URL's options).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gallery.stores import is_postgres, read_password

DEFAULT_ID = 1


def _schema(collection_id: int, generation: int) -> str:
    return f"facerec_c{int(collection_id)}_g{int(generation)}"


def _connect(home: str, password_file: str) -> Any:
    import psycopg

    extra: dict[str, Any] = {"password": read_password(password_file)} if password_file else {}
    return psycopg.connect(home, autocommit=True, connect_timeout=10, **extra)


def store_location(home: str, collection_id: int, generation: int, password_file: str = "") -> str:
    """The store of a collection's generation: a SQLite path or a postgresql:// URL (its schema created)."""
    if collection_id == DEFAULT_ID and generation == 1:
        return home
    if is_postgres(home):
        schema = _schema(collection_id, generation)
        with _connect(home, password_file) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        joiner = "&" if "?" in home else "?"
        return f"{home}{joiner}options={quote(f'-csearch_path={schema}')}"
    base = Path(home).expanduser()
    return str(base.with_name(base.name + ".collections") / f"c{collection_id}-g{generation}.sqlite")


def drop_store(home: str, collection_id: int, generation: int, password_file: str = "") -> None:
    """Removes a collection generation's store for good (never the gallery's own store)."""
    if collection_id == DEFAULT_ID and generation == 1:
        return
    if is_postgres(home):
        with _connect(home, password_file) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {_schema(collection_id, generation)} CASCADE")
        return
    path = Path(store_location(home, collection_id, generation))
    for p in path.parent.glob(path.name + "*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)

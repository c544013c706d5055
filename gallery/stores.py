"""Which store a setting names: a path is a SQLite file, a postgresql:// URL a PostgreSQL database."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from facerec.errors import InvalidInput
from gallery.store import FaceRow, IdentityRow, NewFace, Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class GalleryStore(Protocol):
    """What the gallery needs from its store; gallery.store.Store and gallery.store_postgres.PostgresStore."""

    shared: bool  # True when other processes write it too: their changes are then followed

    @property
    def model(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def location(self) -> str: ...
    def add_faces(self, identity: str, faces: Sequence[NewFace]) -> list[int]: ...
    def add_many(self, batches: Sequence[tuple[str, Sequence[NewFace]]]) -> list[list[int]]: ...
    def import_faces(self, identities: Sequence[IdentityRow], faces: Sequence[FaceRow]) -> None: ...
    def find_face_by_image(self, identity: str, image_sha256: str) -> int | None: ...
    def confusable_identity(self, identity: str) -> str | None: ...
    def other_identity_with_image(self, identity: str, image_sha256: str) -> str | None: ...
    def remove_identity(self, identity: str) -> list[int]: ...
    def remove_face(self, face_id: int) -> str: ...
    def get_identity(self, identity: str) -> tuple[IdentityRow, list[FaceRow]]: ...
    def has_identity(self, identity: str) -> bool: ...
    def list_identities(self, after: str = "", limit: int = 100) -> list[IdentityRow]: ...
    def embeddings(self) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]: ...
    def embeddings_of(self, identity: str) -> tuple[NDArray[np.int64], NDArray[np.float32]]: ...
    def identities_of(self, face_ids: Sequence[int]) -> dict[int, str]: ...
    def face_ids(self) -> NDArray[np.int64]: ...
    def faces_by_id(
        self, face_ids: Sequence[int]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]: ...
    def counts(self) -> tuple[int, int]: ...
    def version(self) -> int: ...
    def integrity_check(self) -> bool: ...
    def save_classifier(self, arrays: dict[str, NDArray[Any]], store_version: int) -> None: ...
    def load_classifier(self) -> tuple[int, dict[str, NDArray[Any]]] | None: ...
    def close(self) -> None: ...
    def __enter__(self) -> GalleryStore: ...
    def __exit__(self, *exc: object) -> None: ...


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


def open_store(location: str | Path, model: str, dim: int = 128, password_file: str = "") -> GalleryStore:
    """Opens (creating or migrating) the store at location: a SQLite path or a postgresql:// URL."""
    if is_postgres(location):
        # Imported here: a SQLite gallery needs no PostgreSQL driver.
        from gallery.store_postgres import PostgresStore

        return PostgresStore(str(location), model, dim, password=read_password(password_file))
    path = Path(location).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return Store(path, model, dim)

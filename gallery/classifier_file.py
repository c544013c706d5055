"""The SQLite store's fitted classifier, kept in a file beside it (PostgreSQL keeps it in a table). Pure.

The file is derived: it names the store it was fit from (its id) and the store version, and is checked
when the store opens (every member's CRC-32, the id, a version not ahead of the store's). One that is
damaged, of another store, or from the store's future (an older copy of the store was restored) is
removed with one log line, never served; the gallery fits a new one from the store.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from facerec.files import atomic_write
from gallery.rows import classifier_bytes, classifier_from_bytes, classifier_stamp_of

log = logging.getLogger(__name__)


class ClassifierFile:
    """One .npz of a classifier's arrays, the store version it was fit at and the store's id (gallery.rows)."""

    def __init__(self, path: Path, store_id: str) -> None:
        self.path = path
        self._store_id = store_id
        self._version: int | None = None  # version(), read once, then kept by save(): the only writer

    def vet(self, store_version: int) -> None:
        """Removes the file unless it is whole, of this store, and not ahead of store_version."""
        try:
            store_id, version = classifier_stamp_of(str(self.path))
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError) as exc:
            why = f"it is damaged ({exc})"
        else:
            if store_id != self._store_id:
                why = "it was fit from another store"
            elif version > store_version:
                why = f"it was fit at version {version} of a store now at {store_version} (an older copy restored)"
            else:
                self._version = version
                return
        log.warning("removed the saved SVM %s: %s; a new one is fit from the store", self.path, why)
        self.path.unlink(missing_ok=True)
        self._version = -1

    def save(self, arrays: dict[str, NDArray[Any]], store_version: int) -> None:
        """Writes it fsynced and replaced atomically; a failure to write is logged, not raised."""
        data = classifier_bytes(arrays, store_version, self._store_id)
        try:
            atomic_write(self.path, lambda f: f.write(data))
        except OSError as exc:
            log.warning("could not save the SVM to %s: %s", self.path, exc)
            return
        self._version = int(store_version)

    def names(self, identity: str) -> bool:
        """Whether one of its arrays of strings (the SVM's classes) holds this name."""
        saved = self.load()
        return saved is not None and any(
            a.dtype.kind == "U" and identity in a.ravel().tolist() for a in saved[1].values()
        )

    def discard(self) -> None:
        """Deletes it (a removal: a fit made before it may name the removed identity)."""
        self.path.unlink(missing_ok=True)
        self._version = -1

    def load(self) -> tuple[int, dict[str, NDArray[Any]]] | None:
        """(store version it was fit at, arrays), or None when there is none readable."""
        if not self.path.is_file():
            return None
        try:
            return classifier_from_bytes(self.path.read_bytes())
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring the unreadable saved SVM %s: %s", self.path, exc)
            return None

    def version(self) -> int:
        """The store version it was fit at, read without its arrays; -1 when none is readable. Read from
        the file once (vet), then kept by save(): the process that owns a SQLite store is its only writer."""
        if self._version is None:
            try:
                store_id, version = classifier_stamp_of(str(self.path))
                self._version = version if store_id == self._store_id else -1
            except FileNotFoundError:
                self._version = -1
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring the unreadable saved SVM %s: %s", self.path, exc)
                self._version = -1
        return self._version

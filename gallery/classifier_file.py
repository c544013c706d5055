"""The SQLite store's fitted classifier, kept in a file beside it (PostgreSQL keeps it in a table). Pure."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from facerec.files import atomic_write
from gallery.rows import classifier_bytes, classifier_from_bytes, classifier_version_of

log = logging.getLogger(__name__)


class ClassifierFile:
    """One .npz of a classifier's arrays and the store version it was fit at (gallery.rows)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._version: int | None = None  # version(), read once, then kept by save(): the only writer

    def save(self, arrays: dict[str, NDArray[Any]], store_version: int) -> None:
        """Writes it fsynced and replaced atomically; a failure to write is logged, not raised."""
        data = classifier_bytes(arrays, store_version)
        try:
            atomic_write(self.path, lambda f: f.write(data))
        except OSError as exc:
            log.warning("could not save the SVM to %s: %s", self.path, exc)
            return
        self._version = int(store_version)

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
        the file once, then kept by save(): the process that owns a SQLite store is its only writer."""
        if self._version is None:
            try:
                self._version = classifier_version_of(str(self.path))
            except FileNotFoundError:
                self._version = -1
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring the unreadable saved SVM %s: %s", self.path, exc)
                self._version = -1
        return self._version

"""One PostgreSQL connection that reopens itself: the PostgreSQL store's plumbing. Pure: no grpc.

A lost connection (the server restarted, the network dropped) is reopened on the next call; a read, or a
write that failed before its commit was sent, is retried once on the new connection, otherwise the call
raises Unavailable. A second connection listens for notifications.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from facerec.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


# What gallery.namespaces.with_schema puts in a URL's options: the one schema its sessions use.
_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*([A-Za-z0-9_]+)")


def url_schema(url: str) -> str:
    """The schema a postgresql:// URL's options name (the last search_path), "" for the default."""
    options = str(psycopg.conninfo.conninfo_to_dict(url).get("options") or "")
    found = _SEARCH_PATH.findall(options)
    return str(found[-1]) if found else ""


def reason(exc: BaseException) -> str:
    """The first line of a driver's error, for a one-sentence message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")


class Session:
    """Runs work on one connection, guarded by a lock (thread-safe), reconnecting once when it was lost."""

    def __init__(self, url: str, password: str = "", connect_timeout_s: float = 10.0) -> None:
        self._url = url
        self._password = password
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._listener: psycopg.Connection[Any] | None = None
        self._listener_lock = threading.Lock()

    def connect(self) -> psycopg.Connection[Any]:
        extra: dict[str, Any] = {"password": self._password} if self._password else {}
        try:
            conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=max(1, round(self._connect_timeout_s)),
                application_name="facerec-gallery",
                **extra,
            )
        except psycopg.OperationalError as exc:
            raise Unavailable(f"The gallery's PostgreSQL store cannot be reached ({reason(exc)}).") from None
        # Whatever the server's default: an acknowledged change must be flushed to its WAL first.
        conn.execute("SET synchronous_commit = on")
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def run(
        self, work: Callable[[psycopg.Connection[Any]], T], write: bool = False, atomic: bool = False
    ) -> T:
        """Runs work(conn) in one transaction (writes, and reads of several statements: atomic), or as
        one autocommitted statement; reconnects once when the connection was lost."""
        with self._lock:
            for attempt in (0, 1):
                if self._conn is None or self._conn.closed:
                    self._conn = self.connect()
                conn = self._conn
                body_done = False
                try:
                    if not (write or atomic):
                        # autocommit: the one statement is its own transaction (saves BEGIN and COMMIT)
                        return work(conn)
                    with conn.transaction():
                        result = work(conn)
                        body_done = True
                    return result
                except psycopg.OperationalError as exc:
                    self._drop()
                    # A write whose COMMIT was sent may or may not have happened: never run it twice.
                    if attempt == 0 and not (write and body_done):
                        log.warning("lost the PostgreSQL connection (%s); reconnecting", reason(exc))
                        continue
                    raise Unavailable(
                        f"The gallery's PostgreSQL store cannot be reached ({reason(exc)})."
                    ) from None
            raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def wait_for_notify(self, channel: str, timeout_s: float) -> bool:
        """Blocks until a NOTIFY on channel or timeout_s passes; True when notified.

        Uses its own connection; when that cannot be had it just waits, so a caller polling with it keeps
        working through an outage."""
        with self._listener_lock:
            try:
                if self._listener is None or self._listener.closed:
                    self._listener = self.connect()
                    self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                notified = False
                for _ in self._listener.notifies(timeout=timeout_s, stop_after=1):
                    notified = True
                return notified
            except (psycopg.Error, Unavailable) as exc:
                log.debug("change listener: %s", exc)
                if self._listener is not None:
                    self._listener.close()
                self._listener = None
        time.sleep(timeout_s)
        return False

    def close(self) -> None:
        with self._lock:
            self._drop()
        with self._listener_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None

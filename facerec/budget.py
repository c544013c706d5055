"""A shared allowance of units (pixels, calls) taken without waiting: a bulkhead that refuses at once when spent."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from facerec.errors import Overloaded, TooLarge


class Budget:
    """At most `limit` units held at once by all callers. take() never waits: a caller that would pass the
    limit is refused (Overloaded) at once, so a stuck consumer cannot make the callers pile up behind it.
    A caller that asks for more than the whole limit is told TooLarge: it would never fit."""

    def __init__(self, limit: int, what: str) -> None:
        """what: the sentence's subject for a refusal, e.g. "calls waiting on the detector"."""
        self.limit = limit
        self._what = what
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        return self._held

    @contextmanager
    def take(self, units: int = 1) -> Iterator[None]:
        """Holds `units` for the block; raises Overloaded when they would pass the limit now, TooLarge when
        they are more than the limit itself."""
        if units > self.limit:
            raise TooLarge(
                f"The request is too large: it needs {units} {self._what}, more than the limit of {self.limit}."
            )
        with self._lock:
            if self._held + units > self.limit:
                raise Overloaded(
                    f"Too many {self._what} ({self._held} held of {self.limit}, {units} more asked); "
                    "try again later."
                )
            self._held += units
        try:
            yield
        finally:
            with self._lock:
                self._held -= units

    def parts(self, units: Sequence[int]) -> list[list[int]]:
        """The indices of `units`, in order, cut into consecutive parts whose sums each fit the limit, so a
        request whose items fit one by one is served part after part rather than refused. An item over the
        limit by itself is a part of its own (take() then says TooLarge)."""
        found: list[list[int]] = []
        total = 0
        for index, amount in enumerate(units):
            if not found or total + amount > self.limit:
                found.append([])
                total = 0
            found[-1].append(index)
            total += amount
        return found

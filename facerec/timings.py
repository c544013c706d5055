"""Where a service's time goes: seconds per stage and counts since start, logged as one
`timings {...}` line when the service closes (bench/e2e.py reads it). Pure: no grpc, so domain code
(the detector, the embedder, the gallery) can keep them; Prometheus metrics are facerec/metrics.py."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timings:
    """Named totals (seconds or counts) since start or the last clear(). Thread-safe."""

    def __init__(self) -> None:
        self._totals: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, **amounts: float) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._totals[name] = self._totals.get(name, 0) + amount

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Adds the seconds the block takes to `stage`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(**{stage: time.perf_counter() - start})

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._totals)

    def clear(self) -> None:
        with self._lock:
            self._totals.clear()

    def log(self, logger: logging.Logger) -> None:
        """The one `timings {...}` line, when anything was counted."""
        totals = self.snapshot()
        if totals:
            logger.info("timings %s", json.dumps(totals, sort_keys=True))

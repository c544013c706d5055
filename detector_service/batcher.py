"""The detector behind facerec.batching.Batcher: concurrent callers' pictures go to the model together."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from detector_service.detector import Detection, DetectOptions, synthetic_picture
from facerec.batching import Batcher, Outcome
from facerec.errors import FacerecError

log = logging.getLogger(__name__)


class FaceFinder(Protocol):
    """What BatchingDetector runs: detector_service.detector.Detector, or a fake in tests."""

    def detect(
        self, images: Sequence[NDArray[np.uint8]], options: DetectOptions
    ) -> list[list[Detection]]: ...


# What the batcher queues: one picture with its request's options; None options is the warm-up.
Item = tuple[NDArray[np.uint8], DetectOptions | None]


class BatchingDetector:
    """A detector behind facerec.batching.Batcher: concurrent callers' pictures go to the model together.

    `detector` is a FaceFinder (optionally with warm_up() and a `timings` dict). The batcher's worker thread is the only thread that runs it. detect() raises Overloaded
    when the queue is full and DeadlineExceeded when the caller's deadline passes while it waits.
    """

    def __init__(
        self,
        detector: FaceFinder,
        max_batch: int = 8,
        max_delay_ms: float = 5.0,
        max_queue: int = 64,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._detector = detector
        self._waited: Counter[str] = Counter()
        self._waited_lock = threading.Lock()
        self.batcher: Batcher[Item, list[Detection]] = Batcher(
            self._run_batch,
            max_batch=max_batch,
            max_delay_ms=max_delay_ms,
            max_queue=max_queue,
            name="detector",
            on_batch=on_batch,
        )

    def detect(
        self,
        images: Sequence[NDArray[np.uint8]],
        options: DetectOptions,
        timeout_s: float | None = None,
        is_active: Callable[[], bool] = lambda: True,
    ) -> list[Outcome]:
        """Per image: its detections, or the FacerecError that image alone got."""
        options.validate()
        start = time.perf_counter()
        try:
            return self.batcher.submit([(image, options) for image in images], timeout_s, is_active)
        finally:
            with self._waited_lock:
                self._waited["requests"] += 1
                self._waited["in_detector_s"] += time.perf_counter() - start

    def timing_report(self) -> dict[str, float]:
        """Since start: requests, pictures and model calls, and seconds spent in each stage
        (in_detector_s: callers' time from submit to answer, queueing included)."""
        return {**getattr(self._detector, "timings", {}), **self._waited}

    def warm_up(self) -> None:
        """Warms the model up on the worker thread, the thread that will run it."""
        done = self.batcher.submit([(synthetic_picture(), None)])
        if isinstance(done[0], Exception):
            raise done[0]

    def close(self) -> None:
        self.batcher.close()
        log.info("timings %s", json.dumps(self.timing_report(), sort_keys=True))

    def _run_batch(self, items: list[Item]) -> list[Outcome]:
        outcomes: list[Outcome] = [[] for _ in items]
        groups: dict[DetectOptions | None, list[int]] = defaultdict(list)
        for index, (_, options) in enumerate(items):
            groups[options].append(index)
        for options, indices in groups.items():
            if options is None:
                warm = getattr(self._detector, "warm_up", None)
                if warm is not None:
                    warm()
                continue
            try:
                found = self._detector.detect([items[i][0] for i in indices], options)
                for i, faces in zip(indices, found, strict=True):
                    outcomes[i] = faces
            except FacerecError as exc:
                for i in indices:
                    outcomes[i] = exc
        return outcomes

"""The detector behind facerec.batching.Batcher: concurrent callers' pictures go to the model together."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from detector_service.detector import Detection, DetectOptions, synthetic_picture
from facerec.batching import Batcher, Outcome
from facerec.errors import FacerecError
from facerec.timings import Timings

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

    `detector` is a FaceFinder (optionally with warm_up() and `timings`, a facerec.timings.Timings). The batcher's worker thread is the only thread that runs it. detect() raises Overloaded
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
        self._waited = Timings()
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
    ) -> list[Outcome[list[Detection]]]:
        """Per image: its detections, or the FacerecError that image alone got."""
        options.validate()
        start = time.perf_counter()
        try:
            return self.batcher.submit([(image, options) for image in images], timeout_s, is_active)
        finally:
            self._waited.add(requests=1, in_detector_s=time.perf_counter() - start)

    def timing_report(self) -> dict[str, float]:
        """Since start: requests, pictures and model calls, and seconds spent in each stage
        (in_detector_s: callers' time from submit to answer, queueing included)."""
        inner = getattr(self._detector, "timings", None)
        return {**(inner.snapshot() if isinstance(inner, Timings) else {}), **self._waited.snapshot()}

    def warm_up(self) -> None:
        """Warms the model up on the worker thread, the thread that will run it."""
        done = self.batcher.submit([(synthetic_picture(), None)])
        if isinstance(done[0], Exception):
            raise done[0]

    def close(self) -> None:
        self.batcher.close()
        report = Timings()
        report.add(**self.timing_report())
        report.log(log)

    def _run_batch(self, items: list[Item]) -> list[Outcome[list[Detection]]]:
        outcomes: list[Outcome[list[Detection]]] = [[] for _ in items]
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

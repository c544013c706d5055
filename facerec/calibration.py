"""The verification threshold: the calibrated one written by `facerec eval --save-threshold`, else the default.

Distances are euclidean between unit vectors (0..2). The default is the calibration of the
default model (facenet-keras-128, box alignment) by `facerec eval` on all 118 5-celebrity
pictures: best balanced accuracy at 1.204 (97.5% balanced, 98.7% of 6786 pairs right, EER 3.0%,
97.2% balanced accuracy when each person is held out of the fit), shipped rounded to 1.20.

Open-set identification has its own threshold: a query's *nearest* enrolled face (a minimum over
many faces) lies closer than a typical pair, so the pair threshold lets strangers in. On the same
118 pictures, the nearest other face of the same person versus the nearest face of anyone else is
best split at 1.056 (99.1% of known faces accepted, 100% of strangers rejected; at 1.20 only 77.8%
of strangers are rejected), shipped rounded to 1.06.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from facerec.files import atomic_write

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 1.20
DEFAULT_IDENTIFICATION_THRESHOLD = 1.06


@dataclass(frozen=True)
class Calibration:
    """threshold: euclidean distance on unit vectors at or below which two faces match (Verify).
    identification_threshold: how near a face's nearest enrolled face must be to name it (Identify)."""

    threshold: float
    source: str  # "calibrated" or "default"
    model: str = ""
    identification_threshold: float = DEFAULT_IDENTIFICATION_THRESHOLD


def load_calibration(path: Path, model: str) -> Calibration:
    """The threshold saved for `model` at path, or the default when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Calibration(DEFAULT_THRESHOLD, "default", model)
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable calibration %s: %s", path, exc)
        return Calibration(DEFAULT_THRESHOLD, "default", model)
    entry = data.get("models", {}).get(model)
    if not isinstance(entry, dict) or not _valid(entry.get("threshold")):
        return Calibration(DEFAULT_THRESHOLD, "default", model)
    identification = entry.get("identification_threshold")
    return Calibration(
        float(entry["threshold"]),
        "calibrated",
        model,
        float(identification) if _valid(identification) else DEFAULT_IDENTIFICATION_THRESHOLD,
    )


def save_calibration(
    path: Path,
    model: str,
    threshold: float,
    details: dict[str, Any] | None = None,
    identification_threshold: float | None = None,
) -> None:
    """Stores the thresholds for `model` (atomically: temp file, then rename), keeping other models' entries."""
    for value in (threshold, identification_threshold if identification_threshold is not None else threshold):
        if not _valid(value):
            raise ValueError(f"a threshold must lie in (0, 2], not {value}")
    if identification_threshold is not None:
        details = {**(details or {}), "identification_threshold": float(identification_threshold)}
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    data.setdefault("models", {})[model] = {"threshold": float(threshold), **(details or {})}
    text = json.dumps(data, indent=2, sort_keys=True)
    atomic_write(path, lambda f: f.write(text.encode()))


def _valid(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and math.isfinite(value) and 0 < value <= 2


class CalibrationSource:
    """The current calibration for a model, re-read when the file changes, so `eval --save-threshold`
    takes effect in running services without a restart."""

    def __init__(self, path: Path, model: str) -> None:
        self._path = path
        self._model = model
        self._stamp: tuple[int, int] | None = None
        self._current = Calibration(DEFAULT_THRESHOLD, "default", model)

    def current(self) -> Calibration:
        try:
            stat = self._path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._current = load_calibration(self._path, self._model)
            self._stamp = stamp
        return self._current

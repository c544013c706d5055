"""The verification threshold: the calibrated one written by `facerec eval --save-threshold`, else the default.

Distances are euclidean between unit vectors (0..2). The default is the calibration of the
default model (facenet-keras-128, box alignment) by `facerec eval` on all 118 5-celebrity
pictures: best balanced accuracy at 1.204 (97.5% balanced, 98.7% of 6786 pairs right, EER 3.0%,
97.2% balanced accuracy when each person is held out of the fit), shipped rounded to 1.20.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 1.20


@dataclass(frozen=True)
class Calibration:
    """threshold: euclidean distance on unit vectors at or below which two faces match."""

    threshold: float
    source: str  # "calibrated" or "default"
    model: str = ""


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
    return Calibration(float(entry["threshold"]), "calibrated", model)


def save_calibration(path: Path, model: str, threshold: float, details: dict | None = None) -> None:
    """Stores the threshold for `model` (atomically: temp file, then rename), keeping other models' entries."""
    if not _valid(threshold):
        raise ValueError(f"a threshold must lie in (0, 2], not {threshold}")
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    data.setdefault("models", {})[model] = {"threshold": float(threshold), **(details or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".calibration-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _valid(value: object) -> bool:
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

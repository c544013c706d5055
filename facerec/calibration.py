"""The decision thresholds: the operating points written by `facerec eval --save-threshold`, else the shipped ones.

Distances are euclidean between unit vectors (0..2). A verification threshold is an operating point:
the largest distance whose false-accept rate (FAR) on a calibration set stays at or below a target
by its one-sided 95% Clopper–Pearson upper bound, with the true-accept rate (TAR) there. The shipped
points are `facerec eval` on the 117 faces of the 118 5-celebrity pictures (facenet-keras-128, box
alignment, chosen over similarity alignment by held-out identities; 5453 different-person and 1333
same-person pairs). Those pairs support FAR 1e-2 and 1e-3 (the bound needs about 3/FAR impostor
pairs: 2995 for 1e-3), not 1e-4 (29956). Verify's default is far_1e-3: 1.0906, 1 false accept of
5453 (<= 0.087% at 95%), TAR 88.3%; the former best-accuracy 1.204 accepted 24 (0.44%). Five people
are a starting point, not a guarantee for a deployment's population: see the README.

Open-set identification has its own threshold: a query's *nearest* enrolled face (a minimum over
many faces) lies closer than a typical pair, so a pair threshold lets strangers in. It is fitted
on each face's nearest other face of the same person against its nearest face of anyone else (the
person held out): at FAR 1e-3 by the same bound when there are enough strangers (2995), else at the
best balanced split; on the 118 pictures that is the split, 1.056, shipped rounded to 1.06.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from facerec.files import atomic_write

log = logging.getLogger(__name__)

IDENTIFICATION = "identification"  # the name of Identify's open-set point

# Euclidean distance sqrt(2) between unit vectors is cosine similarity 0: unrelated faces. A threshold
# at or past it calls any two faces the same person (2.0 in a file once matched two strangers at 1.337).
MAX_THRESHOLD = math.sqrt(2)
# The largest euclidean distance between unit vectors: a request may name any threshold up to it.
MAX_DISTANCE = 2.0


class CalibrationFileError(ValueError):
    """calibration.json exists but cannot be used; the message is one sentence naming the file."""


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold and what it did on the set it was fitted on.

    far: false accepts / impostor (different-person) pairs at or below threshold; far_upper: its
    one-sided 95% Clopper–Pearson upper bound; tar: true accepts / genuine (same-person) pairs.
    """

    name: str
    threshold: float
    far: float
    far_upper: float
    tar: float
    genuine_pairs: int
    impostor_pairs: int

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> OperatingPoint | None:
        """The point a calibration file holds, or None when the entry is malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
            return None
        if not _valid(data.get("threshold")):
            return None
        try:
            return cls(
                name=data["name"],
                threshold=float(data["threshold"]),
                far=float(data.get("far", math.nan)),
                far_upper=float(data.get("far_upper", math.nan)),
                tar=float(data.get("tar", math.nan)),
                genuine_pairs=int(data.get("genuine_pairs", 0)),
                impostor_pairs=int(data.get("impostor_pairs", 0)),
            )
        except (TypeError, ValueError):
            return None


# `facerec eval` on the 5-celebrity set, box alignment (see the module docstring and the README).
# Thresholds are rounded down to 4 decimals (each lies midway in a gap between distances), rates to 5.
# These are fp32 FaceNet's ("facenet-keras-128"), and the fallback for a model with no points of its own.
DEFAULT_POINTS: tuple[OperatingPoint, ...] = (
    OperatingPoint("far_1e-2", 1.2180, 0.00770, 0.00995, 0.95574, 1333, 5453),
    OperatingPoint("far_1e-3", 1.0906, 0.00018, 0.00087, 0.88297, 1333, 5453),
    OperatingPoint("eer", 1.2675, 0.03008, 0.03416, 0.96999, 1333, 5453),
    OperatingPoint("best_accuracy", 1.2039, 0.00440, 0.00618, 0.95349, 1333, 5453),
)
DEFAULT_OPERATING_POINT = "far_1e-3"
DEFAULT_THRESHOLD = next(p.threshold for p in DEFAULT_POINTS if p.name == DEFAULT_OPERATING_POINT)
DEFAULT_IDENTIFICATION_THRESHOLD = 1.06
# Its rates as measured at the fitted split, 1.056: no stranger of 117 accepted (<= 2.5% at 95%).
DEFAULT_IDENTIFICATION_POINT = OperatingPoint(IDENTIFICATION, 1.06, 0.0, 0.02528, 0.99145, 117, 117)

# int8 FaceNet (the embedder's default precision) moves distances a little, so it ships its own points:
# the same `facerec eval` run with EMBEDDER_PRECISION=int8 (far_1e-3 at 1.0757 against fp32's 1.0906,
# the same single false accept of 5453; identification's best balanced split at 1.0596). Re-fitted for
# the int8 model of embedding_service.quantize's RECIPE (percentile ranges, first and last layers in
# float): the points moved by 0.002-0.004, best_accuracy (a flat optimum) by 0.027.
INT8_POINTS: tuple[OperatingPoint, ...] = (
    OperatingPoint("far_1e-2", 1.2150, 0.00770, 0.00995, 0.95349, 1333, 5453),
    OperatingPoint("far_1e-3", 1.0756, 0.00018, 0.00087, 0.86947, 1333, 5453),
    OperatingPoint("eer", 1.2687, 0.03081, 0.03494, 0.96924, 1333, 5453),
    OperatingPoint("best_accuracy", 1.2073, 0.00587, 0.00787, 0.95349, 1333, 5453),
)
INT8_IDENTIFICATION_POINT = OperatingPoint(IDENTIFICATION, 1.0596, 0.0, 0.02528, 0.99145, 117, 117)

# Model names as the embedder reports them (the ground cannot import the embedder to ask).
SHIPPED: dict[str, tuple[tuple[OperatingPoint, ...], OperatingPoint]] = {
    "facenet-keras-128": (DEFAULT_POINTS, DEFAULT_IDENTIFICATION_POINT),
    "facenet-keras-128-int8": (INT8_POINTS, INT8_IDENTIFICATION_POINT),
}

# The same `facerec eval` with the detector on RetinaFace (box alignment; it finds a face in all 118
# pictures: 1354 same- and 5549 different-person pairs). FaceNet separates RetinaFace's crops better, so
# far_1e-3 sits further out, 1.1315 int8 and 1.1365 fp32, at a true-accept rate of 92.0% and 92.4% (MTCNN's
# points: 86.9% and 88.3% on its 117 faces; equal error rates 2.4% and 2.3% against 3.1% and 3.0%). A
# RetinaFace collection on MTCNN's points would turn away about one true match in twenty more.
RETINAFACE_INT8_POINTS: tuple[OperatingPoint, ...] = (
    OperatingPoint("far_1e-2", 1.2243, 0.00775, 0.00998, 0.96603, 1354, 5549),
    OperatingPoint("far_1e-3", 1.1315, 0.00018, 0.00085, 0.91950, 1354, 5549),
    OperatingPoint("eer", 1.2659, 0.02361, 0.02724, 0.97637, 1354, 5549),
    OperatingPoint("best_accuracy", 1.2401, 0.01099, 0.01359, 0.97120, 1354, 5549),
)
RETINAFACE_FP32_POINTS: tuple[OperatingPoint, ...] = (
    OperatingPoint("far_1e-2", 1.2240, 0.00775, 0.00998, 0.96529, 1354, 5549),
    OperatingPoint("far_1e-3", 1.1365, 0.00018, 0.00085, 0.92393, 1354, 5549),
    OperatingPoint("eer", 1.2651, 0.02289, 0.02647, 0.97710, 1354, 5549),
    OperatingPoint("best_accuracy", 1.2436, 0.01171, 0.01438, 0.97341, 1354, 5549),
)
# Identification's best balanced split (118 strangers, all rejected; 117 of 118 known faces accepted).
SHIPPED_RETINAFACE: dict[str, tuple[tuple[OperatingPoint, ...], OperatingPoint]] = {
    "facenet-keras-128": (
        RETINAFACE_FP32_POINTS,
        OperatingPoint(IDENTIFICATION, 1.0597, 0.0, 0.02507, 0.99153, 118, 118),
    ),
    "facenet-keras-128-int8": (
        RETINAFACE_INT8_POINTS,
        OperatingPoint(IDENTIFICATION, 1.0686, 0.0, 0.02507, 0.99153, 118, 118),
    ),
}


@dataclass(frozen=True)
class Calibration:
    """threshold: euclidean distance on unit vectors at or below which two faces match (Verify), the
    threshold of the point named operating_point ("" when none is named: an older calibration file or
    an override). identification_threshold: how near a face's nearest enrolled face must be to name
    it (Identify). points: every verification point, for requests that name one."""

    threshold: float
    source: str  # "calibrated", "default" or "override"
    model: str = ""
    identification_threshold: float = DEFAULT_IDENTIFICATION_THRESHOLD
    operating_point: str = ""
    points: tuple[OperatingPoint, ...] = ()
    identification: OperatingPoint | None = field(default=None)

    def point(self, name: str) -> OperatingPoint | None:
        return next((p for p in self.points if p.name == name), None)


def default_calibration(model: str = "", detector: str = "") -> Calibration:
    """The shipped thresholds and points: the model's own when it has shipped ones, else fp32's; fitted on
    RetinaFace's crops for detector "retinaface", else on MTCNN's."""
    shipped = SHIPPED_RETINAFACE if detector == "retinaface" and model in SHIPPED_RETINAFACE else SHIPPED
    points, identification = shipped.get(model, (DEFAULT_POINTS, DEFAULT_IDENTIFICATION_POINT))
    chosen = next(p for p in points if p.name == DEFAULT_OPERATING_POINT)
    return Calibration(
        chosen.threshold,
        "default",
        model,
        identification.threshold,
        DEFAULT_OPERATING_POINT,
        points,
        identification,
    )


def load_calibration(path: Path, model: str, detector: str = "") -> Calibration:
    """The calibration saved for `model` at path, or the default (for that detector) when there is none for it.

    Files written before operating points existed hold only `threshold` (and maybe
    `identification_threshold`): they load with those thresholds and no named points. A file that is
    there but unusable (not JSON, not the expected object, a threshold outside (0, sqrt 2)) raises
    CalibrationFileError: a service must not run on thresholds other than the ones its operator saved.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return default_calibration(model, detector)
    except OSError as exc:
        raise CalibrationFileError(f"The calibration file {path} cannot be read ({exc.strerror}).") from None
    return calibration_from_text(text, model, path, detector)


def calibration_from_text(text: str, model: str, path: Path | str, detector: str = "") -> Calibration:
    """load_calibration's reading of a calibration file's text (also a collection's points, kept as this
    JSON in the gallery's catalog); path: what to name in an error; detector: whose shipped points fill in."""
    try:
        data = json.loads(text)
    except ValueError:
        raise CalibrationFileError(f"The calibration file {path} is not valid JSON.") from None
    models = data.get("models", {}) if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise CalibrationFileError(
            f'The calibration file {path} must be a JSON object with a "models" object in it.'
        )
    entry = models.get(model)
    if entry is None:
        return default_calibration(model, detector)
    if not isinstance(entry, dict) or not _valid(entry.get("threshold")):
        raise CalibrationFileError(
            f"The calibration file {path} holds no usable threshold for {model} "
            f"(a number above 0 and below {MAX_THRESHOLD:.4f} is needed)."
        )
    identification = entry.get(
        "identification_threshold", default_calibration(model, detector).identification_threshold
    )
    if not _valid(identification):
        raise CalibrationFileError(
            f"The calibration file {path} holds an identification threshold for {model} outside "
            f"(0, {MAX_THRESHOLD:.4f})."
        )
    raw_points = entry.get("points")
    points: list[OperatingPoint] = []
    for raw in raw_points if isinstance(raw_points, list) else []:
        point = OperatingPoint.from_dict(raw)
        if point is None:
            log.warning("calibration %s: skipping a malformed operating point for %s", path, model)
        else:
            points.append(point)
    name = entry.get("operating_point", "")
    chosen = next((p for p in points if p.name == name), None)
    return Calibration(
        chosen.threshold if chosen else float(entry["threshold"]),
        "calibrated",
        model,
        float(identification),
        chosen.name if chosen else "",
        tuple(points),
        OperatingPoint.from_dict(entry.get("identification_point")),
    )


def save_calibration(
    path: Path,
    model: str,
    threshold: float,
    details: dict[str, Any] | None = None,
    identification_threshold: float | None = None,
    points: Sequence[OperatingPoint] = (),
    operating_point: str = "",
    identification: OperatingPoint | None = None,
) -> None:
    """Stores the thresholds and points for `model` (atomically: temp file, then rename), keeping other
    models' entries. operating_point names the point whose threshold is `threshold` ("" for none)."""
    for value in (threshold, identification_threshold if identification_threshold is not None else threshold):
        if not _valid(value):
            raise ValueError(f"a threshold must lie in (0, {MAX_THRESHOLD:.4f}), not {value}")
    for point in points:
        if not _valid(point.threshold):
            raise ValueError(
                f"point {point.name}: a threshold must lie in (0, {MAX_THRESHOLD:.4f}), not {point.threshold}"
            )
    if operating_point and not any(p.name == operating_point for p in points):
        raise ValueError(f"operating point {operating_point!r} is not among the points saved")
    entry: dict[str, object] = {"threshold": float(threshold), **(details or {})}
    if identification_threshold is not None:
        entry["identification_threshold"] = float(identification_threshold)
    if points:
        entry["points"] = [p.as_dict() for p in points]
        entry["operating_point"] = operating_point
    if identification is not None:
        entry["identification_point"] = identification.as_dict()
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        data = {"models": {}}  # an unusable file is replaced: saving is how an operator repairs it
    data["models"][model] = entry
    text = json.dumps(data, indent=2, sort_keys=True)
    atomic_write(path, lambda f: f.write(text.encode()))


def _valid(value: object) -> TypeGuard[int | float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value < MAX_THRESHOLD
    )


class CalibrationSource:
    """The current calibration for a model, re-read when the file changes, so `eval --save-threshold`
    takes effect in running services without a restart.

    The first read raises CalibrationFileError for an unusable file, so a service refuses to start on
    it; a file damaged later is logged and the last good calibration kept (a running service never
    answers INTERNAL for it, nor falls back silently to other thresholds)."""

    def __init__(self, path: Path, model: str, detector: str = "") -> None:
        self._path = path
        self._model = model
        self._detector = detector
        self._stamp: tuple[int, int] | None = None
        self._current = default_calibration(model, detector)
        self._read_once = False

    def current(self) -> Calibration:
        try:
            stat = self._path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp or not self._read_once:
            try:
                self._current = load_calibration(self._path, self._model, self._detector)
            except CalibrationFileError as exc:
                if not self._read_once:
                    raise
                log.warning("%s Keeping the thresholds read before.", exc)
            self._stamp = stamp
            self._read_once = True
        return self._current

"""int8 FaceNet: quantized once from the cached fp32 export, checked against fp32, cached beside it.

onnxruntime's static quantization (QDQ, per-channel int8 weights, uint8 activations) runs FaceNet on
the CPU's VNNI units at about 3x the fp32 rate. Activation ranges come from the calibration set:
face crops cut by the detector from the 5-celebrity train pictures (built by `facerec fetch`, kept as
models/facenet-calibration.npz). A quantized model is used only when it passes the guard on the
held-out crops (the val pictures): every crop's cosine to fp32 ≥ 0.995, and pair accuracy over all
crops within 0.5 points of fp32. The verdict is recorded in models/facenet-int8.json with the sha256
of the weights, of the calibration set and of the int8 file, so the next start reuses it (or keeps
refusing) without quantizing again; a changed input or a damaged file means a new quantization.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from embedding_service.facenet import InferFn
from embedding_service.preprocessing import INPUT_SIZE, prepare_batch
from facerec.onnx import cpu_session, save_model

log = logging.getLogger(__name__)

INT8_CACHE_NAME = "facenet-int8.onnx"
RECORD_NAME = "facenet-int8.json"
CALIBRATION_SET_NAME = "facenet-calibration.npz"
MIN_COSINE = 0.995
MAX_ACCURACY_DROP = 0.005  # 0.5 points of pair accuracy
# The record's layout; a record of another version is ignored (quantized again).
RECORD_VERSION = 1
BATCH = 8

Quantizer = Callable[[bytes, NDArray[np.float32]], bytes]


class CalibrationSetError(RuntimeError):
    """The calibration set is missing, unreadable or malformed."""


@dataclass(frozen=True)
class CalibrationSet:
    """Face crops as the detector cuts them: crops (n, 160, 160, 3) uint8, labels (n,) identities,
    held_out (n,) True for the crops kept out of calibration (they check the quantized model)."""

    crops: NDArray[np.uint8]
    labels: NDArray[np.str_]
    held_out: NDArray[np.bool_]

    def __post_init__(self) -> None:
        n = len(self.crops)
        if self.crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3) or self.crops.dtype != np.uint8:
            raise CalibrationSetError(
                f"calibration crops must be (n, 160, 160, 3) uint8, not {self.crops.shape}"
            )
        if len(self.labels) != n or len(self.held_out) != n:
            raise CalibrationSetError("calibration crops, labels and held_out differ in length")
        if not self.held_out.any() or self.held_out.all():
            raise CalibrationSetError("the calibration set needs both calibration and held-out crops")

    def sha256(self) -> str:
        """A digest of the contents (not of the file): what the int8 model was calibrated and checked on."""
        digest = hashlib.sha256()
        for array in (self.crops, self.labels.astype("U"), self.held_out):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def save(self, path: Path) -> None:
        """Writes the set atomically (temp file, rename); npz members carry a CRC, checked when read."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, crops=self.crops, labels=self.labels.astype("U"), held_out=self.held_out)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> CalibrationSet:
        """Raises CalibrationSetError when the file is missing, damaged or not a calibration set."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(np.array(data["crops"]), np.array(data["labels"]), np.array(data["held_out"]))
        except FileNotFoundError:
            raise CalibrationSetError(f"no calibration set at {path} (`facerec fetch` builds it)") from None
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise CalibrationSetError(f"unreadable calibration set {path}: {exc}") from exc
        except Exception as exc:  # zipfile.BadZipFile on a failed CRC, among others
            raise CalibrationSetError(f"unreadable calibration set {path}: {exc}") from exc


@dataclass(frozen=True)
class Verdict:
    """The guard's findings: the lowest held-out cosine to fp32 and both balanced pair accuracies (all crops)."""

    accepted: bool
    min_cosine: float
    accuracy_fp32: float
    accuracy_int8: float
    reason: str = ""


def cache_paths(models_dir: Path) -> tuple[Path, Path, Path]:
    """(int8 model, its record, the calibration set) under models_dir."""
    return models_dir / INT8_CACHE_NAME, models_dir / RECORD_NAME, models_dir / CALIBRATION_SET_NAME


def quantize(fp32_model: bytes, calibration: NDArray[np.float32]) -> bytes:
    """Static QDQ quantization: int8 per-channel weights, uint8 activations ranged (min/max) on calibration."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type hints
        def __init__(self, name: str) -> None:
            self._batches = iter(
                [{name: calibration[i : i + BATCH]} for i in range(0, len(calibration), BATCH)]
            )

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory(prefix="facenet-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(fp32_model)
        name = cpu_session(fp32_model, 1, 1).get_inputs()[0].name
        quantize_static(
            str(source),
            str(target),
            Reader(name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        return target.read_bytes()


def guard(fp32: InferFn, int8: InferFn, calibration_set: CalibrationSet) -> Verdict:
    """Compares int8 with fp32: cosine per held-out crop, and same/different pair accuracy over all crops.

    Pair accuracy is `facerec eval`'s headline: the balanced accuracy (TAR + TRR) / 2 at each model's own
    best threshold, as thresholds are calibrated per model and precision. (Plain accuracy at the best
    balanced threshold is dominated by the 4-to-1 different pairs and jumps with the threshold.)
    """
    x = prepare_batch(list(calibration_set.crops))
    a, b = embed_all(fp32, x), embed_all(int8, x)
    if not np.isfinite(b).all():
        return Verdict(False, float("nan"), 0.0, 0.0, "the int8 model gives non-finite outputs")
    min_cosine = float(np.min(np.sum(a * b, axis=1)[calibration_set.held_out]))
    accuracy = [best_balanced_accuracy(vectors, calibration_set.labels) for vectors in (a, b)]
    reasons = []
    if not min_cosine >= MIN_COSINE:
        reasons.append(f"held-out cosine to fp32 {min_cosine:.4f} < {MIN_COSINE}")
    if not accuracy[1] >= accuracy[0] - MAX_ACCURACY_DROP:
        reasons.append(f"pair accuracy {accuracy[1]:.2%} against fp32 {accuracy[0]:.2%}")
    return Verdict(not reasons, min_cosine, accuracy[0], accuracy[1], "; ".join(reasons))


def embed_all(infer: InferFn, x: NDArray[np.float32]) -> NDArray[np.float32]:
    """(n, 160, 160, 3) standardized → (n, 128) unit rows, in batches of 8."""
    out = np.concatenate([np.asarray(infer(x[i : i + BATCH])) for i in range(0, len(x), BATCH)])
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    unit: NDArray[np.float32] = (out / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def best_balanced_accuracy(vectors: NDArray[np.float32], labels: NDArray[np.str_]) -> float:
    """Over all pairs of unit vectors (n, d) with labels (n,): the best (TAR + TRR) / 2 over every
    euclidean distance threshold, as `facerec eval` picks its threshold."""
    left, right = np.triu_indices(len(vectors), k=1)
    gram = np.clip(vectors.astype(np.float64) @ vectors.T.astype(np.float64), -1.0, 1.0)
    distance = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * gram[left, right]))
    same = labels[left] == labels[right]
    order = np.argsort(distance, kind="stable")
    distance, same = distance[order], same[order]
    # A threshold at a distance accepts every pair up to it: ties go together, so read the running
    # counts at the last pair of each distinct distance.
    last = np.r_[distance[1:] != distance[:-1], True]
    tar = np.cumsum(same)[last] / max(int(same.sum()), 1)
    far = np.cumsum(~same)[last] / max(int((~same).sum()), 1)
    return float(max(0.5, np.max((tar + 1.0 - far) / 2.0)))


def int8_model(
    fp32_path: Path,
    weights_sha256: str,
    intra_threads: int,
    inter_threads: int,
    quantizer: Quantizer = quantize,
) -> bytes | None:
    """The int8 FaceNet for the fp32 export at fp32_path: from the cache when its record matches the
    weights, the calibration set and the file's checksum, else quantized, guarded and cached.
    None (with a warning) when there is no calibration set or the guard refuses: fp32 is kept."""
    int8_path, record_path, set_path = cache_paths(fp32_path.parent)
    try:
        calibration_set = CalibrationSet.load(set_path)
    except CalibrationSetError as exc:
        log.warning("int8 FaceNet unavailable, using fp32: %s", exc)
        return None
    key = {
        "version": RECORD_VERSION,
        "weights_sha256": weights_sha256,
        "calibration_sha256": calibration_set.sha256(),
    }
    record = _read_record(record_path)
    if record and all(record.get(k) == v for k, v in key.items()):
        if not record.get("accepted"):
            log.warning("int8 FaceNet refused when it was built (%s); using fp32", record.get("reason", ""))
            return None
        data = int8_path.read_bytes() if int8_path.is_file() else b""
        if hashlib.sha256(data).hexdigest() == record.get("int8_sha256"):
            return data
        log.warning("cached int8 FaceNet %s does not match its checksum; quantizing again", int8_path)
    if not fp32_path.is_file():
        log.warning("int8 FaceNet unavailable, using fp32: no fp32 export at %s to quantize", fp32_path)
        return None
    fp32_data = fp32_path.read_bytes()
    log.info(
        "quantizing FaceNet to int8 on %d calibration crops; once", int((~calibration_set.held_out).sum())
    )
    calibration = prepare_batch(list(calibration_set.crops[~calibration_set.held_out]))
    try:
        data = quantizer(fp32_data, calibration)
        int8 = _infer(cpu_session(data, intra_threads, inter_threads))
    except Exception as exc:  # onnxruntime's quantizer and loader raise their own unexported types
        log.warning("int8 FaceNet could not be built (%s); using fp32", exc)
        return None
    verdict = guard(_infer(cpu_session(fp32_data, intra_threads, inter_threads)), int8, calibration_set)
    record = {**key, **asdict(verdict), "int8_sha256": hashlib.sha256(data).hexdigest()}
    if verdict.accepted:
        save_model(int8_path, data)
    _write_record(record_path, record)
    if not verdict.accepted:
        log.warning("int8 FaceNet refused by the guard (%s); using fp32", verdict.reason)
        return None
    log.info(
        "int8 FaceNet accepted: held-out cosine to fp32 ≥ %.4f, pair accuracy %.2f%% (fp32 %.2f%%)",
        verdict.min_cosine,
        100 * verdict.accuracy_int8,
        100 * verdict.accuracy_fp32,
    )
    return data


def _infer(session: Any) -> InferFn:
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def _read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable int8 record %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """Atomically, like the models; a failure only logs (the next start quantizes again)."""
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not record the int8 verdict in %s (%s)", path, exc)
        if tmp:
            Path(tmp).unlink(missing_ok=True)

"""int8 FaceNet: quantized once from the cached fp32 export, checked against fp32, cached beside it.

onnxruntime's static quantization (QDQ, int8 weights, uint8 activations) runs FaceNet on the CPU's
VNNI units at about 3x the fp32 rate. Activation ranges come from the calibration set: every face the
detector cuts from the project's pictures (built by `facerec fetch`, kept as
models/facenet-calibration.npz), less the held-out ones, each with seeded augmentations
(embedding_service.augment: mirror, light, blur, rescale, JPEG, grey, tilt), as `RECIPE` says.

A quantized model is used only when it passes the guard on crops calibration never saw: the held-out
pictures (whole pictures and one whole person) and augmentations of them. Every such crop's cosine to
fp32 must be ≥ 0.995, and pair accuracy over the data set's crops within 0.5 points of fp32. The
verdict is recorded in models/facenet-int8.json with the sha256 of the weights, of the calibration
set, of the recipe and of the int8 file, so the next start reuses it (or keeps refusing) without
quantizing again; a changed input, a changed recipe or a damaged file means a new quantization.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from embedding_service.augment import augmented
from embedding_service.facenet import InferFn
from embedding_service.preprocessing import INPUT_SIZE, prepare_batch
from facerec.onnx import ExportMissing, cpu_session, save_model

log = logging.getLogger(__name__)

INT8_CACHE_NAME = "facenet-int8.onnx"
RECORD_NAME = "facenet-int8.json"
CALIBRATION_SET_NAME = "facenet-calibration.npz"
MIN_COSINE = 0.995
MAX_ACCURACY_DROP = 0.005  # 0.5 points of pair accuracy
# The record's layout; a record of another version is ignored (quantized again).
RECORD_VERSION = 2
# The calibration set's layout: a set of another version (an older split) is built again by `facerec fetch`.
SET_VERSION = 2
BATCH = 8
# The face crops with this label are strangers: calibrated on and checked, but outside pair accuracy.
STRANGER = ""


class Method(enum.Enum):
    """How activation ranges are read from the calibration crops (onnxruntime's CalibrationMethod)."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class Part(enum.Enum):
    """A part of FaceNet that a recipe may leave in float (see fp32_nodes)."""

    # The first convolution, on the standardized picture itself: quantizing its input to 8 bits on one
    # range for all pictures adds noise to every later layer (per-image standardization leaves each
    # picture's pixels on its own grid). About 0.4% of FaceNet's work.
    HEAD = "head"
    # From the last pooling on: the 1792 features' projection to 128, its batch norm and the L2
    # normalization, whose 8-bit output would quantize the embedding itself. Well under 0.1% of the work.
    TAIL = "tail"
    # The residual stream: every Add, the Mul that feeds it and the Relu after it.
    STREAM = "stream"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the int8 model besides the weights and the crops; its digest keys the cache.
    The defaults are the shipped recipe (RECIPE).

    copies: augmented copies of each calibration crop (calibrated on with the originals);
    check_copies: augmented copies of each held-out crop the guard checks; fp32_parts: the parts of the
    network left in float (`fp32_nodes` names them); op_types: the operator types quantized (empty:
    every type onnxruntime can)."""

    method: Method = Method.PERCENTILE
    per_channel: bool = True
    percentile: float = 99.999
    copies: int = 1
    check_copies: int = 4
    seed: int = 28
    fp32_parts: tuple[Part, ...] = (Part.HEAD, Part.TAIL)
    op_types: tuple[str, ...] = ()

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "method": self.method.value,
            "fp32_parts": [p.value for p in self.fp32_parts],
            "op_types": list(self.op_types),
        }


# Chosen by bench/quantize_recipes.py on the lowest cosine to fp32 over held-out and augmented crops
# (the figures are in bench/RESULTS.md): percentile ranges (99.999th) beat min/max, whose ranges the
# augmented crops' outliers widen, and entropy; leaving the first convolution and the tail in float
# lifts the lowest cosine from ~0.995 to ~0.998. One augmented copy of each calibration crop does as
# well as three (within 0.0003) in half the build time.
RECIPE = Recipe()

Quantizer = Callable[[bytes, NDArray[np.float32]], bytes]


class CalibrationSetError(RuntimeError):
    """The calibration set is missing, unreadable, outdated or malformed."""


@dataclass(frozen=True)
class CalibrationSet:
    """Face crops as the detector cuts them: crops (n, 160, 160, 3) uint8, labels (n,) identities ("" for a
    stranger), held_out (n,) True for the crops kept out of calibration (they check the quantized model)."""

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
                np.savez(
                    f,
                    crops=self.crops,
                    labels=self.labels.astype("U"),
                    held_out=self.held_out,
                    version=np.array(SET_VERSION),
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> CalibrationSet:
        """Raises CalibrationSetError when the file is missing, damaged, outdated or not a calibration set."""
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["version"]) if "version" in data.files else 1
                if version != SET_VERSION:
                    raise CalibrationSetError(
                        f"calibration set {path} has layout {version}, not {SET_VERSION} (`facerec fetch` rebuilds it)"
                    )
                return cls(np.array(data["crops"]), np.array(data["labels"]), np.array(data["held_out"]))
        except CalibrationSetError:
            raise
        except FileNotFoundError:
            raise CalibrationSetError(f"no calibration set at {path} (`facerec fetch` builds it)") from None
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise CalibrationSetError(f"unreadable calibration set {path}: {exc}") from exc
        except Exception as exc:  # zipfile.BadZipFile on a failed CRC, among others
            raise CalibrationSetError(f"unreadable calibration set {path}: {exc}") from exc


@dataclass(frozen=True)
class CosineStats:
    """Cosines to fp32 over a group of crops: the lowest, the 1st percentile, the mean, and how many."""

    min: float
    p1: float
    mean: float
    n: int

    @classmethod
    def of(cls, cosines: NDArray[np.float32]) -> CosineStats:
        if not len(cosines):
            return cls(float("nan"), float("nan"), float("nan"), 0)
        values = cosines.astype(np.float64)
        return cls(float(values.min()), float(np.percentile(values, 1)), float(values.mean()), len(values))

    def line(self) -> str:
        return f"min {self.min:.4f} p1 {self.p1:.4f} mean {self.mean:.4f} (n={self.n})"


@dataclass(frozen=True)
class Verdict:
    """The guard's findings: the lowest cosine to fp32 over held-out and augmented crops, each group's
    figures, and both balanced pair accuracies (the data set's crops)."""

    accepted: bool
    min_cosine: float
    accuracy_fp32: float
    accuracy_int8: float
    reason: str = ""
    held_out: CosineStats = CosineStats(float("nan"), float("nan"), float("nan"), 0)
    augmented: CosineStats = CosineStats(float("nan"), float("nan"), float("nan"), 0)


def cache_paths(models_dir: Path) -> tuple[Path, Path, Path]:
    """(int8 model, its record, the calibration set) under models_dir."""
    return models_dir / INT8_CACHE_NAME, models_dir / RECORD_NAME, models_dir / CALIBRATION_SET_NAME


def calibration_crops(calibration_set: CalibrationSet, recipe: Recipe = RECIPE) -> NDArray[np.uint8]:
    """(m, 160, 160, 3) uint8: the calibration crops (never a held-out one), then recipe.copies
    augmentations of each (seeded)."""
    own = calibration_set.crops[~calibration_set.held_out]
    return np.concatenate([own, augmented(own, recipe.copies, recipe.seed)])


def check_crops(
    calibration_set: CalibrationSet, recipe: Recipe = RECIPE
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """(held-out crops, recipe.check_copies augmentations of each): what the guard compares with fp32.
    Seeded apart from calibration's augmentations."""
    held_out = calibration_set.crops[calibration_set.held_out]
    return held_out, augmented(held_out, recipe.check_copies, recipe.seed + 1)


def quantize(fp32_model: bytes, calibration: NDArray[np.float32], recipe: Recipe = RECIPE) -> bytes:
    """Static QDQ quantization: int8 weights (per channel or per tensor), uint8 activations ranged by
    recipe.method on calibration (n, 160, 160, 3) standardized, recipe.fp32_nodes left in float."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type hints
        """Batches of 8; onnxruntime reads it one batch at a time (set_range) so the histogram methods,
        which keep every activation of what they read, stay within a few hundred MB."""

        def __init__(self, name: str) -> None:
            self._batches = [{name: calibration[i : i + BATCH]} for i in range(0, len(calibration), BATCH)]
            self._next = iter(self._batches)

        def __len__(self) -> int:
            return len(self._batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._next = iter(self._batches[start_index:end_index])

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            return next(self._next, None)

    methods = {
        Method.MINMAX: CalibrationMethod.MinMax,
        Method.ENTROPY: CalibrationMethod.Entropy,
        Method.PERCENTILE: CalibrationMethod.Percentile,
    }
    with tempfile.TemporaryDirectory(prefix="facenet-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(fp32_model)
        name = cpu_session(fp32_model, 1, 1).get_inputs()[0].name
        reader = Reader(name)
        quantize_static(
            str(source),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=recipe.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[recipe.method],
            nodes_to_exclude=list(fp32_nodes(fp32_model, recipe.fp32_parts)),
            op_types_to_quantize=list(recipe.op_types) or None,
            extra_options={
                "CalibPercentile": recipe.percentile,
                # One batch at a time: ranges (or histograms) are merged batch by batch.
                "CalibStridedMinMax": 1,
            },
        )
        return target.read_bytes()


def fp32_nodes(fp32_model: bytes, parts: tuple[Part, ...]) -> tuple[str, ...]:
    """The names of the nodes of the serialized model that make up `parts` (see Part), in graph order."""
    import onnx

    nodes = onnx.load_from_string(fp32_model).graph.node
    names: list[str] = []
    if Part.HEAD in parts:
        names += [n.name for n in nodes if n.op_type == "Conv"][:1]
    if Part.TAIL in parts:
        pools = [i for i, n in enumerate(nodes) if n.op_type == "GlobalAveragePool"]
        names += [n.name for n in nodes[pools[-1] :]] if pools else []
    if Part.STREAM in parts:
        adds = [n for n in nodes if n.op_type == "Add"]
        add_inputs = {name for n in adds for name in n.input}
        add_outputs = {name for n in adds for name in n.output}
        names += [n.name for n in adds]
        names += [n.name for n in nodes if n.op_type == "Mul" and set(n.output) & add_inputs]
        names += [n.name for n in nodes if n.op_type == "Relu" and set(n.input) & add_outputs]
    return tuple(dict.fromkeys(names))


def guard(fp32: InferFn, int8: InferFn, calibration_set: CalibrationSet, recipe: Recipe = RECIPE) -> Verdict:
    """Compares int8 with fp32: cosine per held-out crop and per augmented held-out crop, and
    same/different pair accuracy over the data set's crops (strangers aside).

    Pair accuracy is `facerec eval`'s headline: the balanced accuracy (TAR + TRR) / 2 at each model's own
    best threshold, as thresholds are calibrated per model and precision. (Plain accuracy at the best
    balanced threshold is dominated by the 4-to-1 different pairs and jumps with the threshold.)
    """
    _, shifted = check_crops(calibration_set, recipe)
    known = calibration_set.labels != STRANGER
    x = prepare_batch(list(np.concatenate([calibration_set.crops, shifted])))
    a, b = embed_all(fp32, x), embed_all(int8, x)
    if not np.isfinite(b).all():
        return Verdict(False, float("nan"), 0.0, 0.0, "the int8 model gives non-finite outputs")
    cosine = np.sum(a * b, axis=1)
    n = len(calibration_set.crops)
    held_out_stats = CosineStats.of(cosine[:n][calibration_set.held_out])
    augmented_stats = CosineStats.of(cosine[n:])
    min_cosine = min(held_out_stats.min, augmented_stats.min) if len(shifted) else held_out_stats.min
    labels = calibration_set.labels[known]
    accuracy = [best_balanced_accuracy(vectors[:n][known], labels) for vectors in (a, b)]
    reasons = []
    if not min_cosine >= MIN_COSINE:
        reasons.append(f"cosine to fp32 on held-out and augmented crops {min_cosine:.4f} < {MIN_COSINE}")
    if not accuracy[1] >= accuracy[0] - MAX_ACCURACY_DROP:
        reasons.append(f"pair accuracy {accuracy[1]:.2%} against fp32 {accuracy[0]:.2%}")
    return Verdict(
        not reasons, min_cosine, accuracy[0], accuracy[1], "; ".join(reasons), held_out_stats, augmented_stats
    )


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
    quantizer: Quantizer | None = None,
    recipe: Recipe = RECIPE,
    build: bool = True,
    setting: str = "EMBEDDER_EXPORT_AT_START",
) -> bytes | None:
    """The int8 FaceNet for the fp32 export at fp32_path: from the cache when its record matches the
    weights, the calibration set, the recipe and the file's checksum, else quantized, guarded and cached.
    None (with a warning) when the guard refuses: fp32 is kept.
    quantizer: (fp32 model, calibration batch) → int8 model; by default `quantize` with the recipe.
    build=False (a serving start): nothing is quantized; a missing or outdated int8 model raises
    ExportMissing naming `setting` (`facerec export` builds it), and the record alone is trusted when the
    calibration set is not there to check it against."""
    int8_path, record_path, set_path = cache_paths(fp32_path.parent)
    key: dict[str, Any] = {
        "version": RECORD_VERSION,
        "weights_sha256": weights_sha256,
        "recipe_sha256": recipe.sha256(),
    }
    calibration_set: CalibrationSet | None = None
    try:
        calibration_set = CalibrationSet.load(set_path)
        key["calibration_sha256"] = calibration_set.sha256()
    except CalibrationSetError as exc:
        if build:
            log.warning("int8 FaceNet unavailable, using fp32: %s", exc)
            return None
    record = _read_record(record_path)
    if record and all(record.get(k) == v for k, v in key.items()):
        if not record.get("accepted"):
            log.warning("int8 FaceNet refused when it was built (%s); using fp32", record.get("reason", ""))
            return None
        data = int8_path.read_bytes() if int8_path.is_file() else b""
        if hashlib.sha256(data).hexdigest() == record.get("int8_sha256"):
            return data
        log.warning("cached int8 FaceNet %s does not match its checksum", int8_path)
    if not build or calibration_set is None:
        raise ExportMissing("int8 FaceNet", int8_path.parent, setting)
    if not fp32_path.is_file():
        log.warning("int8 FaceNet unavailable, using fp32: no fp32 export at %s to quantize", fp32_path)
        return None
    fp32_data = fp32_path.read_bytes()
    crops = calibration_crops(calibration_set, recipe)
    log.info("quantizing FaceNet to int8 on %d calibration crops (%s); once", len(crops), recipe.method.value)
    started = time.perf_counter()
    try:
        data = (quantizer or _quantizer(recipe))(fp32_data, prepare_batch(list(crops)))
        int8 = _infer(cpu_session(data, intra_threads, inter_threads))
    except Exception as exc:  # onnxruntime's quantizer and loader raise their own unexported types
        log.warning("int8 FaceNet could not be built (%s); using fp32", exc)
        return None
    verdict = guard(
        _infer(cpu_session(fp32_data, intra_threads, inter_threads)), int8, calibration_set, recipe
    )
    record = {
        **key,
        **asdict(verdict),
        "recipe": recipe.as_dict(),
        "build_s": round(time.perf_counter() - started, 1),
        "int8_sha256": hashlib.sha256(data).hexdigest(),
    }
    if verdict.accepted:
        save_model(int8_path, data)
    _write_record(record_path, record)
    if not verdict.accepted:
        log.warning("int8 FaceNet refused by the guard (%s); using fp32", verdict.reason)
        return None
    log.info(
        "int8 FaceNet accepted: cosine to fp32 on held-out crops %s, on augmented ones %s; "
        "pair accuracy %.2f%% (fp32 %.2f%%)",
        verdict.held_out.line(),
        verdict.augmented.line(),
        100 * verdict.accuracy_int8,
        100 * verdict.accuracy_fp32,
    )
    return data


def _quantizer(recipe: Recipe) -> Quantizer:
    return lambda fp32_model, calibration: quantize(fp32_model, calibration, recipe)


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

"""FaceNet on onnxruntime: exported once from the Keras model with tf2onnx, cached next to the weights.

The cache (models/facenet.onnx) records the sha256 of the h5 it came from; a different h5 means a
new export. The export is compared with Keras on a seeded batch and refused (not cached) when they
differ by more than 1e-5; a start that finds a matching cache needs neither Keras nor TensorFlow.
tf2onnx is needed only to export, onnxruntime to run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from embedding_service.preprocessing import INPUT_SIZE
from facerec.assets import sha256_of
from facerec.onnx import MAX_ABS_DIFF, OnnxExportError, cpu_session, read_model, save_model

if TYPE_CHECKING:
    from embedding_service.config import Settings
    from embedding_service.facenet import InferFn, KerasModel

log = logging.getLogger(__name__)

OPSET = 17
CACHE_NAME = "facenet.onnx"
SHA_KEY = "facerec.source_sha256"


def cache_path(weights_path: Path) -> Path:
    """Where the export of weights_path is kept: beside it, as facenet.onnx."""
    return weights_path.parent / CACHE_NAME


def cached_infer(settings: Settings) -> InferFn | None:
    """An onnxruntime session of the cached export when it was made from settings.weights_path, else None."""
    path = cache_path(settings.weights_path)
    data = read_model(path)
    if data is None:
        return None
    try:
        session = cpu_session(data, settings.intra_threads, settings.inter_threads)
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        log.warning("ignoring unreadable ONNX cache %s: %s", path, exc)
        return None
    if session.get_modelmeta().custom_metadata_map.get(SHA_KEY, "") != sha256_of(settings.weights_path):
        return None
    return _infer_fn(session)


def int8_infer(settings: Settings) -> InferFn | None:
    """The guarded int8 model quantized from the cached export (embedding_service.quantize), or None when
    the guard refused it. Quantized here only when settings.export_at_start allows; else ExportMissing."""
    from embedding_service.quantize import int8_model

    data = int8_model(
        cache_path(settings.weights_path),
        sha256_of(settings.weights_path),
        settings.intra_threads,
        settings.inter_threads,
        build=settings.export_at_start,
        setting=settings.key("export_at_start"),
    )
    if data is None:
        return None
    return _infer_fn(cpu_session(data, settings.intra_threads, settings.inter_threads))


def onnx_infer(model: KerasModel, settings: Settings) -> InferFn:
    """An onnxruntime session for `model` (its weights loaded), from the cache when it matches settings.weights_path, else
    exported, checked against Keras and cached."""
    infer = cached_infer(settings)
    if infer is not None:
        return infer
    log.info("exporting FaceNet to ONNX (opset %d); this takes a while once", OPSET)
    data = export(model, sha256_of(settings.weights_path))
    infer = _infer_fn(cpu_session(data, settings.intra_threads, settings.inter_threads))
    check_against_keras(infer, model)
    save_model(cache_path(settings.weights_path), data)
    return infer


def export(model: KerasModel, source_sha256: str) -> bytes:
    """The serialized ONNX model of `model` (batch dimension free), tagged with the h5's sha256."""
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as exc:
        raise OnnxExportError(
            "The onnxruntime runtime needs tf2onnx to export FaceNet once (pip install tf2onnx==1.17.0)."
        ) from exc
    spec = (tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    entry = proto.metadata_props.add()
    entry.key, entry.value = SHA_KEY, source_sha256
    data: bytes = proto.SerializeToString()
    return data


def source_sha(path: Path) -> str:
    """The h5 sha256 recorded in an exported model, or "" when it has none or cannot be read."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        log.warning("ignoring unreadable ONNX cache %s: %s", path, exc)
        return ""
    return str(session.get_modelmeta().custom_metadata_map.get(SHA_KEY, ""))


def check_against_keras(infer: InferFn, model: KerasModel, n: int = 4) -> float:
    """Max abs difference between ONNX and Keras on n seeded inputs; raises OnnxExportError above 1e-5."""
    x = np.random.default_rng(7).standard_normal((n, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32)
    diff = float(np.abs(infer(x) - np.asarray(model(x, training=False))).max())
    if not diff <= MAX_ABS_DIFF:
        raise OnnxExportError(f"The ONNX model differs from Keras by {diff:.2e} (limit {MAX_ABS_DIFF:.0e}).")
    log.info("ONNX FaceNet matches Keras within %.1e", diff)
    return diff


def _infer_fn(session: Any) -> InferFn:  # an onnxruntime.InferenceSession (untyped)
    name = session.get_inputs()[0].name

    def infer(batch: NDArray[np.float32]) -> NDArray[np.float32]:
        out: NDArray[np.float32] = session.run(None, {name: batch})[0]
        return out

    return infer

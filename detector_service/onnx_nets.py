"""mtcnn's P-Net, R-Net and O-Net as plain functions, run by TensorFlow (mtcnn's Keras models) or onnxruntime.

The ONNX models are exported once from mtcnn's own Keras models with tf2onnx and cached as
FACEREC_HOME/models/mtcnn-<mtcnn version>-<net>.onnx (written atomically). The export is checked:
each network's outputs must equal Keras within 1e-5 on seeded inputs, or nothing is cached. A later
start finds the files and never builds the Keras models.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detector_service import rewrites
from facerec.onnx import MAX_ABS_DIFF, OnnxExportError, cpu_session, read_model, save_model

log = logging.getLogger(__name__)

NET_NAMES = ("pnet", "rnet", "onet")
# Input shapes (batch, height, width, channels); P-Net is fully convolutional.
INPUT_SHAPES: dict[str, list[int | None]] = {
    "pnet": [None, None, None, 3],
    "rnet": [None, 24, 24, 3],
    "onet": [None, 48, 48, 3],
}
STAGE_CLASSES = {"pnet": "StagePNet", "rnet": "StageRNet", "onet": "StageONet"}
OPSET = 17
VERSION_KEY = "facerec.mtcnn_version"

# (n, h, w, 3) float32 normalized pixels → the network's outputs as numpy arrays, in Keras's order.
NetFn = Callable[[NDArray[np.float32]], tuple[NDArray[np.float32], ...]]


@dataclass(frozen=True)
class Nets:
    """The three networks. pnet → (box regression (n, h', w', 4), face probability (n, h', w', 2));
    rnet → (offsets (n, 4), scores (n, 2)); onet → (offsets (n, 4), landmarks (n, 10), scores (n, 2))."""

    pnet: NetFn
    rnet: NetFn
    onet: NetFn
    runtime: str


def mtcnn_version() -> str:
    return importlib.metadata.version("mtcnn")


def cache_paths(models_dir: Path) -> dict[str, Path]:
    """Where each network's export is kept, named after the mtcnn version whose weights it holds."""
    version = mtcnn_version()
    return {name: Path(models_dir) / f"mtcnn-{version}-{name}.onnx" for name in NET_NAMES}


def keras_models(mtcnn: Any | None = None) -> dict[str, Any]:
    """mtcnn's three Keras models by name (builds mtcnn.MTCNN from its packaged weights when not given)."""
    if mtcnn is None:
        from mtcnn import MTCNN

        mtcnn = MTCNN()
    stages = {type(stage).__name__: stage for stage in mtcnn.stages}
    return {name: stages[cls]._model for name, cls in STAGE_CLASSES.items()}


def keras_nets(models: dict[str, Any]) -> Nets:
    """The Keras models called eagerly, as mtcnn calls them, with numpy outputs."""

    def wrap(model: Any) -> NetFn:
        def run(x: NDArray[np.float32]) -> tuple[NDArray[np.float32], ...]:
            return tuple(np.asarray(out) for out in model(x))

        return run

    return Nets(wrap(models["pnet"]), wrap(models["rnet"]), wrap(models["onet"]), "tensorflow")


def onnx_nets(
    models_dir: Path,
    intra_threads: int = 1,
    inter_threads: int = 1,
    models: Callable[[], dict[str, Any]] = keras_models,
) -> Nets:
    """onnxruntime sessions of the three networks: from the cache when all three files are there for this
    mtcnn version (no Keras model is built), else exported from `models()`, checked and cached."""
    paths = cache_paths(models_dir)
    cached = {name: _read_cached(path) for name, path in paths.items()}
    data = {name: blob for name, blob in cached.items() if blob is not None}
    if len(data) < len(cached):
        log.info("exporting mtcnn %s's networks to ONNX (opset %d); once", mtcnn_version(), OPSET)
        data = export_all(models(), paths)
    # No arena for P-Net: its input size follows each picture, and an arena would keep the largest one's
    # memory. R-Net and O-Net see runs of a few fixed-size patches (detector.RNET_CHUNK): an arena reuses
    # their buffers instead of mapping fresh pages each call (30% less CPU a patch). The PReLUs are
    # rewritten at load (detector_service.rewrites: the same outputs, less CPU), so the cached files stay the export.
    sessions = {
        name: cpu_session(rewrites.faster(blob), intra_threads, inter_threads, arena=name != "pnet")
        for name, blob in data.items()
    }
    pnet, rnet, onet = (_infer_fn(sessions[name]) for name in NET_NAMES)
    return Nets(pnet, rnet, onet, runtime="onnxruntime")


def export_all(models: dict[str, Any], paths: dict[str, Path]) -> dict[str, bytes]:
    """Exports, checks against Keras, and caches each network. Raises OnnxExportError (nothing cached)."""
    data = {name: export(models[name], name) for name in NET_NAMES}
    for name in NET_NAMES:
        check_against_keras(_infer_fn(cpu_session(data[name], 1, 1)), models[name], name)
    for name in NET_NAMES:
        save_model(paths[name], data[name])
    return data


def export(model: Any, name: str) -> bytes:
    """The serialized ONNX model of one mtcnn network (batch and, for P-Net, picture size left free)."""
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as exc:
        raise OnnxExportError(
            "The onnxruntime detector needs tf2onnx to export mtcnn's networks once (pip install tf2onnx)."
        ) from exc
    spec = (tf.TensorSpec(INPUT_SHAPES[name], tf.float32, name="input"),)

    @tf.function(input_signature=spec)  # type: ignore[untyped-decorator]  # tensorflow is untyped
    def forward(x: Any) -> Any:
        return tuple(model(x))

    proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=OPSET)
    entry = proto.metadata_props.add()
    entry.key, entry.value = VERSION_KEY, mtcnn_version()
    data: bytes = proto.SerializeToString()
    return data


def check_against_keras(infer: NetFn, model: Any, name: str, n: int = 3) -> float:
    """Max abs difference between ONNX and Keras on seeded inputs; raises OnnxExportError above 1e-5."""
    rng = np.random.default_rng(7)
    side = {"pnet": (61, 47), "rnet": (24, 24), "onet": (48, 48)}[name]
    x = rng.uniform(-1.0, 1.0, size=(n, *side, 3)).astype(np.float32)
    ours = infer(x)
    theirs = [np.asarray(out) for out in model(x)]
    if len(ours) != len(theirs):
        raise OnnxExportError(f"The ONNX {name} has {len(ours)} outputs; Keras has {len(theirs)}.")
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs, strict=True))
    if not diff <= MAX_ABS_DIFF:
        raise OnnxExportError(f"The ONNX {name} differs from Keras by {diff:.2e} (limit {MAX_ABS_DIFF:.0e}).")
    log.info("ONNX %s matches Keras within %.1e", name, diff)
    return diff


def _read_cached(path: Path) -> bytes | None:
    """The cached model when it is there and was exported from this mtcnn version, else None."""
    data = read_model(path)
    if data is None:
        return None
    try:
        import onnx

        model = onnx.load_from_string(data)
        version = {p.key: p.value for p in model.metadata_props}.get(VERSION_KEY, "")
    except Exception as exc:  # a truncated or foreign file: export again
        log.warning("ignoring unreadable ONNX cache %s: %s", path, exc)
        return None
    return data if version == mtcnn_version() else None


def _infer_fn(session: Any) -> NetFn:
    name = session.get_inputs()[0].name

    def infer(batch: NDArray[np.float32]) -> tuple[NDArray[np.float32], ...]:
        return tuple(session.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)}))

    return infer

"""FaceNet as a function: RGB face crops in, (n, 128) float32 unit vectors out. Pure: no grpc."""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from embedding_service.facenet import DIMENSION, MODEL_NAME, InferFn, KerasModel, build_facenet
from embedding_service.preprocessing import DESCRIPTION, INPUT_SIZE, prepare_batch
from facerec.errors import InvalidInput, ModelFault
from facerec.onnx import ExportMissing
from facerec.timings import Timings

if TYPE_CHECKING:
    from embedding_service.config import Settings

log = logging.getLogger(__name__)

# (n, 160, 160, 3) float32 standardized → (n, 128) float32 model output.


def rgb_crop(data: bytes, width: int, height: int) -> NDArray[np.uint8]:
    """Raw 8-bit RGB bytes (row-major, no padding) → (height, width, 3) uint8. Raises InvalidInput."""
    if width <= 0 or height <= 0:
        raise InvalidInput(f"The crop is {width}x{height} pixels; width and height must be positive.")
    expected = width * height * 3
    if len(data) != expected:
        raise InvalidInput(
            f"The crop holds {len(data)} bytes; {width}x{height} RGB needs exactly {expected} bytes."
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)


def unit_rows(vectors: NDArray[np.generic]) -> NDArray[np.float32]:
    """(n, d) → (n, d) float32 rows of unit euclidean length (a zero row stays zero)."""
    y = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    unit: NDArray[np.float32] = (y / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)
    return unit


class Embedder:
    """Embeds batches of face crops with FaceNet.

    The model's runtime is hidden behind `infer`; the embedder owns preprocessing (resize to
    160x160, per-image standardization) and the final normalization to unit length in float32.
    Not thread-safe: one thread (the batcher's worker) calls embed_prepared.
    """

    dimension = DIMENSION
    input_size = INPUT_SIZE
    preprocessing = DESCRIPTION

    def __init__(self, infer: InferFn, runtime: str, precision: str = "fp32") -> None:
        self._infer = infer
        self.runtime = runtime
        self.precision = precision
        # Vectors of another precision must not mix with fp32 ones in a gallery: the name tells them
        # apart (a gallery holds one model's vectors), and calibration.json keeps thresholds per name.
        self.name = model_name(precision)
        # Seconds in preprocessing and in the model, faces and model calls, since start; logged at exit.
        self.timings = Timings()
        weakref.finalize(self, self.timings.log, log)

    @classmethod
    def load(cls, settings: Settings) -> Embedder:
        """Builds FaceNet from settings.weights_path and wraps it in the runtime settings.runtime names.

        onnxruntime loads the export `facerec export` made of these weights: it builds no Keras model and
        imports no TensorFlow. Without one it raises ExportMissing (one sentence), unless
        settings.export_at_start lets it export here. settings.precision int8 (onnxruntime only) serves the
        guarded int8 model, or fp32 where the guard refused it when it was built.
        """
        if settings.runtime == "onnxruntime":
            from embedding_service.onnx_runtime import cached_infer

            infer = cached_infer(settings)
            if infer is not None:
                return cls._with_precision(infer, settings)
            if not settings.export_at_start:
                raise ExportMissing("FaceNet", settings.weights_path.parent, settings.key("export_at_start"))
        from facerec.tfconfig import pin_threads, quiet_tensorflow

        quiet_tensorflow()
        pin_threads(settings.intra_threads, settings.inter_threads)
        model = build_facenet(settings.weights_path)
        if settings.runtime == "onnxruntime":
            from embedding_service.onnx_runtime import onnx_infer

            return cls._with_precision(onnx_infer(model, settings), settings)
        if settings.precision != "fp32":
            log.warning("int8 FaceNet needs the onnxruntime runtime; serving fp32 on %s", settings.runtime)
        return cls.from_keras(model)

    @classmethod
    def _with_precision(cls, fp32: InferFn, settings: Settings) -> Embedder:
        if settings.precision == "int8":
            from embedding_service.onnx_runtime import int8_infer

            int8 = int8_infer(settings)
            if int8 is not None:
                return cls(int8, "onnxruntime", "int8")
        return cls(fp32, "onnxruntime")

    @classmethod
    def from_keras(cls, model: KerasModel) -> Embedder:
        """Runs the Keras model through one tf.function with a fixed input signature (no per-call retracing)."""
        return cls(keras_infer(model), "tensorflow")

    def prepare(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """crops: (h, w, 3) uint8 RGB each, any size → (n, 160, 160, 3) float32 standardized."""
        for crop in crops:
            if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] == 0 or crop.shape[1] == 0:
                raise InvalidInput(f"A crop must be (height, width, 3) RGB with pixels, not {crop.shape}.")
        start = time.perf_counter()
        batch = prepare_batch([np.asarray(c, dtype=np.uint8) for c in crops], self.input_size)
        self.timings.add(prepare_s=time.perf_counter() - start)  # on the callers' threads
        return batch

    def embed_prepared(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """batch: (n, 160, 160, 3) float32 from prepare() → (n, 128) float32 unit vectors."""
        if len(batch) == 0:
            return np.empty((0, self.dimension), dtype=np.float32)
        start = time.perf_counter()
        out = np.asarray(self._infer(np.ascontiguousarray(batch, dtype=np.float32)))
        self.timings.add(infer_s=time.perf_counter() - start, faces=len(batch), model_calls=1)
        if out.shape != (len(batch), self.dimension):
            raise RuntimeError(f"the model gave shape {out.shape} for a batch of {len(batch)}")
        if not np.isfinite(out).all():
            log.error("the embedding model gave non-finite values for a batch of %s faces", len(batch))
            raise ModelFault("The embedding model gave non-finite values; the server's model is faulty.")
        return unit_rows(out)

    def embed(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """crops: (h, w, 3) uint8 RGB each → (n, 128) float32 unit vectors, in order."""
        return self.embed_prepared(self.prepare(crops))


def model_name(precision: str) -> str:
    """The name vectors of this precision go by: "facenet-keras-128" (fp32) or "facenet-keras-128-int8"."""
    return MODEL_NAME if precision == "fp32" else f"{MODEL_NAME}-{precision}"


def keras_infer(model: KerasModel) -> InferFn:
    """model(x, training=False) inside a tf.function traced once for any batch size.

    model.predict builds a dataset and a loop per call (~70 ms for one face); this does not.
    """
    import tensorflow as tf

    signature = [tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32)]

    @tf.function(input_signature=signature)  # type: ignore[untyped-decorator]  # tensorflow is untyped
    def run(x: Any) -> Any:
        return model(x, training=False)

    def infer(batch: NDArray[np.float32]) -> NDArray[np.float32]:
        out: NDArray[np.float32] = run(tf.constant(batch)).numpy()
        return out

    return infer

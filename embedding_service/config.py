"""The embedding service's settings: read once from EMBEDDER_* variables, overridable by the same CLI flags."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from facerec.assets import Assets, facerec_home
from facerec.settings import RUNTIMES, MiB, ServerSettings, SettingError, setting

DEFAULT_PORT = 50052
PRECISIONS = ("int8", "fp32")
# The models one embedder can serve, by the names their vectors go by (embedding_service.embedder.model_name),
# and each one's arithmetic.
MODEL_PRECISIONS = {"facenet-keras-128": "fp32", "facenet-keras-128-int8": "int8"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(ServerSettings):
    """How the embedder listens, batches, limits requests and runs FaceNet.

    batching=False serves every face in its own model call (max_batch 1): the baseline the bench
    compares batching against.
    """

    PREFIX: ClassVar[str] = "EMBEDDER_"

    weights_path: Path = setting(help="facenet_keras.h5 (default FACEREC_HOME's)", name="weights")
    calibration_path: Path = setting(help="calibration.json (default FACEREC_HOME's)", name="calibration")
    port: int = setting(DEFAULT_PORT, "port to listen on; 0 picks a free one")
    max_batch: int = setting(32, "faces per model call")
    max_delay_ms: float = setting(3.0, "wait this long for a batch to fill")
    max_queue: int = setting(256, "waiting calls; beyond it RESOURCE_EXHAUSTED")
    batching: bool = setting(True, "merge concurrent calls (--no-batching: one face per model call)")
    max_faces_per_request: int = setting(64, "faces one Embed call may carry")
    max_request_bytes: int = setting(16 * MiB, "largest request")
    # An encoded face is decoded to pixels: a small PNG can hold a huge flat picture, so bound its area.
    max_face_pixels: int = setting(4_000_000, "largest decoded encoded face (width x height)")
    # Decoding costs by the pixels: bound what one call may ask for, and what all calls decode at once.
    max_request_pixels: int = setting(
        32_000_000, "decoded pixels of all encoded faces in one Embed call; beyond it RESOURCE_EXHAUSTED"
    )
    max_pixels_in_flight: int = setting(
        16_000_000, "pixels of encoded faces being decoded by all calls at once; beyond it RESOURCE_EXHAUSTED"
    )
    max_workers: int = setting(32, "gRPC worker threads")
    intra_threads: int = setting(2, "model intra-op threads (0 lets TensorFlow choose)")
    inter_threads: int = setting(1, "model inter-op threads (0 lets TensorFlow choose)")
    # FaceNet on onnxruntime (exported once, checked against Keras at export): ~1.6x faster than TensorFlow.
    runtime: str = setting("onnxruntime", "inference runtime", choices=RUNTIMES)
    # int8 (onnxruntime, guarded against fp32 when built: embedding_service.quantize) ~3x faster than fp32.
    precision: str = setting(
        "int8", "FaceNet's arithmetic: int8 (guarded, else fp32) or fp32", choices=PRECISIONS
    )
    # Several models in one process (Triton's model repository idea): each request names its model, so
    # collections pinned to fp32 and to int8 share one embedder. The default model (requests naming none)
    # is EMBEDDER_PRECISION's when it is listed, else the first listed.
    models: str = setting(
        ",".join(MODEL_PRECISIONS), f"models served, comma-separated (of {', '.join(MODEL_PRECISIONS)})"
    )
    # The services load the files `facerec export` writes; exporting at start needs TensorFlow (the export
    # extra) and, from the h5, ~27 s and a 6.8 GB peak: for development only, never in a memory-limited pod.
    export_at_start: bool = setting(
        False, "export FaceNet to ONNX (and quantize it) at start when `facerec export` has not"
    )

    @classmethod
    def env_defaults(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        """Weights and calibration default to FACEREC_HOME's files."""
        assets = Assets(facerec_home(environ))
        return {"weights_path": assets.facenet_h5, "calibration_path": assets.threshold_file}

    def check(self) -> None:
        super().check()
        if self.max_batch < 1:
            raise SettingError("max_batch must be at least 1.")
        if self.max_delay_ms < 0:
            raise SettingError("max_delay_ms must not be negative.")
        if min(self.max_queue, self.max_faces_per_request, self.max_request_bytes, self.max_face_pixels) < 1:
            raise SettingError(
                "max_queue, max_faces_per_request, max_request_bytes and max_face_pixels must be positive."
            )
        if min(self.max_request_pixels, self.max_pixels_in_flight) < self.max_face_pixels:
            raise SettingError(
                f"{self.key('max_request_pixels')} and {self.key('max_pixels_in_flight')} must be at least "
                f"{self.key('max_face_pixels')} ({self.max_face_pixels}), or no face of that size could pass."
            )
        if self.intra_threads < 0 or self.inter_threads < 0:
            raise SettingError("TensorFlow thread counts must not be negative (0 lets TensorFlow choose).")
        if self.runtime not in RUNTIMES:
            raise SettingError(f"runtime must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}.")
        if self.precision not in PRECISIONS:
            raise SettingError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}.")
        unknown = [name for name in self.model_names if name not in MODEL_PRECISIONS]
        if unknown or not self.model_names:
            raise SettingError(
                f"{self.key('models')} must name models among {', '.join(MODEL_PRECISIONS)}, "
                f"not {self.models!r}."
            )

    @property
    def model_names(self) -> list[str]:
        """The models to serve, the default first, each once."""
        listed = list(dict.fromkeys(name.strip() for name in self.models.split(",") if name.strip()))
        preferred = next((n for n, p in MODEL_PRECISIONS.items() if p == self.precision), "")
        if preferred in listed:
            listed.remove(preferred)
            listed.insert(0, preferred)
        return listed

    @property
    def effective_max_batch(self) -> int:
        """The largest model call the batcher forms: 1 when batching is off."""
        return self.max_batch if self.batching else 1

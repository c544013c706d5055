"""The embedding service's settings: read once from EMBEDDER_* variables, overridable by the same CLI flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from facerec.assets import Assets, facerec_home
from facerec.security import TlsSettings
from facerec.settings import RUNTIMES, MiB, SettingError, env_bool, env_float, env_int, env_str

DEFAULT_PORT = 50052


@dataclass(frozen=True)
class Settings:
    """How the embedder listens, batches, limits requests and runs FaceNet.

    batching=False serves every face in its own model call (max_batch 1): the baseline the bench
    compares batching against.
    """

    weights_path: Path
    calibration_path: Path
    host: str = "[::]"
    port: int = DEFAULT_PORT
    max_batch: int = 32
    max_delay_ms: float = 3.0
    max_queue: int = 256
    batching: bool = True
    max_faces_per_request: int = 64
    max_request_bytes: int = 16 * MiB
    # An encoded face is decoded to pixels: a small PNG can hold a huge flat picture, so bound its area.
    max_face_pixels: int = 4_000_000
    max_workers: int = 32
    intra_threads: int = 2
    inter_threads: int = 1
    # FaceNet on onnxruntime (exported once, checked against Keras at export): ~1.6x faster than TensorFlow.
    runtime: str = "onnxruntime"
    # TLS (PEM paths): cert and key turn it on; client_ca also requires client certificates.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Bearer tokens (`token role` per line, or comma-separated inline): either turns authentication on.
    tokens_file: str = ""
    tokens: str = ""
    # Prometheus /metrics on this port; 0 = off.
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise SettingError("max_batch must be at least 1.")
        if self.max_delay_ms < 0:
            raise SettingError("max_delay_ms must not be negative.")
        if min(self.max_queue, self.max_faces_per_request, self.max_request_bytes, self.max_face_pixels) < 1:
            raise SettingError(
                "max_queue, max_faces_per_request, max_request_bytes and max_face_pixels must be positive."
            )
        if self.intra_threads < 0 or self.inter_threads < 0:
            raise SettingError("TensorFlow thread counts must not be negative (0 lets TensorFlow choose).")
        if self.runtime not in RUNTIMES:
            raise SettingError(f"runtime must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}.")
        if not 0 <= self.metrics_port <= 65535:
            raise SettingError(f"EMBEDDER_METRICS_PORT must be between 0 and 65535, not {self.metrics_port}.")
        self.tls.checked("EMBEDDER_")

    @property
    def tls(self) -> TlsSettings:
        return TlsSettings(self.tls_cert, self.tls_key, self.tls_client_ca)

    @property
    def effective_max_batch(self) -> int:
        """The largest model call the batcher forms: 1 when batching is off."""
        return self.max_batch if self.batching else 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Settings from EMBEDDER_* variables; weights and calibration default to FACEREC_HOME's files."""
        assets = Assets(facerec_home(environ))
        d = cls(weights_path=assets.facenet_h5, calibration_path=assets.threshold_file)
        return cls(
            weights_path=Path(env_str(environ, "EMBEDDER_WEIGHTS", str(d.weights_path))).expanduser(),
            calibration_path=Path(
                env_str(environ, "EMBEDDER_CALIBRATION", str(d.calibration_path))
            ).expanduser(),
            host=env_str(environ, "EMBEDDER_HOST", d.host),
            port=env_int(environ, "EMBEDDER_PORT", d.port),
            max_batch=env_int(environ, "EMBEDDER_MAX_BATCH", d.max_batch),
            max_delay_ms=env_float(environ, "EMBEDDER_MAX_DELAY_MS", d.max_delay_ms),
            max_queue=env_int(environ, "EMBEDDER_MAX_QUEUE", d.max_queue),
            batching=env_bool(environ, "EMBEDDER_BATCHING", d.batching),
            max_faces_per_request=env_int(environ, "EMBEDDER_MAX_FACES_PER_REQUEST", d.max_faces_per_request),
            max_request_bytes=env_int(environ, "EMBEDDER_MAX_REQUEST_BYTES", d.max_request_bytes),
            max_face_pixels=env_int(environ, "EMBEDDER_MAX_FACE_PIXELS", d.max_face_pixels),
            max_workers=env_int(environ, "EMBEDDER_MAX_WORKERS", d.max_workers),
            intra_threads=env_int(environ, "EMBEDDER_INTRA_THREADS", d.intra_threads),
            inter_threads=env_int(environ, "EMBEDDER_INTER_THREADS", d.inter_threads),
            runtime=env_str(environ, "EMBEDDER_RUNTIME", d.runtime),
            tls_cert=env_str(environ, "EMBEDDER_TLS_CERT", d.tls_cert),
            tls_key=env_str(environ, "EMBEDDER_TLS_KEY", d.tls_key),
            tls_client_ca=env_str(environ, "EMBEDDER_TLS_CLIENT_CA", d.tls_client_ca),
            tokens_file=env_str(environ, "EMBEDDER_TOKENS_FILE", d.tokens_file),
            tokens=env_str(environ, "EMBEDDER_TOKENS", d.tokens),
            metrics_port=env_int(environ, "EMBEDDER_METRICS_PORT", d.metrics_port),
        )

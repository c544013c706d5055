"""The gallery's settings: read once from GALLERY_* variables, overridable by the same CLI flags.

Addresses of the detector and the embedder are one address, a resolver URI ("dns:///detector:50051",
every record of the name) or a comma list of literal IPs ("127.0.0.1:5001,127.0.0.1:5002"); calls are
spread over all of them with gRPC's round_robin policy (gallery/clients.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from facerec.assets import Assets, facerec_home
from facerec.security import TlsSettings
from facerec.server import ServerOptions
from facerec.settings import MiB, SettingError, env_float, env_int, env_str
from gallery.gallery import GalleryOptions
from gallery.ports import DetectOptions

DEFAULT_PORT = 50053
# The model the gallery assumes when the embedder cannot be asked at start (it is checked on every embed).
DEFAULT_MODEL = "facenet-keras-128"


@dataclass(frozen=True)
class Settings:
    """How the gallery listens, where its store and the two services are, and how it decides.

    threshold 0 = Verify's calibrated threshold for the model (FACEREC_HOME/calibration.json), else 1.20;
    identification_threshold 0 = Identify's calibrated one, else 1.06.
    model "" = ask the embedder at start (DEFAULT_MODEL when it is down then).
    metrics_port 0 = no metrics endpoint.
    """

    store: Path
    calibration_path: Path
    host: str = "[::]"
    port: int = DEFAULT_PORT
    detector: str = "127.0.0.1:50051"
    embedder: str = "127.0.0.1:50052"
    model: str = ""
    threshold: float = 0.0
    identification_threshold: float = 0.0
    svm_max_identities: int = 1000
    ivf_min_size: int = 50_000
    nprobe: int = 0
    downstream_timeout_s: float = 30.0
    detect_images_per_call: int = 16
    embed_faces_per_call: int = 64
    max_images_per_enroll: int = 64
    max_embeddings_per_enroll: int = 1000
    enroll_min_confidence: float = 0.0
    enroll_min_face_px: float = 0.0
    max_workers: int = 16
    max_concurrent_rpcs: int = 64
    max_message_bytes: int = 64 * MiB
    grace_s: float = 5.0
    metrics_port: int = 0
    # Save the index this often when the store changed (0 = only at shutdown): a start after a crash
    # then loads it instead of rebuilding from the store.
    index_checkpoint_s: float = 300.0
    # TLS (PEM paths): cert and key turn it on; client_ca also requires client certificates.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Bearer tokens (`token role` per line, or comma-separated inline): either turns authentication on.
    tokens_file: str = ""
    tokens: str = ""
    # Calling the detector and the embedder: the CA to trust turns TLS on; cert/key for mutual TLS;
    # the token is sent as `authorization: Bearer` when set.
    downstream_tls_ca: str = ""
    downstream_tls_cert: str = ""
    downstream_tls_key: str = ""
    downstream_token: str = ""

    def __post_init__(self) -> None:
        for name in ("threshold", "identification_threshold"):
            value = getattr(self, name)
            if not (value == 0 or 0 < value <= 2):
                raise SettingError(f"{name} must lie in (0, 2] (0 for the calibrated one), not {value}.")
        if self.svm_max_identities < 2:
            raise SettingError("svm_max_identities must be at least 2.")
        if self.ivf_min_size < 1 or self.nprobe < 0:
            raise SettingError("ivf_min_size must be positive and nprobe not negative.")
        if self.downstream_timeout_s <= 0:
            raise SettingError("downstream_timeout_s must be positive.")
        if self.index_checkpoint_s < 0:
            raise SettingError("index_checkpoint_s must not be negative (0 saves only at shutdown).")
        if min(self.detect_images_per_call, self.embed_faces_per_call, self.max_images_per_enroll) < 1:
            raise SettingError("Per-call and per-request limits must be at least 1.")
        if not self.detector or not self.embedder:
            raise SettingError("The detector and embedder addresses must not be empty.")
        self.tls.checked("GALLERY_")
        if bool(self.downstream_tls_cert) != bool(self.downstream_tls_key):
            raise SettingError("GALLERY_DOWNSTREAM_TLS_CERT and GALLERY_DOWNSTREAM_TLS_KEY go together.")
        if self.downstream_tls_cert and not self.downstream_tls_ca:
            raise SettingError("GALLERY_DOWNSTREAM_TLS_CERT needs GALLERY_DOWNSTREAM_TLS_CA.")

    @property
    def tls(self) -> TlsSettings:
        return TlsSettings(self.tls_cert, self.tls_key, self.tls_client_ca)

    def server_options(self) -> ServerOptions:
        return ServerOptions(
            host=self.host,
            port=self.port,
            max_workers=self.max_workers,
            max_concurrent_rpcs=self.max_concurrent_rpcs,
            max_message_bytes=self.max_message_bytes,
            grace_s=self.grace_s,
        )

    def gallery_options(self, threshold: float, threshold_source: str) -> GalleryOptions:
        return GalleryOptions(
            threshold=threshold,
            threshold_source=threshold_source,
            svm_max_identities=self.svm_max_identities,
            ivf_min_size=self.ivf_min_size,
            nprobe=self.nprobe or None,
            enroll_min_confidence=self.enroll_min_confidence,
            enroll_min_face_px=self.enroll_min_face_px,
            max_images_per_request=self.max_images_per_enroll,
            max_embeddings_per_request=self.max_embeddings_per_enroll,
            detect_options=DetectOptions(),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Settings from GALLERY_* variables; the store defaults to FACEREC_HOME/gallery.sqlite."""
        assets = Assets(facerec_home(environ))
        d = cls(store=assets.home / "gallery.sqlite", calibration_path=assets.threshold_file)
        return cls(
            store=Path(env_str(environ, "GALLERY_STORE", str(d.store))).expanduser(),
            calibration_path=Path(
                env_str(environ, "GALLERY_CALIBRATION", str(d.calibration_path))
            ).expanduser(),
            host=env_str(environ, "GALLERY_HOST", d.host),
            port=env_int(environ, "GALLERY_PORT", d.port),
            detector=env_str(environ, "GALLERY_DETECTOR", d.detector),
            embedder=env_str(environ, "GALLERY_EMBEDDER", d.embedder),
            model=env_str(environ, "GALLERY_MODEL", d.model),
            threshold=env_float(environ, "GALLERY_THRESHOLD", d.threshold),
            identification_threshold=env_float(
                environ, "GALLERY_IDENTIFICATION_THRESHOLD", d.identification_threshold
            ),
            svm_max_identities=env_int(environ, "GALLERY_SVM_MAX_IDENTITIES", d.svm_max_identities),
            ivf_min_size=env_int(environ, "GALLERY_IVF_MIN_SIZE", d.ivf_min_size),
            nprobe=env_int(environ, "GALLERY_NPROBE", d.nprobe),
            downstream_timeout_s=env_float(environ, "GALLERY_DOWNSTREAM_TIMEOUT_S", d.downstream_timeout_s),
            detect_images_per_call=env_int(
                environ, "GALLERY_DETECT_IMAGES_PER_CALL", d.detect_images_per_call
            ),
            embed_faces_per_call=env_int(environ, "GALLERY_EMBED_FACES_PER_CALL", d.embed_faces_per_call),
            max_images_per_enroll=env_int(environ, "GALLERY_MAX_IMAGES_PER_ENROLL", d.max_images_per_enroll),
            max_embeddings_per_enroll=env_int(
                environ, "GALLERY_MAX_EMBEDDINGS_PER_ENROLL", d.max_embeddings_per_enroll
            ),
            enroll_min_confidence=env_float(
                environ, "GALLERY_ENROLL_MIN_CONFIDENCE", d.enroll_min_confidence
            ),
            enroll_min_face_px=env_float(environ, "GALLERY_ENROLL_MIN_FACE_PX", d.enroll_min_face_px),
            max_workers=env_int(environ, "GALLERY_MAX_WORKERS", d.max_workers),
            max_concurrent_rpcs=env_int(environ, "GALLERY_MAX_CONCURRENT_RPCS", d.max_concurrent_rpcs),
            max_message_bytes=env_int(environ, "GALLERY_MAX_MESSAGE_BYTES", d.max_message_bytes),
            grace_s=env_float(environ, "GALLERY_GRACE_S", d.grace_s),
            metrics_port=env_int(environ, "GALLERY_METRICS_PORT", d.metrics_port),
            index_checkpoint_s=env_float(environ, "GALLERY_INDEX_CHECKPOINT_S", d.index_checkpoint_s),
            **{
                name: env_str(environ, "GALLERY_" + name.upper(), "")
                for name in (
                    "tls_cert",
                    "tls_key",
                    "tls_client_ca",
                    "tokens_file",
                    "tokens",
                    "downstream_tls_ca",
                    "downstream_tls_cert",
                    "downstream_tls_key",
                    "downstream_token",
                )
            },
        )

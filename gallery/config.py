"""The gallery's settings: read once from GALLERY_* variables, overridable by the same CLI flags.

Addresses of the detector and the embedder are one address, a resolver URI ("dns:///detector:50051",
every record of the name) or a comma list of literal IPs ("127.0.0.1:5001,127.0.0.1:5002"); calls are
spread over all of them with gRPC's round_robin policy (gallery/clients.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from facerec.assets import Assets, facerec_home
from facerec.calibration import MAX_DISTANCE
from facerec.settings import MiB, ServerOptions, ServerSettings, SettingError, setting
from gallery.index_milvus import MilvusSettings
from gallery.options import GalleryOptions
from gallery.ports import DetectorOptions
from gallery.stores import is_postgres

DEFAULT_PORT = 50053
# The model the gallery assumes when the embedder cannot be asked at start (it is checked on every embed).
# The embedder's default precision is int8 (EMBEDDER_PRECISION), whose vectors go by this name.
DEFAULT_MODEL = "facenet-keras-128-int8"
# The detector of new collections when GALLERY_DETECTOR_MODEL is empty. RetinaFace: half MTCNN's CPU a
# picture, and FaceNet separates its crops better (equal error rate 2.4% against 3.1% on the 118 pictures);
# MTCNN stays for collections that need its 20-40 px faces (bench/RESULTS.md).
DEFAULT_DETECTOR = "retinaface"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(ServerSettings):
    """How the gallery listens, where its store and the two services are, and how it decides.

    threshold 0 = Verify's calibrated threshold for the model (FACEREC_HOME/calibration.json), else the
    model's shipped far_1e-3 point (1.0756 for int8, 1.0906 for fp32);
    identification_threshold 0 = Identify's calibrated one, else the shipped one (1.0596 int8, 1.06 fp32).
    model "" = ask the embedder at start (DEFAULT_MODEL when it is down then).
    metrics_port 0 = no metrics endpoint.
    """

    PREFIX: ClassVar[str] = "GALLERY_"

    store: str = setting(
        help="SQLite file of the gallery (default FACEREC_HOME/gallery.sqlite), or a PostgreSQL URL "
        "postgresql://user@host:5432/db shared by any number of gallery replicas"
    )
    store_password_file: str = setting("", "file holding the PostgreSQL password (instead of the URL)")
    index: str = setting("faiss", "faiss (in this process) or a Milvus URI such as http://milvus:19530")
    index_token: str = setting("", "Milvus token (user:password or an API key)", secret=True)
    index_token_file: str = setting("", "file holding the Milvus token")
    index_tls_ca: str = setting("", "CA certificate (PEM) to trust for an https:// Milvus")
    index_collection: str = setting("facerec_faces", "the Milvus collection of the gallery's faces")
    index_type: str = setting(
        "AUTOINDEX", "Milvus vector index type (AUTOINDEX lets Milvus choose; FLAT is exact)"
    )
    # A Milvus index is brought level with the store this often (and soon after a missed write).
    index_reconcile_s: float = setting(30.0, "bring the Milvus index level with the store this often (s)")
    calibration_path: Path = setting(
        help="calibration.json holding the model's threshold (default FACEREC_HOME/calibration.json)",
        name="calibration",
    )
    port: int = setting(DEFAULT_PORT, "port to listen on; 0 picks a free one")
    detector: str = setting(
        "127.0.0.1:50051", "detector address(es): host:port, dns:///name:port, or a comma list of IP:port"
    )
    embedder: str = setting("127.0.0.1:50052", "embedder address(es), as --detector")
    model: str = setting("", "the embedding model's name; empty = ask the embedder at start")
    # The deployment's contract (gallery.ports.Contract): what a new collection, and the default one when
    # the catalog is first made, uses unless it names its own.
    detector_model: str = setting(
        "", "the detector model of new collections: retinaface or mtcnn; empty = retinaface"
    )
    alignment: str = setting("box", "how new collections' crops are cut: box or similarity")
    threshold: float = setting(
        0.0,
        "verification threshold in (0, 2]; 0 = the calibrated operating point, else the model's shipped far_1e-3",
    )
    identification_threshold: float = setting(
        0.0, "Identify's (open-set) threshold in (0, 2]; 0 = calibrated, else the model's shipped one"
    )
    svm_max_identities: int = setting(1000, "above this many identities, identification is nearest-neighbour")
    ivf_min_size: int = setting(50_000, "faces from which the index is IVF instead of exact")
    nprobe: int = setting(0, "IVF lists searched per query; 0 = the index's default")
    downstream_timeout_s: float = setting(30.0, "deadline of a call to the detector or the embedder")
    reembed_batch: int = setting(
        16, "faces a re-embed detects and embeds per step (its progress is saved after each)"
    )
    reembed_stale_s: float = setting(
        20.0, "a re-embed whose runner has not reported for this long is taken over by another replica"
    )
    detect_images_per_call: int = setting(16, "pictures per Detect call")
    embed_faces_per_call: int = setting(64, "faces per Embed call")
    max_images_per_enroll: int = setting(64, "pictures one Enroll call may carry")
    max_embeddings_per_enroll: int = setting(1000, "embeddings one Enroll call may carry")
    enroll_min_confidence: float = setting(0.0, "faces detected below this confidence are not enrolled")
    enroll_min_face_px: float = setting(0.0, "faces smaller than this (shorter side) are not enrolled")
    identify_min_face_px: float = setting(
        20.0, "faces smaller than this (shorter side) are answered not identifiable, not compared"
    )
    identify_min_confidence: float = setting(
        0.8, "faces detected below this confidence are answered not identifiable, not compared"
    )
    # A hung detector or embedder holds at most this many calls; the rest (Stats, health...) keep answering.
    max_calls_per_downstream: int = setting(
        24, "calls waiting on each of the detector and the embedder; more are refused at once"
    )
    # As many threads as calls in progress: no accepted call waits for a thread.
    max_workers: int = setting(64, "gRPC worker threads")
    max_concurrent_rpcs: int = setting(64, "calls in progress; beyond it RESOURCE_EXHAUSTED")
    max_message_bytes: int = setting(64 * MiB, "largest gRPC message")
    # Save the index this often when the store changed (0 = only at shutdown): a start after a crash
    # then loads it instead of rebuilding from the store.
    index_checkpoint_s: float = setting(
        300.0, "save the index this often when the store changed; 0 = only at shutdown"
    )
    # Calling the detector and the embedder: the CA to trust turns TLS on; cert/key for mutual TLS;
    # the token is sent as `authorization: Bearer` when set.
    downstream_tls_ca: str = setting("", "CA to trust for the detector and embedder: call them over TLS")
    downstream_tls_cert: str = setting("", "this gallery's client certificate for them (mutual TLS)")
    downstream_tls_key: str = setting("", "the key of --downstream-tls-cert")
    downstream_token: str = setting("", "bearer token sent to the detector and embedder", secret=True)

    @classmethod
    def env_defaults(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        """The store defaults to FACEREC_HOME/gallery.sqlite, the calibration to FACEREC_HOME's."""
        assets = Assets(facerec_home(environ))
        return {"store": str(assets.home / "gallery.sqlite"), "calibration_path": assets.threshold_file}

    def check(self) -> None:
        super().check()
        for name in ("threshold", "identification_threshold"):
            value = getattr(self, name)
            if not (value == 0 or 0 < value <= MAX_DISTANCE):
                raise SettingError(f"{name} must lie in (0, 2] (0 for the calibrated one), not {value}.")
        if self.detector_model not in ("", "mtcnn", "retinaface"):
            raise SettingError(f"detector_model must be mtcnn or retinaface, not {self.detector_model!r}.")
        if self.alignment not in ("box", "similarity"):
            raise SettingError(f"alignment must be box or similarity, not {self.alignment!r}.")
        if self.svm_max_identities < 2:
            raise SettingError("svm_max_identities must be at least 2.")
        if self.ivf_min_size < 1 or self.nprobe < 0:
            raise SettingError("ivf_min_size must be positive and nprobe not negative.")
        if self.max_calls_per_downstream < 1:
            raise SettingError("max_calls_per_downstream must be at least 1.")
        if self.downstream_timeout_s <= 0:
            raise SettingError("downstream_timeout_s must be positive.")
        if self.identify_min_face_px < 0 or not 0 <= self.identify_min_confidence <= 1:
            raise SettingError(
                "identify_min_face_px must not be negative and identify_min_confidence must lie in [0, 1]."
            )
        if self.index_checkpoint_s < 0:
            raise SettingError("index_checkpoint_s must not be negative (0 saves only at shutdown).")
        if self.reembed_batch < 1 or self.reembed_stale_s <= 0:
            raise SettingError("reembed_batch must be at least 1 and reembed_stale_s positive.")
        if min(self.detect_images_per_call, self.embed_faces_per_call, self.max_images_per_enroll) < 1:
            raise SettingError("Per-call and per-request limits must be at least 1.")
        if not self.store:
            raise SettingError("GALLERY_STORE must name a SQLite file or a postgresql:// URL.")
        if self.store_password_file and not is_postgres(self.store):
            raise SettingError("GALLERY_STORE_PASSWORD_FILE needs a postgresql:// GALLERY_STORE.")
        if self.index != "faiss" and not self.index.startswith(("http://", "https://")):
            raise SettingError(
                f"GALLERY_INDEX must be faiss or a Milvus URI (http://host:19530), not {self.index!r}."
            )
        if self.index_reconcile_s <= 0:
            raise SettingError("index_reconcile_s must be positive.")
        if not self.detector or not self.embedder:
            raise SettingError("The detector and embedder addresses must not be empty.")
        if bool(self.downstream_tls_cert) != bool(self.downstream_tls_key):
            raise SettingError("GALLERY_DOWNSTREAM_TLS_CERT and GALLERY_DOWNSTREAM_TLS_KEY go together.")
        if self.downstream_tls_cert and not self.downstream_tls_ca:
            raise SettingError("GALLERY_DOWNSTREAM_TLS_CERT needs GALLERY_DOWNSTREAM_TLS_CA.")

    def milvus(self) -> MilvusSettings | None:
        """The shared index's settings; None for FAISS. The token file, when set, is read now."""
        if self.index == "faiss":
            return None
        token = self.index_token
        if self.index_token_file:
            try:
                token = Path(self.index_token_file).read_text().strip()
            except OSError as exc:
                raise SettingError(f"GALLERY_INDEX_TOKEN_FILE cannot be read ({exc.strerror}).") from None
        return MilvusSettings(
            self.index,
            token=token,
            collection=self.index_collection,
            index_type=self.index_type,
            tls_ca=self.index_tls_ca,
        )

    def server_options(self) -> ServerOptions:
        return dataclasses.replace(
            super().server_options(),
            max_concurrent_rpcs=self.max_concurrent_rpcs,
            max_message_bytes=self.max_message_bytes,
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
            identify_min_face_px=self.identify_min_face_px,
            identify_min_confidence=self.identify_min_confidence,
            max_images_per_request=self.max_images_per_enroll,
            max_embeddings_per_request=self.max_embeddings_per_enroll,
            detect_options=DetectorOptions(),
        )

"""The gateway's settings: read once from GATEWAY_* variables, overridable by the same CLI flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from facerec.settings import SettingError, env_float, env_int, env_str

MiB = 1024 * 1024
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Settings:
    """Where the gateway listens, where the gallery (and the detector, for /v1/detect) are, and its limits.

    gallery and detector: one address, a resolver URI ("dns:///gallery:50053") or a comma list of
    literal IP:port addresses; calls are spread over every replica with gRPC's round_robin policy.
    tls_ca: the CA to trust for the gallery and the detector (turns TLS on), as the CLI's --tls-ca.
    The limits default to the gallery's own (docs/limits.md), so the gateway refuses early what the
    gallery would refuse anyway.
    """

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    gallery: str = "127.0.0.1:50053"
    detector: str = "127.0.0.1:50051"
    timeout_s: float = 30.0
    tls_ca: str = ""
    max_request_bytes: int = 64 * MiB
    max_image_bytes: int = 20 * MiB
    max_images_per_enroll: int = 64
    max_images_per_detect: int = 16
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise SettingError("timeout_s must be positive.")
        if min(self.max_request_bytes, self.max_image_bytes, self.max_images_per_enroll) < 1:
            raise SettingError("The request, image and enroll limits must be at least 1.")
        if self.max_images_per_detect < 1:
            raise SettingError("max_images_per_detect must be at least 1.")
        if not self.gallery:
            raise SettingError("The gallery address must not be empty.")
        if not 0 <= self.port < 65536 or not 0 <= self.metrics_port < 65536:
            raise SettingError("Ports lie in 0..65535.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Settings from GATEWAY_* variables; the CA falls back to the CLI's FACEREC_TLS_CA."""
        d = cls()
        return cls(
            host=env_str(environ, "GATEWAY_HOST", d.host),
            port=env_int(environ, "GATEWAY_PORT", d.port),
            gallery=env_str(environ, "GATEWAY_GALLERY", d.gallery),
            detector=env_str(environ, "GATEWAY_DETECTOR", d.detector),
            timeout_s=env_float(environ, "GATEWAY_TIMEOUT_S", d.timeout_s),
            tls_ca=env_str(environ, "GATEWAY_TLS_CA", env_str(environ, "FACEREC_TLS_CA", d.tls_ca)),
            max_request_bytes=env_int(environ, "GATEWAY_MAX_REQUEST_BYTES", d.max_request_bytes),
            max_image_bytes=env_int(environ, "GATEWAY_MAX_IMAGE_BYTES", d.max_image_bytes),
            max_images_per_enroll=env_int(environ, "GATEWAY_MAX_IMAGES_PER_ENROLL", d.max_images_per_enroll),
            max_images_per_detect=env_int(environ, "GATEWAY_MAX_IMAGES_PER_DETECT", d.max_images_per_detect),
            metrics_port=env_int(environ, "GATEWAY_METRICS_PORT", d.metrics_port),
        )

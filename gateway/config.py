"""The gateway's settings: read once from GATEWAY_* variables, overridable by the same flags (the recipe
of facerec.settings; the gateway is no gRPC server, so it takes the recipe without the server block)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from facerec.settings import MiB, Recipe, SettingError, setting

DEFAULT_PORT = 8080


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(Recipe):
    """Where the gateway listens, where the gallery (and the detector, for /v1/detect) are, and its limits.

    gallery and detector: one address, a resolver URI ("dns:///gallery:50053") or a comma list of
    literal IP:port addresses; calls are spread over every replica with gRPC's round_robin policy.
    tls_ca: the CA to trust for the gallery and the detector (turns TLS on); it defaults to the CLI's
    FACEREC_TLS_CA. The limits default to the gallery's own (docs/limits.md), so the gateway refuses
    early what the gallery would refuse anyway.
    """

    PREFIX: ClassVar[str] = "GATEWAY_"

    host: str = setting("127.0.0.1", "interface to listen on (0.0.0.0 for every interface)")
    port: int = setting(DEFAULT_PORT, "HTTP port; 0 picks a free one")
    gallery: str = setting(
        "127.0.0.1:50053", "gallery address(es): host:port, dns:///name:port, or a comma list of IP:port"
    )
    detector: str = setting("127.0.0.1:50051", "detector address(es) for /v1/detect, as --gallery")
    timeout_s: float = setting(30.0, "deadline of every call to the gallery or the detector, seconds")
    tls_ca: str = setting("", "CA to trust for the gallery and the detector (else FACEREC_TLS_CA): use TLS")
    max_request_bytes: int = setting(
        64 * MiB, "largest request body; larger ones get 413 before they are read"
    )
    max_image_bytes: int = setting(20 * MiB, "largest picture (the detector's limit)")
    max_images_per_enroll: int = setting(64, "pictures per enroll (the gallery's limit)")
    max_images_per_detect: int = setting(16, "pictures per detect (the detector's limit)")
    grace_s: float = setting(5.0, "seconds running requests may finish in at shutdown")
    metrics_port: int = setting(0, "Prometheus /metrics port; 0 = none")
    verbose: bool = setting(False, "log more", short="-v")

    def check(self) -> None:
        if self.timeout_s <= 0:
            raise SettingError(f"{self.key('timeout_s')} must be positive.")
        if min(self.max_request_bytes, self.max_image_bytes, self.max_images_per_enroll) < 1:
            raise SettingError("The request, image and enroll limits must be at least 1.")
        if self.max_images_per_detect < 1:
            raise SettingError(f"{self.key('max_images_per_detect')} must be at least 1.")
        if not self.gallery:
            raise SettingError(f"{self.key('gallery')} must not be empty.")
        for name in ("port", "metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise SettingError(
                    f"{self.key(name)} must be between 0 and 65535, not {getattr(self, name)}."
                )
        if self.grace_s < 0:
            raise SettingError(f"{self.key('grace_s')} must not be negative.")

    @classmethod
    def env_defaults(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        """The CA to trust defaults to the CLI's (FACEREC_TLS_CA)."""
        return {"tls_ca": environ.get("FACEREC_TLS_CA", "")}

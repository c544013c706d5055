"""The gateway's settings: read once from GATEWAY_* variables, overridable by the same flags (the recipe
of facerec.settings; the gateway is no gRPC server, so it takes the recipe without the server block)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from facerec.settings import LOG_FORMATS, MiB, Recipe, SettingError, setting

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
    embedder: str = setting("127.0.0.1:50052", "embedder address(es), asked only by /readyz, as --gallery")
    timeout_s: float = setting(30.0, "deadline of every call to the gallery or the detector, seconds")
    tls_ca: str = setting("", "CA to trust for the gallery and the detector (else FACEREC_TLS_CA): use TLS")
    max_request_bytes: int = setting(
        64 * MiB, "largest request body; larger ones get 413 before they are read"
    )
    max_json_bytes: int = setting(
        32 * MiB,
        "largest JSON body (parsing one costs about twice its size; larger uploads go as multipart files)",
    )
    max_image_bytes: int = setting(20 * MiB, "largest picture (the detector's limit)")
    max_images_per_enroll: int = setting(64, "pictures per enroll (the gallery's limit)")
    enroll_part_bytes: int = setting(
        8 * MiB,
        "pictures per Enroll call to the gallery, in bytes: the gateway holds a part about four times over "
        "(read, in the message, serialized, in gRPC's buffers), so a part bounds its memory",
    )
    max_images_per_detect: int = setting(16, "pictures per detect (the detector's limit)")
    allowed_hosts: str = setting(
        "", "Host names (comma list) served besides the loopback ones; * = any (DNS rebinding guard)"
    )
    allowed_origins: str = setting(
        "", "other sites (comma list of scheme://host[:port]) that may POST or DELETE from a browser"
    )
    tokens_file: str = setting("", "require a bearer token: a file of `token role` lines (rw or ro)")
    tokens: str = setting("", "the same entries inline, comma separated", secret=True)
    header_timeout_s: float = setting(10.0, "time a client has to send a request's headers, seconds")
    body_timeout_s: float = setting(60.0, "time a client has to send a request's whole body, seconds")
    ready_timeout_s: float = setting(2.0, "deadline of /readyz's health checks of the services, seconds")
    grace_s: float = setting(5.0, "seconds running requests may finish in at shutdown")
    metrics_port: int = setting(0, "Prometheus /metrics port; 0 = none")
    verbose: bool = setting(False, "log more", short="-v")
    log_format: str = setting(
        "text", "text, or json for one JSON object a line (each with its request id)", choices=LOG_FORMATS
    )

    def check(self) -> None:
        if self.timeout_s <= 0:
            raise SettingError(f"{self.key('timeout_s')} must be positive.")
        if (
            min(self.max_request_bytes, self.max_json_bytes, self.max_image_bytes, self.max_images_per_enroll)
            < 1
        ):
            raise SettingError("The request, image and enroll limits must be at least 1.")
        if self.enroll_part_bytes < 1:
            raise SettingError(f"{self.key('enroll_part_bytes')} must be at least 1.")
        if self.max_images_per_detect < 1:
            raise SettingError(f"{self.key('max_images_per_detect')} must be at least 1.")
        if not self.gallery:
            raise SettingError(f"{self.key('gallery')} must not be empty.")
        for name in ("port", "metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise SettingError(
                    f"{self.key(name)} must be between 0 and 65535, not {getattr(self, name)}."
                )
        if min(self.header_timeout_s, self.body_timeout_s, self.ready_timeout_s) <= 0:
            raise SettingError("The header, body and ready timeouts must be positive.")
        if self.grace_s < 0:
            raise SettingError(f"{self.key('grace_s')} must not be negative.")
        if self.log_format not in LOG_FORMATS:
            raise SettingError(f"{self.key('log_format')} must be one of {', '.join(LOG_FORMATS)}.")

    def host_names(self) -> frozenset[str]:
        """The Host names served (without port): the loopback names and allowed_hosts."""
        extra = {h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()}
        return frozenset({"localhost", "127.0.0.1", "[::1]", "::1"} | extra)

    def origins(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/").lower() for o in self.allowed_origins.split(",") if o.strip())

    @classmethod
    def env_defaults(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        """The CA to trust defaults to the CLI's (FACEREC_TLS_CA)."""
        return {"tls_ca": environ.get("FACEREC_TLS_CA", "")}

"""The detection service's settings: read once from DETECTOR_* variables, overridable by the same CLI flags."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

from facerec.assets import facerec_home
from facerec.images import ImageLimits
from facerec.security import TlsSettings
from facerec.server import ServerOptions
from facerec.settings import RUNTIMES, MiB, SettingError, env_bool, env_float, env_int, env_str

PREFIX = "DETECTOR_"


@dataclass(frozen=True)
class Settings:
    """Every limit and knob of the detector. Each field is DETECTOR_<FIELD> and --<field-with-dashes>."""

    host: str = "[::]"
    port: int = 50051
    max_images_per_request: int = 16
    max_image_bytes: int = 20 * MiB
    max_image_pixels: int = 40_000_000
    max_message_bytes: int = 64 * MiB
    # Requests waiting for the model; beyond it Detect answers RESOURCE_EXHAUSTED.
    max_queue: int = 32
    # Pictures per model call, and how long the worker waits for more to fill one.
    max_batch: int = 8
    max_delay_ms: float = 5.0
    default_min_face_size_px: int = 20
    intra_op_threads: int = 2
    inter_op_threads: int = 1
    max_workers: int = 16
    max_concurrent_rpcs: int = 64
    grace_s: float = 5.0
    # Share P-Net calls between pictures of different sizes by padding: ~2-3x faster on mixed batches;
    # a few boxes move by a few pixels from mtcnn's (so crops differ from the tutorial's on those).
    pad_sizes: bool = False
    # mtcnn's networks on onnxruntime (exported once with tf2onnx, cached in models_dir) or tensorflow.
    runtime: str = "onnxruntime"
    # Where the ONNX exports are cached; "" = FACEREC_HOME/models.
    models_dir: str = ""
    # Prometheus /metrics on this port; 0 = off.
    metrics_port: int = 0
    # TLS (PEM paths): cert and key turn it on; client_ca also requires client certificates.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Bearer tokens (`token role` per line, or comma-separated inline): either turns authentication on.
    tokens_file: str = ""
    tokens: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        values = {}
        for f in fields(cls):
            key = PREFIX + f.name.upper()
            default = f.default
            if isinstance(default, bool):
                values[f.name] = env_bool(environ, key, default)
            elif isinstance(default, str):
                values[f.name] = env_str(environ, key, default)
            elif isinstance(default, int):
                values[f.name] = env_int(environ, key, default)
            else:
                values[f.name] = env_float(environ, key, float(default))
        if not values["models_dir"]:
            values["models_dir"] = str(facerec_home(environ) / "models")
        return cls(**values).checked()

    def checked(self) -> Settings:
        """Raises SettingError for a value that cannot work."""
        for name in (
            "max_images_per_request",
            "max_image_bytes",
            "max_image_pixels",
            "max_message_bytes",
            "max_queue",
            "max_batch",
            "intra_op_threads",
            "inter_op_threads",
            "max_workers",
            "max_concurrent_rpcs",
        ):
            if getattr(self, name) < 1:
                raise SettingError(f"{PREFIX}{name.upper()} must be at least 1, not {getattr(self, name)}.")
        if self.default_min_face_size_px < 12:
            raise SettingError(f"{PREFIX}DEFAULT_MIN_FACE_SIZE_PX must be at least 12.")
        if not 0 <= self.port <= 65535:
            raise SettingError(f"{PREFIX}PORT must be between 0 and 65535, not {self.port}.")
        if not 0 <= self.metrics_port <= 65535:
            raise SettingError(f"{PREFIX}METRICS_PORT must be between 0 and 65535, not {self.metrics_port}.")
        if self.runtime not in RUNTIMES:
            raise SettingError(f"{PREFIX}RUNTIME must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}.")
        self.tls.checked(PREFIX)
        return self

    @property
    def tls(self) -> TlsSettings:
        return TlsSettings(self.tls_cert, self.tls_key, self.tls_client_ca)

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)

    @property
    def server_options(self) -> ServerOptions:
        return ServerOptions(
            host=self.host,
            port=self.port,
            max_workers=self.max_workers,
            max_concurrent_rpcs=self.max_concurrent_rpcs,
            max_message_bytes=self.max_message_bytes,
            grace_s=self.grace_s,
        )


def add_arguments(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    """One flag per setting, defaulting to `defaults` (the environment's values)."""
    for f in fields(Settings):
        value = getattr(defaults, f.name)
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=_flag_bool if isinstance(value, bool) else type(value),
            default=value,
            # Secrets are not echoed by --help.
            help=f"(env {PREFIX}{f.name.upper()}" + (")" if f.name == "tokens" else f", default {value})"),
        )


def parse(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """Settings from the environment, then the command line over them."""
    defaults = Settings.from_env(environ)
    parser = argparse.ArgumentParser(
        prog="facerec serve detector", description="The MTCNN detection service."
    )
    add_arguments(parser, defaults)
    args = parser.parse_args(argv)
    return replace(defaults, **{f.name: getattr(args, f.name) for f in fields(Settings)}).checked()


def _flag_bool(text: str) -> bool:
    return env_bool({"flag": text}, "flag", False)

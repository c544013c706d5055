"""One recipe for a service's settings (Recipe): each is a dataclass field declared once, with its help,
and from that declaration come its environment variable (PREFIX + NAME), its flag (--name-with-dashes),
its type and its default. ServerSettings is the block every gRPC service shares (listening, TLS,
tokens, metrics, logging); a service subclasses it with its own PREFIX and fields.

Precedence: flag over environment variable over default. Nothing else reads os.environ.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from facerec.keepalive import Keepalive

MiB = 1024 * 1024
# The inference runtimes both model services can run on.
RUNTIMES = ("onnxruntime", "tensorflow")


class SettingError(ValueError):
    """A setting has a value of the wrong kind; the message names the variable."""


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """How a gRPC server listens. max_concurrent_rpcs bounds the queue: beyond it, RESOURCE_EXHAUSTED."""

    host: str = "127.0.0.1"
    port: int = 0
    max_workers: int = 16
    # Streams (health Watch, reflection) open at once, on threads of their own (facerec.streams).
    max_streams: int = 8
    max_concurrent_rpcs: int = 64
    max_message_bytes: int = 64 * MiB
    grace_s: float = 5.0
    # Clients re-resolve DNS only when a connection ends; ending connections after this long lets the
    # gallery find replicas added by `docker compose --scale` or `kubectl scale`. 0 = never.
    max_connection_age_s: float = 300.0
    # Pings on idle connections, and the pings this server accepts (facerec.keepalive).
    keepalive: Keepalive = Keepalive()


@dataclasses.dataclass(frozen=True)
class TlsSettings:
    """A server's TLS files (PEM paths; "" = unset). cert empty = plaintext."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    def checked(self, prefix: str = "") -> TlsSettings:
        """Raises SettingError for a combination that cannot work."""
        if bool(self.cert) != bool(self.key):
            raise SettingError(f"{prefix}TLS_CERT and {prefix}TLS_KEY must be set together.")
        if self.client_ca and not self.cert:
            raise SettingError(f"{prefix}TLS_CLIENT_CA needs {prefix}TLS_CERT and {prefix}TLS_KEY.")
        return self


def env_str(environ: Mapping[str, str], key: str, default: str) -> str:
    value = environ.get(key, "")
    return value if value != "" else default


def env_int(environ: Mapping[str, str], key: str, default: int) -> int:
    value = environ.get(key, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SettingError(f"{key} must be a whole number, not {value!r}.") from None


def env_float(environ: Mapping[str, str], key: str, default: float) -> float:
    value = environ.get(key, "")
    if value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise SettingError(f"{key} must be a number, not {value!r}.") from None


def env_bool(environ: Mapping[str, str], key: str, default: bool) -> bool:
    value = environ.get(key, "").strip().lower()
    if value == "":
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{key} must be true or false, not {value!r}.")


def env_path(environ: Mapping[str, str], key: str, default: Path) -> Path:
    value = environ.get(key, "")
    return Path(value).expanduser() if value != "" else default


# Field types (as `from __future__ import annotations` leaves them: strings) → how to read a value.
_READERS: dict[str, Callable[[Mapping[str, str], str, Any], Any]] = {
    "str": env_str,
    "int": env_int,
    "float": env_float,
    "bool": env_bool,
    "Path": env_path,
}


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    name: str = "",
    secret: bool = False,
    choices: Sequence[str] = (),
    short: str = "",
) -> Any:
    """A settings field. name: the variable and flag name when not the field's (e.g. "calibration" for
    calibration_path); secret: --help does not echo its value; choices: the values a flag accepts;
    short: an extra short flag (-v)."""
    meta = {"help": help, "name": name, "secret": secret, "choices": tuple(choices), "short": short}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recipe:
    """The recipe itself: a frozen dataclass of setting(...) fields read from PREFIX_* variables and
    flags. ServerSettings adds the gRPC server block; a service that is no gRPC server (the HTTP
    gateway) subclasses this directly.
    """

    PREFIX: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raises SettingError for a value that cannot work."""

    @classmethod
    def key(cls, field_name: str) -> str:
        """The environment variable of a field: PREFIX + its (declared) name, upper case."""
        meta = {f.name: f.metadata for f in dataclasses.fields(cls)}[field_name]
        return cls.PREFIX + (meta.get("name") or field_name).upper()

    @classmethod
    def env_defaults(cls, environ: Mapping[str, str]) -> dict[str, Any]:
        """Defaults that depend on the environment (paths under FACEREC_HOME); none here."""
        return {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """Settings from PREFIX_* variables over the defaults."""
        defaults = cls.env_defaults(environ)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            default = defaults.get(f.name, f.default)
            key = cls.key(f.name)
            if default is dataclasses.MISSING:
                raise TypeError(f"{cls.__name__}.{f.name} needs a default or an env_defaults entry")
            values[f.name] = _READERS[str(f.type)](environ, key, default)
        return cls(**values)

    @classmethod
    def parser(cls, defaults: Recipe, prog: str, description: str) -> argparse.ArgumentParser:
        """One flag per setting, defaulting to `defaults` (the environment's values)."""
        parser = argparse.ArgumentParser(prog=prog, description=description)
        for f in dataclasses.fields(cls):
            meta = f.metadata
            value = getattr(defaults, f.name)
            flag = "--" + (meta.get("name") or f.name).replace("_", "-")
            # Secrets are not echoed by --help.
            shown = "" if meta.get("secret") else f", default {value}"
            help_text = f"{meta.get('help') or f.name} (env {cls.key(f.name)}{shown})".replace("%", "%%")
            flags = [*([meta["short"]] if meta.get("short") else []), flag]
            if str(f.type) == "bool":
                # `--flag`, `--flag false` and `--no-flag` all work.
                parser.add_argument(
                    *flags,
                    dest=f.name,
                    nargs="?",
                    const=True,
                    default=value,
                    type=_flag_bool,
                    metavar="true|false",
                    help=help_text,
                )
                parser.add_argument(
                    "--no-" + flag[2:], dest=f.name, action="store_false", help=argparse.SUPPRESS
                )
                continue
            parser.add_argument(
                *flags,
                dest=f.name,
                type=_FLAG_TYPES[str(f.type)],
                default=value,
                choices=meta.get("choices") or None,
                help=help_text,
            )
        return parser

    @classmethod
    def parse(
        cls, argv: Sequence[str] | None, environ: Mapping[str, str], prog: str = "", description: str = ""
    ) -> Self:
        """Settings from the environment, then the command line over them; a bad value exits 2 with
        one sentence (argparse's usage error)."""
        parser = argparse.ArgumentParser(prog=prog or None)
        try:
            defaults = cls.from_env(environ)
        except SettingError as exc:
            parser.error(str(exc))
        parser = cls.parser(defaults, prog, description)
        args = parser.parse_args(argv)
        try:
            return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
        except SettingError as exc:
            parser.error(str(exc))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerSettings(Recipe):
    """What every gRPC service has: where it listens, its server limits, TLS, tokens, metrics, logging.

    A subclass sets PREFIX, adds its own fields with setting(...), may redeclare a field to change its
    default, and extends check() for values that cannot work.
    """

    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 or [::] for every interface)")
    port: int = setting(0, "port to listen on; 0 picks a free one")
    max_workers: int = setting(16, "gRPC worker threads")
    grace_s: float = setting(5.0, "seconds running calls may finish in at shutdown")
    metrics_port: int = setting(0, "Prometheus /metrics port; 0 = none")
    # TLS (PEM paths): cert and key turn it on; client_ca also requires client certificates.
    tls_cert: str = setting("", "PEM certificate chain: serve TLS")
    tls_key: str = setting("", "PEM private key of --tls-cert")
    tls_client_ca: str = setting("", "require client certificates signed by this CA (mutual TLS)")
    # Bearer tokens (`token role` per line, or comma-separated inline): either turns authentication on.
    tokens_file: str = setting("", "`token role` per line (role rw or ro): require a bearer token")
    tokens: str = setting("", "inline tokens, comma-separated `token role` entries", secret=True)
    verbose: bool = setting(False, "log more (INFO)", short="-v")
    log_level: str = setting("", "DEBUG, INFO, WARNING or ERROR; empty = WARNING (INFO with -v)")
    log_format: str = setting(
        "text", "text, or json for one JSON object a line (each with its request id)", choices=LOG_FORMATS
    )

    def check(self) -> None:
        """Raises SettingError for a value that cannot work."""
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise SettingError(f"{self.key(name)} must be between 0 and 65535, not {value}.")
        if self.max_workers < 1:
            raise SettingError(f"{self.key('max_workers')} must be at least 1, not {self.max_workers}.")
        if self.grace_s < 0:
            raise SettingError(f"{self.key('grace_s')} must not be negative.")
        if self.log_level.upper() not in ("", *LOG_LEVELS):
            raise SettingError(
                f"{self.key('log_level')} must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}."
            )
        if self.log_format not in LOG_FORMATS:
            raise SettingError(
                f"{self.key('log_format')} must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}."
            )
        self.tls.checked(self.PREFIX)

    @property
    def tls(self) -> TlsSettings:
        return TlsSettings(self.tls_cert, self.tls_key, self.tls_client_ca)

    def server_options(self) -> ServerOptions:
        return ServerOptions(
            host=self.host, port=self.port, max_workers=self.max_workers, grace_s=self.grace_s
        )


def _flag_bool(text: str) -> bool:
    return env_bool({"flag": text}, "flag", False)


def _flag_path(text: str) -> Path:
    return Path(text).expanduser()


_FLAG_TYPES: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float, "Path": _flag_path}

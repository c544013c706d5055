"""Helpers that read typed settings from an environment mapping; each service's Settings.from_env uses them."""

from __future__ import annotations

from collections.abc import Mapping

MiB = 1024 * 1024
# The inference runtimes both model services can run on.
RUNTIMES = ("onnxruntime", "tensorflow")


class SettingError(ValueError):
    """A setting has a value of the wrong kind; the message names the variable."""


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

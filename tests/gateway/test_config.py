"""The gateway's settings: GATEWAY_* variables, the same values as flags, and refusals in one sentence."""

from __future__ import annotations

import subprocess
import sys

import pytest

from facerec.settings import SettingError
from gateway.config import Settings


def test_defaults_follow_the_gallerys_limits() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8080 and settings.gallery == "127.0.0.1:50053"
    assert settings.max_request_bytes == 64 * 1024 * 1024
    assert settings.max_image_bytes == 20 * 1024 * 1024
    assert settings.max_images_per_enroll == 64


def test_variables_and_flags_set_the_same_values() -> None:
    env = {
        "GATEWAY_PORT": "9000",
        "GATEWAY_GALLERY": "dns:///gallery:50053",
        "GATEWAY_TIMEOUT_S": "2.5",
        "GATEWAY_MAX_IMAGES_PER_ENROLL": "8",
    }
    from_env = Settings.from_env(env)
    assert (from_env.port, from_env.gallery, from_env.timeout_s) == (9000, "dns:///gallery:50053", 2.5)
    argv = ["--port", "9000", "--gallery", "dns:///gallery:50053", "--timeout-s", "2.5"]
    from_flags = Settings.parse([*argv, "--max-images-per-enroll", "8"], {}, "gateway")
    assert from_flags == from_env


def test_the_ca_falls_back_to_the_clis_variable() -> None:
    assert Settings.from_env({"FACEREC_TLS_CA": "/ca.pem"}).tls_ca == "/ca.pem"
    assert Settings.from_env({"FACEREC_TLS_CA": "/ca.pem", "GATEWAY_TLS_CA": "/g.pem"}).tls_ca == "/g.pem"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_PORT": "http"}, "GATEWAY_PORT must be a whole number"),
        ({"GATEWAY_TIMEOUT_S": "0"}, "GATEWAY_TIMEOUT_S must be positive"),
        ({"GATEWAY_MAX_IMAGE_BYTES": "0"}, "must be at least 1"),
    ],
)
def test_a_wrong_value_is_refused_with_one_sentence(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--tls-ca", "/no/such/ca.pem"], "gateway: Cannot read the CA certificate /no/such/ca.pem"),
        (["--timeout-s", "-1"], "gateway: error: GATEWAY_TIMEOUT_S must be positive."),
    ],
)
def test_a_setting_that_cannot_work_stops_the_gateway_with_one_sentence(
    args: list[str], sentence: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(sentence), done.stderr

"""`facerec health` with no address: a container's HEALTHCHECK asks whichever service runs beside it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from facerec.server import Health, build_server
from facerec.settings import ServerOptions
from facerec_app.health_check import RunningService, check_running, served


def fake_proc(root: Path, processes: dict[int, tuple[list[str], dict[str, str]]]) -> Path:
    """A /proc with the given processes' cmdline and environ files."""
    for pid, (argv, env) in processes.items():
        entry = root / str(pid)
        entry.mkdir(parents=True)
        (entry / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        (entry / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in env.items()) + b"\0")
    (root / "self").mkdir(exist_ok=True)
    return root


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (
            ["facerec", "serve", "detector", "--host", "0.0.0.0", "--port", "50061"],
            {},
            ("detector", "127.0.0.1", 50061),
        ),
        (
            ["/usr/local/bin/python", "/usr/local/bin/facerec", "serve", "embedder"],
            {},
            ("embedder", "127.0.0.1", 50052),
        ),
        (["facerec", "serve", "embedder"], {"EMBEDDER_PORT": "6000"}, ("embedder", "127.0.0.1", 6000)),
        (
            ["facerec", "serve", "gateway", "--port=8081", "--host", "[::]"],
            {},
            ("gateway", "127.0.0.1", 8081),
        ),
        (["facerec", "serve", "gallery", "--host", "10.0.0.7"], {}, ("gallery", "10.0.0.7", 50053)),
        (["facerec", "serve", "--gallery-port", "7000"], {}, ("gallery", "127.0.0.1", 7000)),
        (["/sbin/docker-init", "--", "facerec", "serve", "detector"], {}, ("detector", "127.0.0.1", 50051)),
        (
            ["python", "-m", "facerec_app.cli", "serve", "gallery"],
            {"GALLERY_PORT": "0"},
            ("gallery", "127.0.0.1", 0),
        ),
    ],
)
def test_the_service_port_and_host_come_from_the_command_then_the_environment(argv, env, expected) -> None:
    assert served(argv, env) == RunningService(*expected)


def test_other_processes_are_not_services() -> None:
    assert served(["facerec", "health"], {}) is None
    assert served(["bash", "-c", "serve detector"], {}) is None
    assert served(["facerec", "serve", "nonsense"], {}) is None


@pytest.fixture
def grpc_health() -> Iterator[int]:
    health = Health(["facerec.v1.Gallery"])
    server, port = build_server([], ServerOptions(host="127.0.0.1"), health)
    server.start()
    health.set_serving()
    yield port
    server.stop(0)


@pytest.fixture
def http_health() -> Iterator[int]:
    class Healthz(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_the_running_gallery_is_asked_over_grpc_on_its_own_port(tmp_path: Path, grpc_health: int) -> None:
    proc = fake_proc(
        tmp_path,
        {
            1: (["/sbin/docker-init", "--", "facerec", "serve", "gallery", "--port", str(grpc_health)], {}),
            7: (["facerec", "serve", "gallery", "--port", str(grpc_health)], {}),
        },
    )
    assert check_running(proc=proc) == (True, f"gallery at 127.0.0.1:{grpc_health} SERVING")


def test_the_running_gateway_is_asked_its_healthz(tmp_path: Path, http_health: int) -> None:
    proc = fake_proc(tmp_path, {9: (["facerec", "serve", "gateway"], {"GATEWAY_PORT": str(http_health)})})
    assert check_running(proc=proc) == (True, f"gateway at 127.0.0.1:{http_health} HTTP 200")


def test_no_service_or_a_silent_one_is_unhealthy(tmp_path: Path, grpc_health: int) -> None:
    assert check_running(proc=fake_proc(tmp_path / "a", {3: (["sleep", "60"], {})})) == (
        False,
        "no `facerec serve` process runs here",
    )
    proc = fake_proc(tmp_path / "b", {3: (["facerec", "serve", "gateway", "--port", str(grpc_health)], {})})
    healthy, detail = check_running(timeout_s=5, proc=proc)
    assert not healthy and detail.startswith(f"gateway at 127.0.0.1:{grpc_health} ")

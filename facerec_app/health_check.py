"""Health checks: a gRPC health client for `facerec health HOST:PORT` and for waiting on start-up, and, for
a container's HEALTHCHECK, `facerec health` with no address: it finds the `facerec serve SERVICE` process
running beside it and asks that service on its own port (gRPC health, or the gateway's GET /healthz)."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facerec_app.supervisor import DEFAULT_PORTS

EVERY_INTERFACE = ("", "0.0.0.0", "[::]", "::")


def check(address: str, service: str = "", timeout_s: float = 3.0) -> tuple[bool, str]:
    """(serving, status name) of `service` at address; ("UNREACHABLE") when nothing answers."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            return False, f"UNREACHABLE ({exc.code().name})"
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, name


def check_http(url: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    """(healthy, detail) of an HTTP health URL: healthy on a 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 - a URL we built
            return answer.status == 200, f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"UNREACHABLE ({getattr(exc, 'reason', exc)})"
    except http.client.HTTPException as exc:  # something answered, but not HTTP (a gRPC port, say)
        return False, f"NOT HTTP ({type(exc).__name__})"


def wait_serving(address: str, timeout_s: float, service: str = "") -> bool:
    """Polls until the service at address is SERVING or timeout_s passes. Returns whether it is."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        serving, _ = check(address, service, timeout_s=min(1.0, max(0.05, deadline - time.monotonic())))
        if serving:
            return True
        time.sleep(0.1)
    return False


@dataclass(frozen=True)
class RunningService:
    """A `facerec serve SERVICE` process and where to ask it."""

    service: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _flag(argv: Sequence[str], name: str) -> str | None:
    """The value of --name in argv ("--name V" or "--name=V"); the last one wins, as argparse does."""
    found = None
    for i, token in enumerate(argv):
        if token == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif token.startswith(name + "="):
            found = token.split("=", 1)[1]
    return found


def served(argv: Sequence[str], environ: Mapping[str, str]) -> RunningService | None:
    """What a process with this command line and environment serves, or None when it is no `facerec serve`.

    `serve all` (or `serve` alone) is asked through its gallery. The port comes from --port, else the
    service's PORT variable, else its default; the host is loopback unless the service was given one
    particular address."""
    if not any(Path(a).name == "facerec" or "facerec_app" in a for a in argv[:3]) or "serve" not in argv:
        return None
    rest = list(argv[argv.index("serve") + 1 :])
    service = rest[0] if rest and not rest[0].startswith("-") else "all"
    if service == "all":
        port = _flag(rest, "--gallery-port") or DEFAULT_PORTS["gallery"]
        service, prefix = "gallery", ""
    elif service in DEFAULT_PORTS:
        prefix = f"{service.upper()}_"
        port = _flag(rest, "--port") or environ.get(f"{prefix}PORT") or DEFAULT_PORTS[service]
    else:
        return None
    host = _flag(rest, "--host") or (environ.get(f"{prefix}HOST", "") if prefix else "")
    if host in EVERY_INTERFACE:
        host = "127.0.0.1"
    try:
        return RunningService(service, host, int(port))
    except ValueError:
        return None


def running_service(proc: Path = Path("/proc")) -> RunningService | None:
    """The first `facerec serve` process this machine (a container: its own) runs, by process id."""
    entries = sorted((p for p in proc.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for entry in entries:
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            raw = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or another user's
            continue
        environ = dict(item.decode(errors="replace").partition("=")[::2] for item in raw if b"=" in item)
        found = served(argv, environ)
        if found is not None:
            return found
    return None


def check_running(timeout_s: float = 3.0, proc: Path = Path("/proc")) -> tuple[bool, str]:
    """(healthy, what was asked and its answer) for the service running here; unhealthy when none runs."""
    found = running_service(proc)
    if found is None:
        return False, "no `facerec serve` process runs here"
    if found.service == "gateway":
        healthy, detail = check_http(f"http://{found.address}/healthz", timeout_s)
    else:
        healthy, detail = check(found.address, "", timeout_s)
    return healthy, f"{found.service} at {found.address} {detail}"

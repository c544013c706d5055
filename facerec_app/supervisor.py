"""Runs the three services as child processes (`facerec serve`, and the demo/eval when no address is given).

Children are started with the parent-death signal set, so they never outlive the supervisor even
when it is killed with SIGKILL; on SIGTERM/SIGINT they are stopped in reverse order. Linux sends
that signal when the *thread* that started the child ends: start children from a long-lived thread
(the main thread), never from a short-lived worker.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ANNOUNCE = re.compile(r"(\w+) serving on (\S+):(\d+)")
# TensorFlow's C++ start-up chatter (abseil's INFO and WARNING lines, written before any Python logging
# is set up, so TF_CPP_MIN_LOG_LEVEL does not silence them): kept for error messages, not echoed.
FRAMEWORK_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] )"
)
DEFAULT_PORTS = {"detector": 50051, "embedder": 50052, "gallery": 50053, "gateway": 8080}
MODULES = {
    "detector": "detector_service",
    "embedder": "embedding_service",
    "gallery": "gallery",
    "gateway": "gateway",
}
PR_SET_PDEATHSIG = 1


class StartError(Exception):
    """A service did not come up; the message says which and shows its last output line."""


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: children are still stopped on a normal exit


@dataclass
class ServiceProcess:
    """One service child process and the port it announced."""

    name: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    port: int = 0
    _ready: threading.Event = field(default_factory=threading.Event)
    _drained: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(
        cls, name: str, args: Sequence[str], env: Mapping[str, str] | None = None, echo: bool = False
    ) -> ServiceProcess:
        """Starts `python -m <module> ARGS` (name: a service name or a module); its output is kept
        (and echoed to stderr when echo)."""
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        process = subprocess.Popen(
            [sys.executable, "-m", MODULES.get(name, name), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=full_env,
            preexec_fn=_die_with_parent,
        )
        service = cls(name, process)
        threading.Thread(target=service._pump, args=(echo,), daemon=True, name=f"{name}-output").start()
        return service

    def _pump(self, echo: bool) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            del self.output[:-200]
            match = ANNOUNCE.search(line)
            if match and not self._ready.is_set():
                self.port = int(match.group(3))
                self._ready.set()
            elif echo and not FRAMEWORK_NOISE.match(line):
                sys.stderr.write(f"[{self.name}] {line}")
        # The output ends when the process does: reap it first, so wait_ready sees that it exited.
        self.process.wait()
        self._ready.set()
        self._drained.set()

    @property
    def address(self) -> str:
        """Where it listens, for a client on this machine."""
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float) -> int:
        """Blocks until the service announced it is serving; returns its port."""
        if not self._ready.wait(timeout_s) or not self.port:
            exited = self.process.poll() is not None
            self.stop()
            last = self.output[-1].strip() if self.output else "no output"
            if exited:
                raise StartError(f"The {self.name} exited while starting (last output: {last}).")
            raise StartError(f"The {self.name} did not start within {timeout_s:.0f} s (last output: {last}).")
        return self.port

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        # The process has exited, but its last lines may still be in the pipe: let the reader take them,
        # so `output` is complete once stop returns (a bound: a grandchild may hold the pipe open).
        self._drained.wait(5)
        return self.process.returncode


@dataclass(frozen=True)
class Addresses:
    detector: str
    embedder: str
    gallery: str
    processes: tuple[ServiceProcess, ...] = ()

    def exited(self) -> list[str]:
        """Names of the services whose process has ended."""
        return [p.name for p in self.processes if p.process.poll() is not None]


def shared_cores_env(environ: Mapping[str, str], cpus: int | None = None) -> dict[str, str]:
    """Model thread counts for a detector and an embedder that share this machine: half the cores each.

    Both services busy at once with a pool of every core each oversubscribes the machine (on 2 cores,
    1 thread each serves ~15-25% more pictures per second than 2 each). Values set in `environ` win.
    """
    share = str(max(1, (cpus or os.cpu_count() or 2) // 2))
    wanted = {"DETECTOR_INTRA_OP_THREADS": share, "EMBEDDER_INTRA_THREADS": share}
    return {key: value for key, value in wanted.items() if key not in environ}


def check_ports_free(host: str, ports: Mapping[str, int]) -> None:
    """StartError naming the first port (of name → port; 0 = any) that something already listens on,
    before any service starts: otherwise each child fails on its own, with a traceback each."""
    from facerec.server import PortInUse, check_port_free

    for name, port in ports.items():
        try:
            check_port_free(host, port)
        except PortInUse:
            raise StartError(
                f"Port {port} ({name}) is already in use on {host}: is another `facerec serve` running? "
                f"Stop it, or choose another port with --{name}-port."
            ) from None


@contextmanager
def local_services(
    host: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
    store: str | None = None,
    extra: Mapping[str, Sequence[str]] | None = None,
    echo: bool = False,
    timeout_s: float = 180.0,
) -> Iterator[Addresses]:
    """Starts detector and embedder side by side, then the gallery pointed at them; stops all on exit.

    ports: name → port (0 = any free port). store: the gallery's SQLite file (default: a temporary one).
    """
    ports = {**{name: 0 for name in MODULES}, **(ports or {})}
    check_ports_free(host, ports)
    extra = extra or {}
    started: list[ServiceProcess] = []
    with tempfile.TemporaryDirectory(prefix="facerec-") as tmp:
        store_path = store or os.path.join(tmp, "gallery.sqlite")
        try:
            for name in ("detector", "embedder"):
                started.append(
                    ServiceProcess.start(
                        name,
                        ["--host", host, "--port", str(ports[name]), *extra.get(name, ())],
                        env=shared_cores_env(os.environ),
                        echo=echo,
                    )
                )
            deadline = time.monotonic() + timeout_s
            found = {s.name: f"{host}:{s.wait_ready(deadline - time.monotonic())}" for s in started}
            gallery_args = [
                *("--host", host, "--port", str(ports["gallery"]), "--store", store_path),
                *("--detector", found["detector"], "--embedder", found["embedder"]),
                *extra.get("gallery", ()),
            ]
            gallery = ServiceProcess.start("gallery", gallery_args, echo=echo)
            started.append(gallery)
            found["gallery"] = f"{host}:{gallery.wait_ready(deadline - time.monotonic())}"
            yield Addresses(**found, processes=tuple(started))
        finally:
            for service in reversed(started):
                service.stop()


def serve_parser() -> argparse.ArgumentParser:
    """The flags of `facerec serve` (all the services)."""
    parser = argparse.ArgumentParser(
        prog="facerec serve", description="Run detector, embedder, gallery and the HTTP gateway."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(
            f"--{name}-port", type=int, default=port, help=f"the {name}'s port (default {port}; 0 = any free)"
        )
    parser.add_argument(
        "--store", default=None, help="gallery SQLite file (default FACEREC_HOME/gallery.sqlite)"
    )
    return parser


def serve_all(argv: Sequence[str]) -> int:
    """`facerec serve`: the three services and the HTTP gateway until Ctrl-C or SIGTERM; prints where they listen."""
    args = serve_parser().parse_args(list(argv))
    check_ports_free(args.host, {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS})
    from facerec.assets import facerec_home

    store = args.store or str(facerec_home(os.environ) / "gallery.sqlite")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ports = {"detector": args.detector_port, "embedder": args.embedder_port, "gallery": args.gallery_port}
    started = time.monotonic()
    with local_services(args.host, ports, store, echo=True) as addresses:
        gateway = ServiceProcess.start(
            "gateway",
            [
                *("--host", args.host, "--port", str(args.gateway_port)),
                *("--gallery", addresses.gallery, "--detector", addresses.detector),
            ],
            echo=True,
        )
        try:
            gateway_port = gateway.wait_ready(60.0)
            sys.stdout.write(
                f"facerec serving after {time.monotonic() - started:.1f} s\n"
                f"  detector  {addresses.detector}\n  embedder  {addresses.embedder}\n"
                f"  gallery   {addresses.gallery}   (store {store})\n"
                f"  gateway   http://{args.host}:{gateway_port}   (web page and HTTP API)\n"
                "Ctrl-C to stop.\n"
            )
            sys.stdout.flush()
            while not stop.wait(1.0):
                dead = addresses.exited() + (["gateway"] if gateway.process.poll() is not None else [])
                if dead:
                    sys.stderr.write(f"facerec: the {dead[0]} exited unexpectedly; stopping the others.\n")
                    return 1
            sys.stdout.write("stopping\n")
        finally:
            gateway.stop()
    return 0

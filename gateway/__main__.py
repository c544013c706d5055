"""`python -m gateway` / `facerec serve gateway`: the HTTP/JSON API and the web page, served by uvicorn."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
import sys
from collections.abc import Sequence

import uvicorn

from facerec.metrics import ServiceMetrics, start_metrics_server
from facerec.server import announce
from facerec.settings import SettingError
from gateway.app import build_app
from gateway.config import Settings

log = logging.getLogger("gateway")

_HELP = {
    "host": "interface to listen on",
    "port": "HTTP port; 0 = any free port",
    "gallery": "gallery address(es): host:port, dns:///name:port, or a comma list of IP:port",
    "detector": "detector address(es) for /v1/detect, as --gallery",
    "timeout_s": "deadline of every call to the gallery or the detector, seconds",
    "tls_ca": "CA to trust for the gallery and the detector: call them over TLS (default FACEREC_TLS_CA)",
    "max_request_bytes": "largest request body; larger ones get 413 before they are read",
    "max_image_bytes": "largest picture (the detector's limit)",
    "max_images_per_enroll": "pictures per enroll (the gallery's limit)",
    "max_images_per_detect": "pictures per detect (the detector's limit)",
    "metrics_port": "Prometheus /metrics port; 0 = none",
}


def build_parser(defaults: Settings) -> argparse.ArgumentParser:
    """One flag per setting (--timeout-s for timeout_s), defaulting to the GATEWAY_* values."""
    parser = argparse.ArgumentParser(prog="gateway", description="The facerec HTTP/JSON API and web page.")
    for f in dataclasses.fields(Settings):
        default = getattr(defaults, f.name)
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=type(default),
            default=default,
            help=_HELP[f.name] + " (default %(default)s)",
        )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    return parser


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening socket, so the port is known (port 0) before uvicorn starts serving it."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bare, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> None:
    try:
        defaults = Settings.from_env(os.environ)
        args = build_parser(defaults).parse_args(argv)
        settings = Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})
    except SettingError as exc:
        sys.stderr.write(f"gateway: {exc}\n")
        raise SystemExit(2) from None
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as exc:
        sys.stderr.write(f"gateway: cannot listen on {settings.host}:{settings.port}: {exc.strerror}.\n")
        raise SystemExit(1) from None
    port = sock.getsockname()[1]
    metrics = ServiceMetrics("gateway")
    if settings.metrics_port:
        start_metrics_server(settings.metrics_port, metrics.registry, settings.host)
    try:
        app = build_app(settings, metrics, on_ready=lambda: announce("gateway", settings.host, port))
    except SettingError as exc:
        sys.stderr.write(f"gateway: {exc}\n")
        raise SystemExit(2) from None
    log.info("gateway in front of the gallery at %s on port %s", settings.gallery, port)
    config = uvicorn.Config(
        app,
        log_level="info" if args.verbose else "warning",
        access_log=args.verbose,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()

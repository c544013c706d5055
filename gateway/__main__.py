"""`python -m gateway` / `facerec serve gateway`: the HTTP/JSON API and the web page, served by uvicorn."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Sequence

import uvicorn

from facerec.bootstrap import configure_logging
from facerec.metrics import ServiceMetrics, start_metrics_server
from facerec.server import announce
from facerec.settings import SettingError
from gateway.app import build_app
from gateway.config import Settings

log = logging.getLogger(__name__)


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
    settings = Settings.parse(argv, os.environ, "gateway", "The facerec HTTP/JSON API and web page.")
    configure_logging(settings.verbose)
    metrics = ServiceMetrics("gateway")
    try:
        # The metrics port first: a given port is then taken before the HTTP socket's port 0 is picked,
        # which could otherwise land on it.
        if settings.metrics_port:
            start_metrics_server(settings.metrics_port, metrics.registry, settings.host)
        sock = listening_socket(settings.host, settings.port)
    except OSError as exc:
        sys.stderr.write(f"gateway: cannot listen on {settings.host}: {exc.strerror}.\n")
        raise SystemExit(1) from None
    port = sock.getsockname()[1]
    try:
        app = build_app(settings, metrics, on_ready=lambda: announce("gateway", settings.host, port))
    except SettingError as exc:
        sys.stderr.write(f"gateway: {exc}\n")
        raise SystemExit(2) from None
    log.info("gateway in front of the gallery at %s on port %s", settings.gallery, port)
    config = uvicorn.Config(
        app,
        log_level="info" if settings.verbose else "warning",
        access_log=settings.verbose,
        timeout_graceful_shutdown=int(settings.grace_s),
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()

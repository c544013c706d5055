"""`python -m gateway` / `facerec serve gateway`: the HTTP/JSON API and the web page, served by uvicorn."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any, cast

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from facerec.bootstrap import configure_logging
from facerec.metrics import ServiceMetrics, start_metrics_server
from facerec.server import announce
from facerec.settings import SettingError
from gateway.app import build_app
from gateway.config import Settings
from gateway.guard import SECURITY_HEADERS

log = logging.getLogger(__name__)


# Largest request line and headers: h11 refuses more (431) rather than buffering them.
MAX_HEADER_BYTES = 32 * 1024


# A lingering close (what Apache and nginx do): after an answer that closes the connection while the
# client is still sending its body (a refusal sent before the body was read), the gateway half-closes
# (its answer, then FIN) and reads and discards what still comes, up to these bounds, before it closes.
# Closing a socket with unread bytes in it, or that bytes then reach, makes the kernel answer with a TCP
# RST, and a client that gets the RST before it has read the answer loses the answer: it sees a
# "connection reset" instead of the refusal. Bounded in bytes and time, so a body the gateway refused
# still costs it no memory and holds its connection for at most LINGER_S.
LINGER_BYTES = 1024 * 1024
LINGER_S = 2.0


class _ClosesLingering:
    """The transport uvicorn's protocol and its request cycles hold, whose close() lingers (see
    HeaderDeadline._close); every other attribute is the real transport's."""

    def __init__(self, transport: asyncio.Transport, protocol: HeaderDeadline) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol._close()


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's headers: a connection that has not sent
    them within header_timeout_s of opening (or of its previous answer) is closed, so connections that
    trickle their headers in cannot be held open for ever (uvicorn has no such limit of its own). And a
    close while the client is still sending its body lingers (LINGER_BYTES, LINGER_S), so the client
    reads the answer rather than a reset."""

    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._real = transport
        self._linger_left: int | None = None  # bytes still to discard; None: not lingering
        self._linger_timer: asyncio.TimerHandle | None = None
        super().connection_made(cast(asyncio.Transport, _ClosesLingering(transport, self)))
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._linger_left is None:
            super().data_received(data)
            return
        self._linger_left -= len(data)  # discarded: the answer is sent, the request is over
        if self._linger_left <= 0:
            self._real.close()

    def _close(self) -> None:
        """Closes at once, unless the client may still be sending the body of the request just
        answered: then half-closes and lingers, discarding what comes, until the client closes too or a
        bound is reached."""
        still_sending = self.conn.their_state in (h11.SEND_BODY, h11.ERROR)
        if self._linger_left is not None or self._real.is_closing() or not still_sending:
            self._real.close()
            return
        self._linger_left = LINGER_BYTES
        self._real.write_eof()  # FIN once the answer is out: the client reads the answer, then the end
        self._real.resume_reading()  # uvicorn may have paused reading while the body waited to be read
        self._linger_timer = self.loop.call_later(LINGER_S, self._real.close)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE and self._header_timer is not None:
            self._header_timer.cancel()  # the headers are in
            self._header_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse (a bad request line, headers over
        MAX_HEADER_BYTES), as the JSON error every other failure answers, with the security headers."""
        body = json.dumps(
            {
                "code": "INVALID_ARGUMENT",
                "message": "The request is not valid HTTP/1.1.",
                "reason": "INVALID_ARGUMENT",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *SECURITY_HEADERS,
        ]
        for event in (
            h11.Response(status_code=400, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info("closing a connection that sent no complete headers in %g s", self.header_timeout_s)
            self.transport.close()


def protocol(header_timeout_s: float) -> type[H11Protocol]:
    """HeaderDeadline with this deadline (uvicorn builds the protocol from a class)."""
    attributes: dict[str, Any] = {"header_timeout_s": header_timeout_s}
    return type("HeaderDeadlineProtocol", (HeaderDeadline,), attributes)


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
    configure_logging(settings.verbose, log_format=settings.log_format)
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
        # uvicorn's own loggers go to the root's handler (configure_logging): its lines then carry the
        # request id and follow --log-format, instead of uvicorn's own plain-text handlers.
        log_config=None,
        access_log=settings.verbose,
        timeout_graceful_shutdown=int(settings.grace_s),
        lifespan="on",
        http=protocol(settings.header_timeout_s),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        # An idle keep-alive connection is closed after this; one that sends part of a request next is
        # closed by the header deadline.
        timeout_keep_alive=5,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()

"""The gateway's request-id middleware: the edge where a request gets its id.

The caller's X-Request-Id is kept when it is valid (facerec.requestid: at most 128 characters of
A-Z a-z 0-9 . _ : -), else a fresh one replaces it. The id is bound for the whole request (every log
line carries it, and the upstream calls send it to the gallery or the detector in gRPC metadata), kept
as `request.state.request_id` (error bodies name it), and echoed in the X-Request-Id response header.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facerec import requestid

log = logging.getLogger(__name__)

_HEADER = requestid.HTTP_HEADER.lower().encode("latin-1")


class RequestId:
    """Pure ASGI (no BaseHTTPMiddleware): the id is bound in the task that runs the route, and a
    streamed body is not buffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = [value for name, value in scope["headers"] if name == _HEADER]
        candidate = given[0].decode("latin-1") if len(given) == 1 else None
        request_id = requestid.accept(candidate)
        # request.state reads scope["state"].
        scope.setdefault("state", {})["request_id"] = request_id

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
                message["headers"] = [*headers, (_HEADER, request_id.encode("latin-1"))]
            await send(message)

        with requestid.bound(request_id):
            if given and candidate != request_id:
                # INFO, not WARNING: anyone can send odd ids, and each would otherwise cost a log line.
                log.info(
                    "replaced a caller's X-Request-Id that was repeated, too long or held odd characters"
                )
            await self.app(scope, receive, with_header)

"""The gateway's ASGI application: the /v1 routes, errors as JSON, limits, health, docs and the web page.

`build_app(settings)` is separate from `main()`, so a test can serve it on port 0 (or in process) in
front of a real or a fake gallery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facerec.metrics import ServiceMetrics
from facerec.security import channel_credentials
from gateway import models
from gateway.config import Settings
from gateway.errors import HTTP_STATUS, GatewayError, too_large
from gateway.requests import validation_sentence
from gateway.routes import build_router
from gateway.upstream import Channels

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HEALTH_TIMEOUT_S = 3.0
_CODE_OF_HTTP = {status: code for code, status in reversed(HTTP_STATUS.items())}


def build_app(
    settings: Settings,
    metrics: ServiceMetrics | None = None,
    on_ready: Callable[[], None] | None = None,
) -> FastAPI:
    """The application. Reads the TLS CA now (a wrong path fails before serving); the channels are
    opened at start-up, in the server's event loop, and on_ready is called once they are."""
    credentials = channel_credentials(settings.tls_ca)
    metrics = metrics or ServiceMetrics("gateway")
    channels = Channels(settings, credentials)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channels.open()
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            await channels.close()

    app = FastAPI(
        title="facerec",
        description="HTTP/JSON API of the facerec gallery: identify, verify, detect, enroll, manage.",
        version="1",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(_Metrics, metrics=metrics)
    _errors(app)
    app.include_router(build_router(settings, channels))

    @app.get("/healthz", response_model=models.Health, responses={503: {"model": models.ErrorBody}})
    async def healthz() -> Any:
        """SERVING while the gallery answers its gRPC health check."""
        if await channels.gallery.serving(min(HEALTH_TIMEOUT_S, settings.timeout_s)):
            return models.Health(status="SERVING", gallery=settings.gallery)
        raise GatewayError(grpc.StatusCode.UNAVAILABLE, f"The gallery at {settings.gallery} is not serving.")

    # The docs page loads Swagger UI from files installed with the gateway: nothing from a CDN.
    docs_assets = resources.files("fastapi_offline") / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(docs_assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="facerec API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def _error_response(error: GatewayError, request: Request | None = None) -> JSONResponse:
    if request is not None:
        request.state.grpc_code = error.code.name
    headers = {"WWW-Authenticate": "Bearer"} if error.code == grpc.StatusCode.UNAUTHENTICATED else None
    return JSONResponse(error.body(), status_code=error.http_status, headers=headers)


def _errors(app: FastAPI) -> None:
    """Every error answers {"code", "message"}: the gateway's own, the framework's and the gallery's."""

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return _error_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(
            GatewayError(grpc.StatusCode.INVALID_ARGUMENT, validation_sentence(list(exc.errors()))), request
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = _CODE_OF_HTTP.get(exc.status_code, grpc.StatusCode.UNKNOWN)
        if exc.status_code == 404:
            message = f"No route {request.method} {request.url.path}."
        elif exc.status_code == 405:
            message = f"{request.url.path} does not answer {request.method}."
            code = grpc.StatusCode.UNIMPLEMENTED
        else:
            message = str(exc.detail).rstrip(".") + "."
        response = _error_response(GatewayError(code, message), request)
        response.status_code = exc.status_code
        return response


class _TooLarge(Exception):
    pass


class _BodyLimit:
    """Refuses a body over max_bytes with 413: at once from Content-Length, before reading any of it,
    or (chunked bodies) as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = too_large(f"The request is larger than the limit of {self.max_bytes} bytes.")
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await _send_error(scope, send, error)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if started:
                raise
            await _send_error(scope, send, error)


async def _send_error(scope: Scope, send: Send, error: GatewayError) -> None:
    scope.setdefault("state", {})["grpc_code"] = error.code.name
    # The client may still be sending the body it announced; closing tells it to stop.
    response = _error_response(error)
    response.headers["Connection"] = "close"
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class _Metrics:
    """Counts and times every API call in facerec_requests_total / facerec_request_seconds, with the
    route as `method` and the gRPC code name the answer stands for as `code`, like the other services."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            recorded = True
            # The route's template, never the raw path: a label per probed URL would grow without bound.
            route = getattr(scope.get("route"), "path", "(no route)")
            name = f"{scope['method']} {route}"
            code_name = scope.get("state", {}).get("grpc_code")
            code = (
                grpc.StatusCode[code_name]
                if code_name
                else _CODE_OF_HTTP.get(status, grpc.StatusCode.UNKNOWN)
            )
            self.metrics.record_call(name, code, time.perf_counter() - start)

        async def watched(message: Message) -> None:
            # Counted before the answer leaves, so a client that reads the metrics next sees its call.
            if message["type"] == "http.response.start":
                record(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            if not recorded:
                record(500)

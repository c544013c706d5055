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
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facerec import errors
from facerec.metrics import ServiceMetrics
from facerec.security import channel_credentials, load_grants
from facerec.status import status_of
from gateway import models, openapi
from gateway.config import Settings
from gateway.errors import HTTP_STATUS, body, headers, http_status, request_id_of
from gateway.guard import Authentication, BodyLimit, CrossSite, HostCheck, SecurityHeaders
from gateway.request_id import RequestId
from gateway.requests import validation_field, validation_sentence
from gateway.routes import build_router, collection_of
from gateway.upstream import Channels

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_CODE_OF_HTTP = {status: code for code, status in reversed(HTTP_STATUS.items())}


def build_app(
    settings: Settings,
    metrics: ServiceMetrics | None = None,
    on_ready: Callable[[], None] | None = None,
) -> FastAPI:
    """The application. Reads the TLS CA and the tokens now (a wrong path fails before serving); the
    channels are opened at start-up, in the server's event loop, and on_ready is called once they are."""
    credentials = channel_credentials(settings.tls_ca)
    tokens = load_grants(settings.tokens_file, settings.tokens, Settings.PREFIX)
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
    openapi.install(app)
    # The last added runs first: headers on every answer, then Host, site, token, and body limits,
    # all before a route reads a byte of the body.
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_request_bytes,
        max_json_bytes=settings.max_json_bytes,
        timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(Authentication, tokens=tokens, collection_of=collection_of)
    app.add_middleware(CrossSite, origins=settings.origins())
    app.add_middleware(HostCheck, names=settings.host_names())
    app.add_middleware(_Metrics, metrics=metrics)
    app.add_middleware(SecurityHeaders)
    # Outermost: every answer, refusals included, carries the id, and every log line of the request.
    app.add_middleware(RequestId)
    _errors(app)
    app.include_router(build_router(settings, channels))

    @app.get("/healthz", response_model=models.Health, tags=["system"], operation_id="Healthz")
    async def healthz() -> Any:
        """Alive: the gateway answers. Says nothing of the services behind it (see /readyz)."""
        return models.Health(status="SERVING")

    @app.get(
        "/readyz",
        response_model=models.Health,
        responses={503: openapi.ERRORS[503]},
        tags=["system"],
        operation_id="Readyz",
    )
    async def readyz() -> Any:
        """Ready: the gallery, the detector and the embedder each answer their health check within
        a short deadline. Names the services that do not, never their addresses."""
        timeout_s = min(settings.ready_timeout_s, settings.timeout_s)
        answers = await channels.serving(timeout_s)
        down = [name for name, serving in answers.items() if not serving]
        if down:
            raise errors.Unavailable(f"Not serving: {', '.join(down)}.")
        return models.Health(status="SERVING")

    # The docs page loads Swagger UI from files installed with the gateway (nothing from a CDN), and
    # starts it from a file rather than an inline script, which the page's CSP forbids.
    docs_assets = resources.files("fastapi_offline") / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(docs_assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def _error_response(error: errors.FacerecError, request: Request | None = None) -> JSONResponse:
    if request is not None:
        request.state.grpc_code = status_of(error).name
    request_id = request_id_of(request.scope) if request is not None else ""
    return JSONResponse(body(error, request_id), status_code=http_status(error), headers=headers(error))


def _errors(app: FastAPI) -> None:
    """Every error answers {"code", "message", "reason"}: the gateway's own, the framework's and the
    services'."""

    @app.exception_handler(errors.FacerecError)
    async def facerec_error(request: Request, exc: errors.FacerecError) -> JSONResponse:
        return _error_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = list(exc.errors())
        error = errors.InvalidInput(validation_sentence(problems), field=validation_field(problems))
        return _error_response(error, request)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 405:
            message = f"{request.url.path} does not answer {request.method}."
            return _error_response(
                errors.Unimplemented(message, reason=errors.Reason.METHOD_NOT_ALLOWED), request
            )
        if exc.status_code == 404:
            error: errors.FacerecError = errors.NotFound(f"No route {request.method} {request.url.path}.")
        else:
            error = errors.InvalidInput(str(exc.detail).rstrip(".") + ".")
        response = _error_response(error, request)
        response.status_code = exc.status_code
        return response


class _Metrics:
    """Counts and times every API call in facerec_http_requests_total / facerec_http_request_seconds,
    with the route as `route` and the gRPC code name the answer stands for as `code`."""

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
            self.metrics.record_http(name, code, time.perf_counter() - start)

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

"""The gateway's asynchronous gRPC channels to the gallery and the detector.

One grpc.aio channel per service with the `round_robin` policy over every address its target resolves
to (replicas share the load, as the gallery's own channels do), gRPC-level retries of UNAVAILABLE, a
deadline on every call, keepalive pings as the services expect them (facerec.keepalive), and the
caller's `authorization` header passed on as gRPC metadata, so the gallery, not the gateway, decides who
may do what, beside the request's id (x-request-id, facerec.requestid).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facerec import keepalive, requestid
from facerec.channels import channel_target, service_config
from facerec.errors import Unavailable
from facerec.v1 import detector_pb2_grpc, embedding_pb2_grpc, gallery_pb2_grpc
from gateway.config import Settings
from gateway.errors import from_rpc


class Upstream:
    """One round_robin channel to a service at `addresses`, with a deadline cap of timeout_s per call."""

    def __init__(
        self,
        kind: str,
        service: str,
        stub: Any,
        addresses: str,
        timeout_s: float,
        max_message_bytes: int,
        credentials: grpc.ChannelCredentials | None,
    ) -> None:
        self.service = service
        self.what = f"the {kind} at {addresses}"
        self.timeout_s = timeout_s
        options = [
            ("grpc.service_config", service_config(service)),
            ("grpc.enable_retries", 1),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # A request larger than this buffer is never retried once sent.
            ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
            *keepalive.channel_options(),
        ]
        target = channel_target(addresses)
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(target, options=options)
        else:
            self.channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = stub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    async def call(self, method: str, request: Any, authorization: str = "") -> Any:
        """The RPC `method` with the deadline and the caller's authorization; failures as facerec errors
        (facerec.remote: the service's class, sentence and reason)."""
        metadata = requestid.metadata(*((("authorization", authorization),) if authorization else ()))
        try:
            return await getattr(self._stub, method)(request, timeout=self.timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc(exc, self.what, self.timeout_s) from None

    async def serving(self, timeout_s: float) -> bool:
        """Whether the service answers SERVING to a gRPC health check (open without a token)."""
        try:
            answer = await self._health.Check(
                health_pb2.HealthCheckRequest(service=self.service),
                timeout=timeout_s,
                metadata=requestid.metadata(),
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await self.channel.close(None)


class Channels:
    """The gallery and detector upstreams, opened in the server's event loop at start-up (a grpc.aio
    channel belongs to the loop it was made in)."""

    def __init__(self, settings: Settings, credentials: grpc.ChannelCredentials | None) -> None:
        self._settings = settings
        self._credentials = credentials
        self._gallery: Upstream | None = None
        self._detector: Upstream | None = None
        self._embedder: Upstream | None = None

    def open(self) -> None:
        s = self._settings
        self._gallery = Upstream(
            "gallery",
            "facerec.v1.Gallery",
            gallery_pb2_grpc.GalleryStub,
            s.gallery,
            s.timeout_s,
            s.max_request_bytes,
            self._credentials,
        )
        self._detector = Upstream(
            "detector",
            "facerec.v1.Detector",
            detector_pb2_grpc.DetectorStub,
            s.detector,
            s.timeout_s,
            s.max_request_bytes,
            self._credentials,
        )
        # Asked only for its health (/readyz): the gallery alone calls the embedder.
        self._embedder = Upstream(
            "embedder",
            "facerec.v1.Embedder",
            embedding_pb2_grpc.EmbedderStub,
            s.embedder,
            s.timeout_s,
            s.max_request_bytes,
            self._credentials,
        )

    async def serving(self, timeout_s: float) -> dict[str, bool]:
        """Whether each service answers SERVING within timeout_s, asked all at once."""
        upstreams = {
            "gallery": self.gallery,
            "detector": self.detector,
            "embedder": self._opened(self._embedder),
        }
        answers = await asyncio.gather(*(u.serving(timeout_s) for u in upstreams.values()))
        return dict(zip(upstreams, answers, strict=True))

    @property
    def gallery(self) -> Upstream:
        return self._opened(self._gallery)

    @property
    def detector(self) -> Upstream:
        return self._opened(self._detector)

    @staticmethod
    def _opened(upstream: Upstream | None) -> Upstream:
        if upstream is None:
            raise Unavailable("The gateway is starting.")
        return upstream

    async def close(self) -> None:
        for upstream in (self._gallery, self._detector, self._embedder):
            if upstream is not None:
                await upstream.close()

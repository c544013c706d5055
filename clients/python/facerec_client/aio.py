"""AsyncGallery: facerec_client.Gallery for asyncio (grpc.aio), the same methods, answers, errors,
deadlines and retries. Create it inside the running event loop (grpc.aio binds a channel to its loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from facerec_client.client import IDEMPOTENT, Options, Requests, _embedding
from facerec_client.collection_calls import AsyncCollectionCalls
from facerec_client.errors import from_rpc_error
from facerec_client.pictures import Picture
from facerec_client.results import (
    EnrollResult,
    FaceRecord,
    IdentifyResult,
    Identity,
    SearchHit,
    Stats,
    TrainResult,
    VerifyResult,
)
from facerec_client.v1 import gallery_pb2, gallery_pb2_grpc

T = TypeVar("T")


class AsyncGallery(AsyncCollectionCalls):
    """An asyncio client of one gallery; `async with AsyncGallery(address) as gallery: await gallery.identify(p)`."""

    def __init__(
        self, address: str | None = None, *, options: Options | None = None, **settings: Any
    ) -> None:
        base = options or Options()
        self.options = Options(**{**base.__dict__, **settings, **({"address": address} if address else {})})
        credentials = self.options.credentials()
        target, opts = self.options.target, self.options.channel_options
        self._channel = (
            grpc.aio.insecure_channel(target, options=opts)
            if credentials is None
            else grpc.aio.secure_channel(target, credentials, options=opts)
        )
        self._what = f"the gallery at {self.options.address}"
        self._stub = gallery_pb2_grpc.GalleryStub(self._channel)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **settings: Any) -> AsyncGallery:
        return cls(options=Options.from_env(environ, **settings))

    async def __aenter__(self) -> AsyncGallery:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def _call(self, name: str, request: Message, reply: type[T], timeout_s: float | None) -> T:
        timeout = self.options.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        method: Callable[..., Any] = getattr(self._stub, name)
        attempt = 0
        while True:
            attempt += 1
            try:
                answer: T = await method(
                    request, timeout=max(deadline - time.monotonic(), 0.0), metadata=self.options.metadata
                )
                return answer
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc, self._what, timeout)
            delay = self.options.retry.delay_s(error, attempt, name in IDEMPOTENT)
            if delay is None or time.monotonic() + delay >= deadline:
                raise error
            await asyncio.sleep(delay)

    async def enroll(
        self,
        identity: str,
        pictures: Picture | Iterable[Picture] = (),
        *,
        embeddings: Iterable[Iterable[float]] = (),
        strict: bool = False,
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> EnrollResult:
        request = Requests.enroll(identity, pictures, embeddings, strict, self._in(collection))
        return EnrollResult.of(await self._call("Enroll", request, gallery_pb2.EnrollResponse, timeout_s))

    async def identify(
        self,
        picture: Picture | None = None,
        *,
        embedding: Iterable[float] | None = None,
        top_k: int = 0,
        threshold: float = 0.0,
        operating_point: str = "",
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> IdentifyResult:
        request = Requests.identify(
            picture, embedding, top_k, threshold, operating_point, self._in(collection)
        )
        reply = await self._call("Identify", request, gallery_pb2.IdentifyResponse, timeout_s)
        return IdentifyResult.of(reply)

    async def verify(
        self,
        a: Picture,
        b: Picture | None = None,
        *,
        identity: str = "",
        threshold: float = 0.0,
        operating_point: str = "",
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> VerifyResult:
        request = Requests.verify(a, b, identity, threshold, operating_point, self._in(collection))
        return VerifyResult.of(await self._call("Verify", request, gallery_pb2.VerifyResponse, timeout_s))

    async def search(
        self,
        embedding: Iterable[float],
        *,
        top_k: int = 0,
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> tuple[SearchHit, ...]:
        request = gallery_pb2.SearchRequest(
            embedding=_embedding(embedding), top_k=top_k, collection=self._in(collection)
        )
        reply = await self._call("Search", request, gallery_pb2.SearchResponse, timeout_s)
        return Requests.search_hits(reply)

    async def identities(
        self, *, page_size: int = 1000, collection: str | None = None, timeout_s: float | None = None
    ) -> list[Identity]:
        found: list[Identity] = []
        token = ""
        while True:
            request = gallery_pb2.ListIdentitiesRequest(
                page_size=page_size, page_token=token, collection=self._in(collection)
            )
            page = await self._call("ListIdentities", request, gallery_pb2.ListIdentitiesResponse, timeout_s)
            found.extend(Identity.of(i) for i in page.identities)
            token = page.next_page_token
            if not token:
                return found

    async def identity(
        self,
        name: str,
        *,
        include_embeddings: bool = False,
        include_pictures: bool = False,
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> Identity:
        request = Requests.identity_page(name, include_embeddings, include_pictures, self._in(collection))
        faces: list[FaceRecord] = []
        while True:  # every page, as Gallery.identity
            reply = await self._call("GetIdentity", request, gallery_pb2.GetIdentityResponse, timeout_s)
            faces.extend(FaceRecord.of(f) for f in reply.faces)
            request.page_token = reply.next_page_token
            if not request.page_token:
                return Identity.of(reply.identity, tuple(faces))

    async def remove_identity(
        self, name: str, *, collection: str | None = None, timeout_s: float | None = None
    ) -> int:
        request = gallery_pb2.RemoveIdentityRequest(identity=name, collection=self._in(collection))
        reply = await self._call("RemoveIdentity", request, gallery_pb2.RemoveIdentityResponse, timeout_s)
        return reply.faces_removed

    async def remove_face(
        self, face_id: int, *, collection: str | None = None, timeout_s: float | None = None
    ) -> str:
        request = gallery_pb2.RemoveFaceRequest(face_id=face_id, collection=self._in(collection))
        reply = await self._call("RemoveFace", request, gallery_pb2.RemoveFaceResponse, timeout_s)
        return reply.identity

    async def train(self, *, collection: str | None = None, timeout_s: float | None = None) -> TrainResult:
        request = gallery_pb2.TrainRequest(collection=self._in(collection))
        reply = await self._call("Train", request, gallery_pb2.TrainResponse, timeout_s)
        return Requests.train(reply)

    async def stats(self, *, collection: str | None = None, timeout_s: float | None = None) -> Stats:
        request = gallery_pb2.StatsRequest(collection=self._in(collection))
        reply = await self._call("Stats", request, gallery_pb2.StatsResponse, timeout_s)
        return Stats.of(reply)

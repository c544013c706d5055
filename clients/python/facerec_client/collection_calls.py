"""The calls of the collections and the face calls they brought (rename, a face's picture), as mixins of
Gallery (CollectionCalls) and AsyncGallery (AsyncCollectionCalls) over their own `_call`: creating,
reading, listing and deleting collections, re-embedding one (an operation, polled until done), and storing
its operating points."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import Message

from facerec_client.collections import Collection, CollectionRemoved, Operation
from facerec_client.errors import DeadlineExceeded
from facerec_client.results import FacePicture, Identity, OperatingPoint
from facerec_client.v1 import common_pb2, gallery_pb2

if TYPE_CHECKING:
    from facerec_client.client import Options

T = TypeVar("T")
# How often wait_operation asks, by default: a re-embedding moves hundreds of faces a second.
POLL_S = 0.5


def contract(model: str = "", detector: str = "", alignment: str = "") -> gallery_pb2.EmbeddingContract:
    """A contract; "" fields = the deployment's defaults (creating) or the collection's own (re-embedding)."""
    return gallery_pb2.EmbeddingContract(model=model, detector=detector, alignment=alignment)


def _point(point: OperatingPoint) -> common_pb2.OperatingPoint:
    return common_pb2.OperatingPoint(
        name=point.name,
        threshold=point.threshold,
        far=point.far,
        far_upper=point.far_upper,
        tar=point.tar,
        genuine_pairs=point.genuine_pairs,
        impostor_pairs=point.impostor_pairs,
    )


def points_request(
    collection: str,
    points: Iterable[OperatingPoint],
    model: str,
    operating_point: str,
    identification_point: OperatingPoint | None,
) -> gallery_pb2.SetOperatingPointsRequest:
    request = gallery_pb2.SetOperatingPointsRequest(
        collection=collection,
        model=model,
        operating_points=[_point(p) for p in points],
        operating_point=operating_point,
    )
    if identification_point is not None:
        request.identification_point.CopyFrom(_point(identification_point))
    return request


def _operation_name(operation: str | Operation) -> str:
    return operation.name if isinstance(operation, Operation) else operation


def _late(name: str, timeout_s: float) -> DeadlineExceeded:
    return DeadlineExceeded(f"The operation {name} was not done within {timeout_s:g} s (it goes on).")


class _Collected:
    """What both mixins need of their client: its options (the default collection)."""

    options: Options

    def _in(self, collection: str | None) -> str:
        """The collection of a call: its own, else the client's ("" = `default`)."""
        return self.options.collection if collection is None else collection


class CollectionCalls(_Collected):
    """Gallery's collection calls (it supplies _call)."""

    def _call(self, name: str, request: Message, reply: type[T], timeout_s: float | None) -> T:
        raise NotImplementedError

    def rename_identity(
        self, name: str, new_name: str, *, collection: str | None = None, timeout_s: float | None = None
    ) -> Identity:
        """Renames an identity, keeping its faces; returns it under its new name (Unicode NFC)."""
        request = gallery_pb2.RenameIdentityRequest(
            collection=self._in(collection), identity=name, new_name=new_name
        )
        reply = self._call("RenameIdentity", request, gallery_pb2.RenameIdentityResponse, timeout_s)
        return Identity.of(reply.identity)

    def face_picture(
        self, face_id: int, *, collection: str | None = None, timeout_s: float | None = None
    ) -> FacePicture:
        """A face's kept picture (NotFound for a face that keeps none)."""
        request = gallery_pb2.GetFacePictureRequest(collection=self._in(collection), face_id=face_id)
        return FacePicture.of(self._call("GetFacePicture", request, gallery_pb2.FacePicture, timeout_s))

    def create_collection(
        self,
        name: str,
        *,
        model: str = "",
        detector: str = "",
        alignment: str = "",
        keep_source_pictures: bool = False,
        timeout_s: float | None = None,
    ) -> Collection:
        """Creates a collection pinned to its contract ("" = the deployment's default); AlreadyExists when
        the name is taken. Needs an admin token where tokens are required."""
        request = gallery_pb2.CreateCollectionRequest(
            name=name,
            contract=contract(model, detector, alignment),
            keep_source_pictures=keep_source_pictures,
        )
        return Collection.of(self._call("CreateCollection", request, gallery_pb2.Collection, timeout_s))

    def get_collection(self, name: str | None = None, *, timeout_s: float | None = None) -> Collection:
        """One collection (default: the client's) with its counts, contract, points and state."""
        request = gallery_pb2.GetCollectionRequest(name=self._in(name) or "default")
        return Collection.of(self._call("GetCollection", request, gallery_pb2.Collection, timeout_s))

    def list_collections(self, *, page_size: int = 100, timeout_s: float | None = None) -> list[Collection]:
        """Every collection the token may use, in name order (all pages)."""
        found: list[Collection] = []
        token = ""
        while True:
            request = gallery_pb2.ListCollectionsRequest(page_size=page_size, page_token=token)
            page = self._call("ListCollections", request, gallery_pb2.ListCollectionsResponse, timeout_s)
            found.extend(Collection.of(c) for c in page.collections)
            token = page.next_page_token
            if not token:
                return found

    def delete_collection(self, name: str, *, timeout_s: float | None = None) -> CollectionRemoved:
        """Removes a collection with everything it holds, for good (not `default`)."""
        request = gallery_pb2.DeleteCollectionRequest(name=name)
        reply = self._call("DeleteCollection", request, gallery_pb2.DeleteCollectionResponse, timeout_s)
        return CollectionRemoved(reply.identities_removed, reply.faces_removed)

    def reembed(
        self,
        name: str | None = None,
        *,
        model: str = "",
        detector: str = "",
        alignment: str = "",
        drop_failed: bool = False,
        timeout_s: float | None = None,
    ) -> Operation:
        """Starts re-embedding a collection (default: the client's) under a new contract ("" fields keep
        the current ones); poll the answer with get_operation or wait_operation."""
        request = gallery_pb2.ReembedRequest(
            collection=self._in(name), contract=contract(model, detector, alignment), drop_failed=drop_failed
        )
        return Operation.of(self._call("Reembed", request, gallery_pb2.Operation, timeout_s))

    def get_operation(self, name: str | Operation, *, timeout_s: float | None = None) -> Operation:
        """An operation as it is now ("operations/<id>", or an Operation)."""
        request = gallery_pb2.GetOperationRequest(name=_operation_name(name))
        return Operation.of(self._call("GetOperation", request, gallery_pb2.Operation, timeout_s))

    def wait_operation(
        self,
        operation: str | Operation,
        *,
        poll_s: float = POLL_S,
        timeout_s: float | None = None,
        on_progress: Callable[[Operation], Any] | None = None,
    ) -> Operation:
        """Polls an operation until it is done and returns it (succeeded or with its error); on_progress
        sees each poll. timeout_s bounds the whole wait (None: no bound): DeadlineExceeded after it."""
        name = _operation_name(operation)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            found = self.get_operation(name)
            if on_progress is not None:
                on_progress(found)
            if found.done:
                return found
            if deadline is not None and time.monotonic() + poll_s > deadline:
                raise _late(name, timeout_s or 0.0)
            time.sleep(poll_s)

    def set_operating_points(
        self,
        points: Iterable[OperatingPoint],
        *,
        model: str,
        operating_point: str,
        identification_point: OperatingPoint | None = None,
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> Collection:
        """Stores a collection's operating points (fitted on `model`, its own): every replica serves them."""
        request = points_request(self._in(collection), points, model, operating_point, identification_point)
        return Collection.of(self._call("SetOperatingPoints", request, gallery_pb2.Collection, timeout_s))


class AsyncCollectionCalls(_Collected):
    """AsyncGallery's collection calls: CollectionCalls' methods, awaited."""

    async def _call(self, name: str, request: Message, reply: type[T], timeout_s: float | None) -> T:
        raise NotImplementedError

    async def rename_identity(
        self, name: str, new_name: str, *, collection: str | None = None, timeout_s: float | None = None
    ) -> Identity:
        request = gallery_pb2.RenameIdentityRequest(
            collection=self._in(collection), identity=name, new_name=new_name
        )
        reply = await self._call("RenameIdentity", request, gallery_pb2.RenameIdentityResponse, timeout_s)
        return Identity.of(reply.identity)

    async def face_picture(
        self, face_id: int, *, collection: str | None = None, timeout_s: float | None = None
    ) -> FacePicture:
        request = gallery_pb2.GetFacePictureRequest(collection=self._in(collection), face_id=face_id)
        return FacePicture.of(await self._call("GetFacePicture", request, gallery_pb2.FacePicture, timeout_s))

    async def create_collection(
        self,
        name: str,
        *,
        model: str = "",
        detector: str = "",
        alignment: str = "",
        keep_source_pictures: bool = False,
        timeout_s: float | None = None,
    ) -> Collection:
        request = gallery_pb2.CreateCollectionRequest(
            name=name,
            contract=contract(model, detector, alignment),
            keep_source_pictures=keep_source_pictures,
        )
        return Collection.of(await self._call("CreateCollection", request, gallery_pb2.Collection, timeout_s))

    async def get_collection(self, name: str | None = None, *, timeout_s: float | None = None) -> Collection:
        request = gallery_pb2.GetCollectionRequest(name=self._in(name) or "default")
        return Collection.of(await self._call("GetCollection", request, gallery_pb2.Collection, timeout_s))

    async def list_collections(
        self, *, page_size: int = 100, timeout_s: float | None = None
    ) -> list[Collection]:
        found: list[Collection] = []
        token = ""
        while True:
            request = gallery_pb2.ListCollectionsRequest(page_size=page_size, page_token=token)
            page = await self._call(
                "ListCollections", request, gallery_pb2.ListCollectionsResponse, timeout_s
            )
            found.extend(Collection.of(c) for c in page.collections)
            token = page.next_page_token
            if not token:
                return found

    async def delete_collection(self, name: str, *, timeout_s: float | None = None) -> CollectionRemoved:
        request = gallery_pb2.DeleteCollectionRequest(name=name)
        reply = await self._call("DeleteCollection", request, gallery_pb2.DeleteCollectionResponse, timeout_s)
        return CollectionRemoved(reply.identities_removed, reply.faces_removed)

    async def reembed(
        self,
        name: str | None = None,
        *,
        model: str = "",
        detector: str = "",
        alignment: str = "",
        drop_failed: bool = False,
        timeout_s: float | None = None,
    ) -> Operation:
        request = gallery_pb2.ReembedRequest(
            collection=self._in(name), contract=contract(model, detector, alignment), drop_failed=drop_failed
        )
        return Operation.of(await self._call("Reembed", request, gallery_pb2.Operation, timeout_s))

    async def get_operation(self, name: str | Operation, *, timeout_s: float | None = None) -> Operation:
        request = gallery_pb2.GetOperationRequest(name=_operation_name(name))
        return Operation.of(await self._call("GetOperation", request, gallery_pb2.Operation, timeout_s))

    async def wait_operation(
        self,
        operation: str | Operation,
        *,
        poll_s: float = POLL_S,
        timeout_s: float | None = None,
        on_progress: Callable[[Operation], Any] | None = None,
    ) -> Operation:
        name = _operation_name(operation)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            found = await self.get_operation(name)
            if on_progress is not None:
                on_progress(found)
            if found.done:
                return found
            if deadline is not None and time.monotonic() + poll_s > deadline:
                raise _late(name, timeout_s or 0.0)
            await asyncio.sleep(poll_s)

    async def set_operating_points(
        self,
        points: Iterable[OperatingPoint],
        *,
        model: str,
        operating_point: str,
        identification_point: OperatingPoint | None = None,
        collection: str | None = None,
        timeout_s: float | None = None,
    ) -> Collection:
        request = points_request(self._in(collection), points, model, operating_point, identification_point)
        return Collection.of(
            await self._call("SetOperatingPoints", request, gallery_pb2.Collection, timeout_s)
        )

"""The Gallery servicer's collection RPCs (CreateCollection, GetCollection, ListCollections,
DeleteCollection, SetOperatingPoints, Reembed, GetOperation) and their proto ⇄ row translation, over
gallery/collections.py's CollectionManager. A mixin of gallery/service.py's GalleryServicer."""

from __future__ import annotations

from typing import Protocol

import grpc

from facerec import errors
from facerec.calibration import IDENTIFICATION, OperatingPoint
from facerec.calibration_proto import point_proto
from facerec.errors import InvalidInput, NotFound, Precondition, Reason, Unimplemented
from facerec.v1 import common_pb2, gallery_pb2
from gallery import validation
from gallery.collections import CollectionManager, points_text
from gallery.ports import DEFAULT_COLLECTION, CollectionRow, Contract, OperationRow

OPERATION_PREFIX = "operations/"


class Operations(Protocol):
    """Long-running operations (gallery/reembed.py's runner): start a re-embed, read one back."""

    def start(self, collection: str, target: Contract, drop_failed: bool) -> OperationRow: ...
    def get(self, operation_id: str) -> OperationRow: ...


def contract_proto(c: Contract) -> gallery_pb2.EmbeddingContract:
    return gallery_pb2.EmbeddingContract(detector=c.detector, alignment=c.alignment, model=c.model)


def contract_of(c: gallery_pb2.EmbeddingContract) -> Contract:
    return Contract(c.detector, c.alignment, c.model)


def operation_id(name: str) -> str:
    """The id in an operation's name, "operations/<id>" (a bare id is accepted too). NotFound when empty."""
    found = name[len(OPERATION_PREFIX) :] if name.startswith(OPERATION_PREFIX) else name
    if not found or "/" in found:
        raise NotFound(f"There is no operation named {name!r}; give the name Reembed answered.")
    return found


def _point(p: common_pb2.OperatingPoint) -> OperatingPoint:
    return OperatingPoint(
        p.name, float(p.threshold), p.far, p.far_upper, p.tar, int(p.genuine_pairs), int(p.impostor_pairs)
    )


def _error_class(reason: str) -> type[errors.FacerecError]:
    """The error class a reason belongs to (an operation keeps its error as a message and a reason)."""
    stack: list[type[errors.FacerecError]] = [errors.FacerecError]
    while stack:
        cls = stack.pop()
        if cls is not errors.FacerecError and reason in cls.reasons:
            return cls
        stack.extend(cls.__subclasses__())
    return errors.Internal


class CollectionRpcs:
    """The collection RPCs; `_manager` is the CollectionManager (None when the servicer serves one
    gallery only, for tests and tools built on a single facade), `_operations` the re-embed runner."""

    _manager: CollectionManager | None
    _operations: Operations | None

    def _collections(self) -> CollectionManager:
        if self._manager is None:
            raise Unimplemented("This gallery serves only the default collection.")
        return self._manager

    def collection_proto(self, row: CollectionRow) -> gallery_pb2.Collection:
        """A collection as the API shows it: its row, its counts and the points it serves."""
        manager = self._collections()
        store = manager.storage(row.name).store
        identities, faces = store.counts()
        without_picture = store.faces_without_picture()
        current = manager.calibration_of(row)
        return gallery_pb2.Collection(
            name=row.name,
            contract=contract_proto(row.contract),
            identities=identities,
            faces=faces,
            faces_without_picture=without_picture,
            state=gallery_pb2.COLLECTION_REEMBEDDING if row.operation else gallery_pb2.COLLECTION_READY,
            operation=OPERATION_PREFIX + row.operation if row.operation else "",
            threshold=current.threshold,
            identification_threshold=current.identification_threshold,
            operating_points=[point_proto(p) for p in current.points],
            operating_point=current.operating_point,
            identification_point=point_proto(current.identification) if current.identification else None,
            threshold_source=current.source,
            keep_source_pictures=row.keep_source_pictures,
            created_at_ms=row.created_at_ms,
        )

    def operation_proto(self, op: OperationRow) -> gallery_pb2.Operation:
        answer = gallery_pb2.Operation(
            name=OPERATION_PREFIX + op.operation_id,
            done=op.done,
            metadata=gallery_pb2.OperationMetadata(
                kind=op.kind,
                collection=op.collection,
                source=contract_proto(op.source),
                target=contract_proto(op.target),
                faces_total=op.faces_total,
                faces_done=op.faces_done,
                stage=op.stage,
                failed_faces=[
                    gallery_pb2.FailedFace(face_id=f.face_id, identity=f.identity, reason=f.reason)
                    for f in op.failed
                ],
                created_at_ms=op.created_at_ms,
                updated_at_ms=op.updated_at_ms,
            ),
        )
        if op.done and op.error:
            exc = _error_class(op.error_reason)(op.error, reason=op.error_reason or None)
            answer.error.CopyFrom(
                common_pb2.Error(code=_code(exc), message=op.error, reason=exc.reason, field="")
            )
        elif op.done:
            try:
                answer.response.CopyFrom(
                    self.collection_proto(self._collections().catalog.get(op.collection))
                )
            except NotFound:  # deleted since it ended
                pass
        return answer

    # --- RPCs ------------------------------------------------------------------------------------

    def CreateCollection(
        self, request: gallery_pb2.CreateCollectionRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.Collection:
        row = self._collections().create(
            request.name, contract_of(request.contract), request.keep_source_pictures
        )
        return self.collection_proto(row)

    def GetCollection(
        self, request: gallery_pb2.GetCollectionRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.Collection:
        # The catalog's row, not this replica's copy: a Reembed started a moment ago shows at once.
        return self.collection_proto(self._collections().catalog.get(request.name or DEFAULT_COLLECTION))

    def ListCollections(
        self, request: gallery_pb2.ListCollectionsRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.ListCollectionsResponse:
        manager = self._collections()
        size = validation.page_size(request.page_size)
        after = validation.decode_page_token(request.page_token)
        rows = [r for r in manager.catalog.collections() if r.name > after]
        page, more = rows[:size], len(rows) > size
        shown = []
        for row in page:
            try:
                shown.append(self.collection_proto(row))
            except NotFound:  # deleted between the two reads
                continue
        return gallery_pb2.ListCollectionsResponse(
            collections=shown, next_page_token=validation.encode_page_token(page[-1].name) if more else ""
        )

    def DeleteCollection(
        self, request: gallery_pb2.DeleteCollectionRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.DeleteCollectionResponse:
        identities, faces = self._collections().delete(request.name)
        return gallery_pb2.DeleteCollectionResponse(identities_removed=identities, faces_removed=faces)

    def SetOperatingPoints(
        self, request: gallery_pb2.SetOperatingPointsRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.Collection:
        manager = self._collections()
        name = request.collection or DEFAULT_COLLECTION
        row = manager.catalog.get(name)
        if request.model != row.contract.model:
            raise Precondition(
                f"The points were fitted on model {request.model!r}, but collection {name!r} holds "
                f"{row.contract.model!r}.",
                reason=Reason.MODEL_MISMATCH,
                field="model",
            )
        identification = None
        if request.HasField("identification_point"):
            identification = _point(request.identification_point)
            if identification.name not in ("", IDENTIFICATION):
                raise InvalidInput(
                    f"The identification point is named {IDENTIFICATION!r}, not {identification.name!r}.",
                    field="identification_point.name",
                )
            identification = OperatingPoint(IDENTIFICATION, *_fields(identification))
        text = points_text(
            row.contract.model,
            [_point(p) for p in request.operating_points],
            request.operating_point,
            identification,
            manager.calibration_of(row),
        )
        return self.collection_proto(manager.set_points(name, text))

    def Reembed(
        self, request: gallery_pb2.ReembedRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.Operation:
        manager = self._collections()
        if self._operations is None:
            raise Unimplemented("Re-embedding is not available in this gallery.")
        name = request.collection or DEFAULT_COLLECTION
        current = manager.catalog.get(name).contract
        asked = contract_of(request.contract)
        # Unset fields keep the collection's current ones (not the deployment's defaults).
        target = manager.contract_for(
            Contract(
                asked.detector or current.detector,
                asked.alignment or current.alignment,
                asked.model or current.model,
            )
        )
        return self.operation_proto(self._operations.start(name, target, request.drop_failed))

    def GetOperation(
        self, request: gallery_pb2.GetOperationRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.Operation:
        self._collections()
        op_id = operation_id(request.name)
        if self._operations is not None:
            return self.operation_proto(self._operations.get(op_id))
        return self.operation_proto(self._collections().catalog.operation(op_id))


def _fields(p: OperatingPoint) -> tuple[float, float, float, float, int, int]:
    return (p.threshold, p.far, p.far_upper, p.tar, p.genuine_pairs, p.impostor_pairs)


def _code(exc: errors.FacerecError) -> int:
    from facerec.status import status_of

    return int(status_of(exc).value[0])

"""The Gallery servicer: proto ⇄ facade translation only, and build_server. Errors are raised as
facerec errors and mapped to status codes by the shared interceptor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from facerec.calibration_proto import point_proto
from facerec.errors import InvalidInput, NotFound
from facerec.server import Health, Service
from facerec.server import build_server as build_grpc_server
from facerec.status import error_proto
from facerec.v1 import common_pb2, detector_pb2, gallery_pb2, gallery_pb2_grpc
from gallery.collections import CollectionManager
from gallery.config import Settings
from gallery.gallery import Gallery
from gallery.ports import DEFAULT_COLLECTION, BoxXYWH, Contract, DetectorOptions, Point
from gallery.represent import RepresentedFace
from gallery.results import Candidate, EnrollResult, IdentifiedFace
from gallery.rows import FaceRow, IdentityRow, KeptPicture
from gallery.service_access import SERVICE_NAME, WRITE_METHODS
from gallery.service_collections import CollectionRpcs, Operations, contract_proto

__all__ = ["SERVICE_NAME", "WRITE_METHODS", "GalleryServicer", "build_server"]

_ALIGNMENT = {
    detector_pb2.ALIGNMENT_UNSPECIFIED: "",
    detector_pb2.ALIGNMENT_BOX: "box",
    detector_pb2.ALIGNMENT_SIMILARITY: "similarity",
}


class GalleryServicer(CollectionRpcs, gallery_pb2_grpc.GalleryServicer):
    """Every request goes to its collection's facade (request.collection, "" = default)."""

    def __init__(self, gallery: Gallery | CollectionManager, operations: Operations | None = None) -> None:
        """gallery: the CollectionManager, or one facade serving the default collection alone (tests,
        tools); operations: the re-embed runner (None: Reembed is UNIMPLEMENTED)."""
        self._manager = gallery if isinstance(gallery, CollectionManager) else None
        self._single = gallery if isinstance(gallery, Gallery) else None
        self._operations = operations

    def _route(self, collection: str) -> Gallery:
        if self._manager is not None:
            return self._manager.get(collection)
        assert self._single is not None
        if collection not in ("", DEFAULT_COLLECTION):
            raise NotFound(f"There is no collection named {collection!r}.")
        return self._single

    def Enroll(
        self, request: gallery_pb2.EnrollRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.EnrollResponse:
        gallery = self._route(request.collection)
        results = gallery.enroll(
            request.identity,
            images=[image.data for image in request.images],
            embeddings=[(tuple(e.values), e.model) for e in request.embeddings],
            options=_detect_options(request, "detect_options"),
            timeout_s=context.time_remaining(),
            strict=request.strict,
        )
        images = len(request.images)
        places = [f"images[{i}]" if i < images else f"embeddings[{i - images}]" for i in range(len(results))]
        return gallery_pb2.EnrollResponse(
            identity=request.identity,
            results=[_enroll_result(r, at) for r, at in zip(results, places, strict=True)],
        )

    def Identify(
        self, request: gallery_pb2.IdentifyRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.IdentifyResponse:
        gallery = self._route(request.collection)
        query = request.WhichOneof("query")
        if query == "image":
            answer = gallery.identify_image(
                request.image.data,
                request.top_k,
                request.threshold,
                _detect_options(request, "detect_options"),
                context.time_remaining(),
                request.operating_point,
            )
        elif query == "embedding":
            answer = gallery.identify_embedding(
                tuple(request.embedding.values),
                request.embedding.model,
                request.top_k,
                request.threshold,
                request.operating_point,
            )
        else:
            raise InvalidInput("Nothing to identify: give an image or an embedding.", field="image")
        return gallery_pb2.IdentifyResponse(
            faces=[_identified(f) for f in answer.faces],
            threshold=answer.threshold,
            method=answer.method,
            classifier_stale=answer.classifier_stale,
            width=answer.width,
            height=answer.height,
            operating_point=answer.operating_point,
        )

    def Verify(
        self, request: gallery_pb2.VerifyRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.VerifyResponse:
        gallery = self._route(request.collection)
        answer = gallery.verify(
            request.image_a.data,
            request.image_b.data,
            request.identity,
            request.threshold,
            context.time_remaining(),
            request.operating_point,
        )
        return gallery_pb2.VerifyResponse(
            match=answer.match,
            distance=answer.distance,
            threshold=answer.threshold,
            box_a=_box(answer.box_a),
            box_b=_box(answer.box_b),
            faces_a=answer.faces_a,
            faces_b=answer.faces_b,
            operating_point=answer.operating_point,
        )

    def Search(
        self, request: gallery_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.SearchResponse:
        gallery = self._route(request.collection)
        hits = gallery.search(tuple(request.embedding.values), request.embedding.model, request.top_k)
        return gallery_pb2.SearchResponse(
            hits=[
                gallery_pb2.SearchHit(face_id=h.face_id, identity=h.identity, distance=h.distance)
                for h in hits
            ]
        )

    def ListIdentities(
        self, request: gallery_pb2.ListIdentitiesRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.ListIdentitiesResponse:
        gallery = self._route(request.collection)
        rows, token = gallery.list_identities(request.page_size, request.page_token)
        return gallery_pb2.ListIdentitiesResponse(
            identities=[_summary(r) for r in rows], next_page_token=token
        )

    def GetIdentity(
        self, request: gallery_pb2.GetIdentityRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.GetIdentityResponse:
        gallery = self._route(request.collection)
        row, faces, token = gallery.identity_page(
            request.identity, request.page_size, request.page_token, request.include_pictures
        )
        records = [_face_record(f) for f in faces]
        if request.include_embeddings:
            for record, face in zip(records, faces, strict=True):
                record.embedding.CopyFrom(
                    common_pb2.Embedding(values=face.embedding.tolist(), model=record.model)
                )
        if request.include_pictures:
            kept = gallery.face_pictures([r.face_id for r in records])
            for record in records:
                if record.face_id in kept:
                    record.picture.CopyFrom(_picture(record.face_id, kept[record.face_id]))
        return gallery_pb2.GetIdentityResponse(identity=_summary(row), faces=records, next_page_token=token)

    def RemoveIdentity(
        self, request: gallery_pb2.RemoveIdentityRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.RemoveIdentityResponse:
        gallery = self._route(request.collection)
        return gallery_pb2.RemoveIdentityResponse(faces_removed=gallery.remove_identity(request.identity))

    def RemoveFace(
        self, request: gallery_pb2.RemoveFaceRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.RemoveFaceResponse:
        gallery = self._route(request.collection)
        return gallery_pb2.RemoveFaceResponse(identity=gallery.remove_face(request.face_id))

    def Train(
        self, request: gallery_pb2.TrainRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.TrainResponse:
        gallery = self._route(request.collection)
        done = gallery.train()
        return gallery_pb2.TrainResponse(
            identities=done.identities, faces=done.faces, train_accuracy=done.train_accuracy
        )

    def Represent(
        self, request: gallery_pb2.RepresentRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.RepresentResponse:
        gallery = self._route(request.collection)
        answer = gallery.represent(
            request.image.data, _detect_options(request, "detect_options"), context.time_remaining()
        )
        return gallery_pb2.RepresentResponse(
            faces=[_represented(f, answer.model) for f in answer.faces],
            width=answer.width,
            height=answer.height,
            model=answer.model,
        )

    def Stats(
        self, request: gallery_pb2.StatsRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.StatsResponse:
        gallery = self._route(request.collection)
        s = gallery.stats()
        return gallery_pb2.StatsResponse(
            identities=s.identities,
            faces=s.faces,
            index_kind=s.index_kind,
            index_detail=s.index_detail,
            index_size=s.index_size,
            model=s.model,
            threshold=s.threshold,
            threshold_source=s.threshold_source,
            identification_threshold=s.identification_threshold,
            classifier=s.classifier,
            classifier_stale=s.classifier_stale,
            operating_points=[point_proto(p) for p in s.operating_points],
            operating_point=s.operating_point,
            identification_point=point_proto(s.identification_point) if s.identification_point else None,
            collection=request.collection or DEFAULT_COLLECTION,
            contract=contract_proto(self._contract(request.collection, gallery)),
        )

    def RenameIdentity(
        self, request: gallery_pb2.RenameIdentityRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.RenameIdentityResponse:
        row = self._route(request.collection).rename_identity(request.identity, request.new_name)
        return gallery_pb2.RenameIdentityResponse(identity=_summary(row))

    def GetFacePicture(
        self, request: gallery_pb2.GetFacePictureRequest, context: grpc.ServicerContext
    ) -> gallery_pb2.FacePicture:
        return _picture(request.face_id, self._route(request.collection).face_picture(request.face_id))

    def _contract(self, collection: str, gallery: Gallery) -> Contract:
        if gallery.contract is not None:
            return gallery.contract
        o = gallery.options.detect_options
        return Contract(o.model, o.alignment, gallery.model)


def build_server(
    settings: Settings,
    gallery: Gallery | CollectionManager,
    health: Health,
    interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = (),
    credentials: grpc.ServerCredentials | None = None,
    operations: Operations | None = None,
) -> tuple[grpc.Server, int]:
    """A gRPC server hosting the gallery (plus health and reflection), bound but not started: its
    collections (a CollectionManager), or one facade as the default collection alone."""
    servicer = GalleryServicer(gallery, operations)
    service = Service(
        SERVICE_NAME, lambda server: gallery_pb2_grpc.add_GalleryServicer_to_server(servicer, server)
    )
    return build_grpc_server([service], settings.server_options(), health, interceptors, credentials)


def _detect_options(request: Any, field: str) -> DetectorOptions | None:
    if not request.HasField(field):
        return None
    o = getattr(request, field)
    if o.alignment not in _ALIGNMENT:
        # Refused here, as the detector would: passing it on as "" would silently use box alignment.
        raise InvalidInput(
            f"Unknown alignment {o.alignment}; use ALIGNMENT_BOX or ALIGNMENT_SIMILARITY.",
            field=f"{field}.alignment",
        )
    return DetectorOptions(o.min_face_size_px, o.min_confidence, o.max_faces, _ALIGNMENT[o.alignment])


def _box(box: BoxXYWH | None) -> common_pb2.Box | None:
    if box is None:
        return None
    return common_pb2.Box(x=box[0], y=box[1], width=box[2], height=box[3])


def _landmarks(points: tuple[Point, ...]) -> common_pb2.Landmarks | None:
    if len(points) != 5:
        return None
    p = [common_pb2.Point(x=x, y=y) for x, y in points]
    return common_pb2.Landmarks(left_eye=p[0], right_eye=p[1], nose=p[2], mouth_left=p[3], mouth_right=p[4])


def _enroll_result(r: EnrollResult, place: str) -> gallery_pb2.EnrollResult:
    return gallery_pb2.EnrollResult(
        outcome=r.outcome.value,  # the enum value by name (EnrollOutcome mirrors the proto's names)
        face_id=r.face_id,
        box=_box(r.box),
        error=error_proto(r.error, place) if r.error is not None else None,
        faces_found=r.faces_found,
        duplicate_of=r.duplicate_of,
    )


def _candidate(c: Candidate) -> gallery_pb2.Candidate:
    return gallery_pb2.Candidate(identity=c.identity, distance=c.distance, face_id=c.face_id)


def _identified(f: IdentifiedFace) -> gallery_pb2.IdentifiedFace:
    return gallery_pb2.IdentifiedFace(
        box=_box(f.box),
        identity=f.identity,
        known=f.known,
        distance=f.distance,
        confidence=f.confidence,
        candidates=[_candidate(c) for c in f.candidates],
        landmarks=_landmarks(f.landmarks),
        detection_confidence=f.detection_confidence,
        # by name (NotIdentifiable mirrors the proto's names)
        not_identifiable=f.not_identifiable.value if f.not_identifiable else "NOT_IDENTIFIABLE_UNSPECIFIED",
        not_identifiable_reason=f.reason,
    )


def _represented(f: RepresentedFace, model: str) -> gallery_pb2.RepresentedFace:
    q = f.quality
    return gallery_pb2.RepresentedFace(
        box=_box(f.box),
        landmarks=_landmarks(f.landmarks),
        quality=gallery_pb2.FaceQuality(
            size_px=q.size_px,
            detection_confidence=q.detection_confidence,
            identifiable=q.identifiable,
            # by name (NotIdentifiable mirrors the proto's names)
            not_identifiable=q.not_identifiable.value
            if q.not_identifiable
            else "NOT_IDENTIFIABLE_UNSPECIFIED",
            not_identifiable_reason=q.reason,
        ),
        embedding=common_pb2.Embedding(values=f.embedding.tolist(), model=model),
    )


def _summary(row: IdentityRow) -> gallery_pb2.IdentitySummary:
    return gallery_pb2.IdentitySummary(
        identity=row.identity, face_count=row.face_count, created_at_ms=row.created_at_ms
    )


def _face_record(face: FaceRow) -> gallery_pb2.FaceRecord:
    return gallery_pb2.FaceRecord(
        face_id=face.face_id,
        identity=face.identity,
        box=_box(face.box),
        image_sha256=face.image_sha256,
        created_at_ms=face.created_at_ms,
        model=face.model,
        has_picture=face.has_picture,
    )


def _picture(face_id: int, kept: KeptPicture) -> gallery_pb2.FacePicture:
    return gallery_pb2.FacePicture(
        face_id=face_id,
        media_type=kept.media_type,
        data=kept.data,
        width=kept.width,
        height=kept.height,
        box=_box(kept.box),
    )

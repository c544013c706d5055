"""The Embedder gRPC servicer: translation only, protos ⇄ crops and vectors, errors ⇄ statuses."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from embedding_service.batcher import EmbeddingBatcher
from embedding_service.config import Settings
from embedding_service.embedder import rgb_crop
from embedding_service.models import ModelRepository
from embedding_service.preprocessing import resize_crop
from facerec import server as server_mod
from facerec.budget import Budget
from facerec.calibration import CalibrationSource
from facerec.calibration_proto import point_proto
from facerec.errors import FacerecError, InvalidInput, TooLarge
from facerec.heap import release_free_memory
from facerec.images import ImageLimits, decode_image, pixels_to_decode
from facerec.status import error_proto
from facerec.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = embedding_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name
# Room for the protobuf framing around the face bytes, so the byte limit is ours to report.
MESSAGE_OVERHEAD_BYTES = 1024 * 1024
# After a call that decoded this many pixels, the freed decoder buffers are given back to the OS.
RELEASE_AFTER_PIXELS = 1_000_000


class EmbedderServicer(embedding_pb2_grpc.EmbedderServicer):
    """Embed and GetModelInfo over the served models' batchers. Bad faces get their own error; the rest are
    answered. calibrations: each served model's thresholds, by model name."""

    def __init__(
        self,
        models: ModelRepository,
        calibrations: dict[str, CalibrationSource],
        max_faces_per_request: int = 64,
        max_request_bytes: int = 16 * 1024 * 1024,
        max_face_pixels: int = 4_000_000,
        max_request_pixels: int = 32_000_000,
        max_pixels_in_flight: int = 16_000_000,
    ) -> None:
        self._models = models
        self._calibrations = calibrations
        self._max_faces = max_faces_per_request
        self._max_bytes = max_request_bytes
        # Beyond 1 MP a face also obeys the pixels-per-byte rule of facerec.images (a lying header).
        self._image_limits = ImageLimits(max_bytes=max_request_bytes, max_pixels=max_face_pixels)
        self._max_request_pixels = max_request_pixels
        self._pixels = Budget(max_pixels_in_flight, "pixels of encoded faces being decoded at once")

    def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        faces = request.faces
        batcher = self._models.get(request.model)  # an unknown model refuses the call before any work
        if not faces:
            raise InvalidInput("The request holds no faces.", field="faces")
        if len(faces) > self._max_faces:
            raise InvalidInput(
                f"The request holds {len(faces)} faces; at most {self._max_faces} are allowed per request.",
                field="faces",
            )
        size = sum(len(face.crop.rgb) + len(face.encoded.data) for face in faces)
        if size > self._max_bytes:
            raise TooLarge(
                f"The faces are too large: {size} bytes, over the limit of {self._max_bytes} per request."
            )
        pixels = [
            pixels_to_decode(face.encoded.data, self._image_limits) if face.HasField("encoded") else 0
            for face in faces
        ]
        if sum(pixels) > self._max_request_pixels:
            raise TooLarge(
                f"The faces are too large: their images declare {sum(pixels)} pixels, over the limit of "
                f"{self._max_request_pixels} per request."
            )

        results = [embedding_pb2.EmbedResult() for _ in faces]
        crops: list[NDArray[np.uint8]] = []
        positions: list[int] = []
        try:
            for i, face in enumerate(faces):
                # Encoded faces are decoded one at a time and shrunk to the model's input at once, so a
                # call holds one decoded picture; the budget bounds them all (a few bytes of PNG can be
                # 4 MP). When it is spent the whole call is refused at once (Overloaded: try again).
                with self._pixels.take(pixels[i]):
                    try:
                        crops.append(self._crop_of(face, batcher.embedder.input_size))
                        positions.append(i)
                    except FacerecError as exc:
                        results[i].error.CopyFrom(error_proto(exc, f"faces[{i}]"))
        finally:
            if sum(pixels) >= RELEASE_AFTER_PIXELS:
                release_free_memory()

        outcomes = batcher.embed(crops, timeout_s=context.time_remaining(), is_active=context.is_active)
        model = batcher.embedder.name
        for i, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, FacerecError):
                results[i].error.CopyFrom(error_proto(outcome, f"faces[{i}]"))
            else:
                results[i].embedding.CopyFrom(common_pb2.Embedding(values=outcome.tolist(), model=model))
        return embedding_pb2.EmbedResponse(results=results, model=model)

    def GetModelInfo(
        self, request: embedding_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.ModelInfo:
        info = self._info(self._models.get(request.model))
        info.models.extend(self._info(batcher) for batcher in self._models.batchers)
        return info

    def _info(self, batcher: EmbeddingBatcher) -> embedding_pb2.ModelInfo:
        """One model: its thresholds (its own calibration) and its batcher's counters."""
        embedder = batcher.embedder
        stats = batcher.stats
        # Re-read when `facerec eval --save-threshold` wrote it.
        calibration = self._calibrations[embedder.name].current()
        return embedding_pb2.ModelInfo(
            name=embedder.name,
            dimension=embedder.dimension,
            input_size=embedder.input_size,
            preprocessing=embedder.preprocessing,
            threshold=calibration.threshold,
            threshold_source=calibration.source,
            identification_threshold=calibration.identification_threshold,
            operating_points=[point_proto(p) for p in calibration.points],
            operating_point=calibration.operating_point,
            identification_point=point_proto(calibration.identification)
            if calibration.identification
            else None,
            model_calls=stats.calls,
            faces_embedded=stats.items,
            max_batch=batcher.max_batch,
            runtime=embedder.runtime,
            precision=embedder.precision,
        )

    def _crop_of(self, face: embedding_pb2.FaceInput, input_size: int) -> NDArray[np.uint8]:
        """The face as (h, w, 3) RGB; an encoded one already shrunk to the model's input."""
        kind = face.WhichOneof("input")
        if kind == "crop":
            return rgb_crop(face.crop.rgb, face.crop.width, face.crop.height)
        if kind != "encoded":
            raise InvalidInput("The face has neither a crop nor an encoded image.")
        picture = decode_image(face.encoded.data, self._image_limits)
        # The same resize the batcher's prepare() does, done now so that only the small crop is kept.
        return resize_crop(picture, input_size)


def build_server(
    settings: Settings,
    models: ModelRepository | EmbeddingBatcher,
    health: server_mod.Health,
    interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = (),
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, int]:
    """A bound, not yet started server for the Embedder on settings.host:settings.port, serving the models'
    batchers (a single batcher serves its one model). Returns (server, port)."""
    repository = models if isinstance(models, ModelRepository) else ModelRepository([models])
    calibrations = {}
    for name in repository.names:
        calibrations[name] = CalibrationSource(settings.calibration_path, name)
        current = calibrations[name].current()  # an unusable file stops the start here
        log.info("%s: verification threshold %.3f (%s)", name, current.threshold, current.source)
    servicer = EmbedderServicer(
        repository,
        calibrations,
        max_faces_per_request=settings.max_faces_per_request,
        max_request_bytes=settings.max_request_bytes,
        max_face_pixels=settings.max_face_pixels,
        max_request_pixels=settings.max_request_pixels,
        max_pixels_in_flight=settings.max_pixels_in_flight,
    )
    options = dataclasses.replace(
        settings.server_options(),
        # At most max_workers calls wait in the batcher; gRPC holds the rest, so its bound is the queue's.
        max_concurrent_rpcs=settings.max_queue,
        max_message_bytes=settings.max_request_bytes + MESSAGE_OVERHEAD_BYTES,
    )
    service = server_mod.Service(
        SERVICE_NAME, lambda server: embedding_pb2_grpc.add_EmbedderServicer_to_server(servicer, server)
    )
    return server_mod.build_server([service], options, health, interceptors, credentials)

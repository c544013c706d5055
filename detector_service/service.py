"""The Detector gRPC servicer: translation only, proto ⇄ domain; errors are raised and mapped by facerec.status."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grpc
import numpy as np
from numpy.typing import NDArray

from detector_service.config import Settings
from detector_service.detector import Alignment, Detection, DetectOptions, DetectorModel
from facerec.batching import Outcome
from facerec.budget import Budget
from facerec.errors import FacerecError, InvalidInput, TooLarge
from facerec.images import decode_image, pixels_to_decode
from facerec.server import Health, Service, build_server
from facerec.status import error_proto
from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc

log = logging.getLogger(__name__)


SERVICE_NAME = detector_pb2.DESCRIPTOR.services_by_name["Detector"].full_name

_ALIGNMENT = {
    detector_pb2.ALIGNMENT_UNSPECIFIED: Alignment.BOX,
    detector_pb2.ALIGNMENT_BOX: Alignment.BOX,
    detector_pb2.ALIGNMENT_SIMILARITY: Alignment.SIMILARITY,
}


class QueuedDetector(Protocol):
    """What the servicer calls: detector_service.batcher.BatchingDetector."""

    def detect(
        self,
        images: Sequence[NDArray[np.uint8]],
        options: DetectOptions,
        timeout_s: float | None = None,
        is_active: Callable[[], bool] = ...,
    ) -> list[Outcome[list[Detection]]]: ...


class DetectorServicer(detector_pb2_grpc.DetectorServicer):
    """Decodes each picture, hands the good ones to the batching detector, answers one result per picture.

    `detector` answers per image a list of Detection or the FacerecError that picture alone got.
    """

    def __init__(self, detector: QueuedDetector, settings: Settings) -> None:
        self._detector = detector
        self._settings = settings
        self._limits = settings.image_limits
        # Decoded pictures are the one cost that grows with the callers (3 bytes a pixel, plus the
        # decoder's copy): bounding their sum bounds the service's memory whatever the calls hold.
        self._pixels = Budget(settings.max_pixels_in_flight, "pixels in the detector at once")

    def Detect(
        self, request: detector_pb2.DetectRequest, context: grpc.ServicerContext
    ) -> detector_pb2.DetectResponse:
        count = len(request.images)
        if count == 0:
            raise InvalidInput("The request has no images.", field="images")
        if count > self._settings.max_images_per_request:
            raise InvalidInput(
                f"The request has {count} images, over the limit of {self._settings.max_images_per_request}.",
                field="images",
            )
        options = self._options(request.options)
        results = [detector_pb2.ImageResult() for _ in range(count)]
        pixels = [pixels_to_decode(image.data, self._limits) for image in request.images]
        # Pictures that fit the budget one by one but not all together are served part after part (a
        # part's pixels are freed before the next is decoded), so such a request is never refused for ever.
        for part in self._pixels.parts(pixels):
            try:
                with self._pixels.take(sum(pixels[i] for i in part)):
                    self._detect(request, part, options, context, results)
            except TooLarge as exc:  # a single picture over the whole budget: its own answer, never "retry"
                results[part[0]].error.CopyFrom(error_proto(exc, f"images[{part[0]}]"))
        return detector_pb2.DetectResponse(results=results)

    def _detect(
        self,
        request: detector_pb2.DetectRequest,
        part: Sequence[int],
        options: DetectOptions,
        context: grpc.ServicerContext,
        results: list[detector_pb2.ImageResult],
    ) -> None:
        """Decodes and searches the pictures at the indices `part`, filling their results."""
        pictures, where = [], []
        for index in part:
            try:
                picture = decode_image(request.images[index].data, self._limits)
            except FacerecError as exc:
                results[index].error.CopyFrom(error_proto(exc, f"images[{index}]"))
                continue
            results[index].height, results[index].width = picture.shape[:2]
            pictures.append(picture)
            where.append(index)
        if pictures:
            outcomes = self._detector.detect(pictures, options, context.time_remaining(), context.is_active)
            for index, outcome in zip(where, outcomes, strict=True):
                if isinstance(outcome, FacerecError):
                    results[index].error.CopyFrom(error_proto(outcome, f"images[{index}]"))
                    results[index].width = results[index].height = 0
                else:
                    results[index].faces.extend(face_proto(d) for d in outcome)

    def _options(self, options: detector_pb2.DetectOptions) -> DetectOptions:
        if options.alignment not in _ALIGNMENT:
            raise InvalidInput(f"Unknown alignment {options.alignment}.", field="options.alignment")
        name = options.model or self._settings.model
        models = {model.value: model for model in DetectorModel}
        if name not in models:
            raise InvalidInput(
                f"Unknown detector model {name[:40]!r}; the models are {', '.join(models)}.",
                field="options.model",
            )
        found = DetectOptions(
            min_face_size_px=options.min_face_size_px or self._settings.default_min_face_size_px,
            min_confidence=options.min_confidence,
            max_faces=options.max_faces,
            alignment=_ALIGNMENT[options.alignment],
            return_crops=options.return_crops,
            model=models[name],
        )
        found.validate()
        return found


def face_proto(detection: Detection) -> detector_pb2.Face:
    box, marks = detection.box, detection.landmarks
    face = detector_pb2.Face(
        box=common_pb2.Box(x=box.x, y=box.y, width=box.width, height=box.height),
        confidence=detection.confidence,
        landmarks=common_pb2.Landmarks(
            left_eye=_point(marks.left_eye),
            right_eye=_point(marks.right_eye),
            nose=_point(marks.nose),
            mouth_left=_point(marks.mouth_left),
            mouth_right=_point(marks.mouth_right),
        ),
    )
    if detection.crop is not None:
        crop = np.ascontiguousarray(detection.crop, dtype=np.uint8)
        face.crop.CopyFrom(common_pb2.RgbImage(rgb=crop.tobytes(), width=crop.shape[1], height=crop.shape[0]))
    return face


def _point(xy: tuple[float, float]) -> common_pb2.Point:
    return common_pb2.Point(x=xy[0], y=xy[1])


def build_detector_server(
    settings: Settings,
    detector: QueuedDetector,
    health: Health,
    interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = (),
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, int]:
    """A bound, not yet started server hosting the Detector service with health and reflection."""
    servicer = DetectorServicer(detector, settings)
    service = Service(
        SERVICE_NAME, lambda server: detector_pb2_grpc.add_DetectorServicer_to_server(servicer, server)
    )
    return build_server([service], settings.server_options(), health, interceptors, credentials)

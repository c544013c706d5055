"""gRPC clients of the detector and the embedder, implementing gallery.ports.

One channel per service (facerec.channels.open_channel), with the `round_robin` load-balancing
policy over every address the target resolves to, so replicas share the load with no proxy.

Every call has a deadline (the caller's remaining time, capped by the client's own). For the embedder,
UNAVAILABLE is retried by gRPC itself (service config retryPolicy: 4 attempts, 0.1 s backoff doubling
to 1 s), also when a replica dies in the middle of a call: gRPC keeps each request until the answer
starts, up to max_message_bytes (its default, 256 KiB, would leave a batch of face crops unretried).
The embedder's inputs are bounded 160x160 crops, so a replica that dies mid-call died of something else.

A picture, though, can be what kills a detector replica (a poison request), and retrying it would take
down every replica in turn. So a Detect call is retried only when it never reached a replica (no
connection could be made: gRPC's transparent retries, then up to 4 attempts with the same backoff);
one that a replica took and died on is answered Unavailable, naming that, and goes nowhere else.
A service that stays down is raised as Unavailable with one sentence naming it.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc
import numpy as np
from numpy.typing import NDArray

from facerec import errors, remote
from facerec.budget import Budget
from facerec.channels import ATTEMPTS, INITIAL_BACKOFF_S, MAX_BACKOFF_S, never_sent, open_channel
from facerec.settings import MiB
from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc, embedding_pb2, embedding_pb2_grpc
from gallery.ports import DetectedFace, DetectedImage, DetectorOptions, Embedded, ModelInfo

log = logging.getLogger(__name__)

_ALIGNMENT = {
    "": detector_pb2.ALIGNMENT_UNSPECIFIED,
    "box": detector_pb2.ALIGNMENT_BOX,
    "similarity": detector_pb2.ALIGNMENT_SIMILARITY,
}


def _deadline(timeout_s: float | None, cap_s: float) -> float:
    return cap_s if timeout_s is None else max(0.001, min(timeout_s, cap_s))


def _translate(exc: grpc.RpcError, what: str) -> errors.FacerecError:
    """A downstream failure as the facerec error the gallery's caller should see (facerec.remote reads
    it): the service's complaint about the request itself (its class, sentence and reason) passes on; a
    service that is down, slow or answers something the caller cannot act on is the gallery's own
    Unavailable or DeadlineExceeded, naming the service."""
    error = remote.error_from_rpc(exc, f"the {what}")
    if isinstance(error, errors.InvalidInput | errors.TooLarge | errors.Overloaded | errors.ModelFault):
        return error
    if isinstance(error, errors.DeadlineExceeded):
        return errors.DeadlineExceeded(f"The {what} did not answer in time.")
    code = remote.code_of(exc)
    if not isinstance(error, errors.Unavailable):
        log.warning("the %s answered %s: %s", what, code, error)
        return errors.Unavailable(f"The {what} failed ({code.name}).")
    return errors.Unavailable(f"The {what} is unavailable.")


def _item_error(error: common_pb2.Error) -> errors.FacerecError | None:
    return None if error.code == 0 else remote.error_of_item(error)


Item = TypeVar("Item")
Part = TypeVar("Part")
Request = TypeVar("Request")
Reply = TypeVar("Reply")


def _chunks(items: Sequence[Item], size: int) -> list[Sequence[Item]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class _Client:
    """One round_robin channel to a service, a deadline cap, and chunked calls sent concurrently."""

    def __init__(
        self,
        kind: str,
        service: str,
        addresses: str,
        timeout_s: float,
        chunk: int,
        concurrency: int,
        max_message_bytes: int,
        credentials: grpc.ChannelCredentials | None,
        token: str,
        retry_after_sending: bool = True,
        max_waiting: int = 32,
    ) -> None:
        """retry_after_sending=False: a call a replica took and died on is not sent to another.
        max_waiting: the gallery's calls that may wait on this service at once; more are refused at once
        (Overloaded), so a hung service holds at most that many of the gallery's workers."""
        self.addresses = addresses
        self._what = f"{kind} at {addresses}"
        self._retry_after_sending = retry_after_sending
        self.waiting = Budget(max_waiting, f"calls waiting on the {self._what}")
        self._channel = open_channel(
            addresses,
            service,
            max_message_bytes,
            credentials,
            token,
            attempts=ATTEMPTS if retry_after_sending else 1,
        )
        self._timeout_s = timeout_s
        self._chunk = chunk
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=kind)

    def _call(self, method: Callable[..., Reply], request: Request, timeout_s: float) -> Reply:
        """method(request) with the deadline; a downstream failure becomes the caller's facerec error."""
        if self._retry_after_sending:
            try:
                return method(request, timeout=timeout_s)
            except grpc.RpcError as exc:
                raise _translate(exc, self._what) from None
        deadline = time.monotonic() + timeout_s
        backoff = INITIAL_BACKOFF_S
        attempt = 1
        while True:
            try:
                return method(request, timeout=max(0.001, deadline - time.monotonic()))
            except grpc.RpcError as exc:
                if not never_sent(exc):
                    if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.UNAVAILABLE:
                        log.warning(
                            "the %s failed during a call (%s); not retried", self._what, exc.details()
                        )
                        raise errors.Unavailable(
                            f"The {self._what} failed while handling this request; it is not sent to "
                            "another replica, since the request itself may have caused the failure."
                        ) from None
                    raise _translate(exc, self._what) from None
                if attempt == ATTEMPTS or time.monotonic() + backoff >= deadline:
                    raise _translate(exc, self._what) from None
            # Backoff between attempts that reached no replica (a restart in progress).
            time.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
            attempt += 1

    def _chunked(self, call: Callable[[Sequence[Item]], Part], items: Sequence[Item]) -> list[Part]:
        """call(chunk) for each chunk of items, concurrently when there are several; results in order."""
        chunks = _chunks(items, self._chunk)
        if len(chunks) <= 1:
            return [call(chunk) for chunk in chunks]
        # Each chunk runs in a copy of this context: a pool thread would not see the request id.
        contexts = [contextvars.copy_context() for _ in chunks]
        return list(self._pool.map(lambda context, chunk: context.run(call, chunk), contexts, chunks))

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._channel.close()


class DetectorClient(_Client):
    """gallery.ports.FaceDetector over facerec.v1.Detector. Splits large requests into chunks of
    max_images_per_call (the detector's per-request limit) sent concurrently, so replicas share them."""

    def __init__(
        self,
        addresses: str,
        timeout_s: float = 30.0,
        max_images_per_call: int = 16,
        concurrency: int = 4,
        max_message_bytes: int = 64 * MiB,
        credentials: grpc.ChannelCredentials | None = None,
        token: str = "",
        max_waiting: int = 32,
    ) -> None:
        super().__init__(
            "detector",
            "facerec.v1.Detector",
            addresses,
            timeout_s,
            max_images_per_call,
            concurrency,
            max_message_bytes,
            credentials,
            token,
            retry_after_sending=False,
            max_waiting=max_waiting,
        )
        self._stub = detector_pb2_grpc.DetectorStub(self._channel)

    def detect(
        self, images: Sequence[bytes], options: DetectorOptions, timeout_s: float | None = None
    ) -> list[DetectedImage]:
        opts = detector_pb2.DetectOptions(
            min_face_size_px=options.min_face_size_px,
            min_confidence=options.min_confidence,
            max_faces=options.max_faces,
            alignment=_ALIGNMENT.get(options.alignment, detector_pb2.ALIGNMENT_UNSPECIFIED),
            return_crops=True,
            model=options.model,
        )
        deadline = _deadline(timeout_s, self._timeout_s)

        def call(chunk: Sequence[bytes]) -> list[DetectedImage]:
            request = detector_pb2.DetectRequest(
                images=[common_pb2.Image(data=d) for d in chunk], options=opts
            )
            response = self._call(self._stub.Detect, request, deadline)
            return [_image(result) for result in response.results]

        with self.waiting.take():
            return [image for part in self._chunked(call, images) for image in part]


def _image(result: detector_pb2.ImageResult) -> DetectedImage:
    error = _item_error(result.error)
    if error is not None:
        return DetectedImage(result.width, result.height, [], error)
    faces = []
    for face in result.faces:
        crop = np.frombuffer(face.crop.rgb, dtype=np.uint8)
        if face.crop.width > 0 and crop.size == face.crop.width * face.crop.height * 3:
            crop = crop.reshape(face.crop.height, face.crop.width, 3)
        else:
            crop = np.zeros((0, 0, 3), dtype=np.uint8)
        lm = face.landmarks
        points = tuple(
            (p.x, p.y) for p in (lm.left_eye, lm.right_eye, lm.nose, lm.mouth_left, lm.mouth_right)
        )
        box = (face.box.x, face.box.y, face.box.width, face.box.height)
        faces.append(DetectedFace(box, face.confidence, points, crop))
    return DetectedImage(result.width, result.height, faces, None)


class EmbedderClient(_Client):
    """gallery.ports.FaceEmbedder over facerec.v1.Embedder, in chunks of max_faces_per_call."""

    def __init__(
        self,
        addresses: str,
        timeout_s: float = 30.0,
        max_faces_per_call: int = 64,
        concurrency: int = 4,
        max_message_bytes: int = 64 * MiB,
        credentials: grpc.ChannelCredentials | None = None,
        token: str = "",
        max_waiting: int = 32,
    ) -> None:
        super().__init__(
            "embedder",
            "facerec.v1.Embedder",
            addresses,
            timeout_s,
            max_faces_per_call,
            concurrency,
            max_message_bytes,
            credentials,
            token,
            max_waiting=max_waiting,
        )
        self._stub = embedding_pb2_grpc.EmbedderStub(self._channel)

    def embed(
        self, crops: Sequence[NDArray[np.uint8]], timeout_s: float | None = None, model: str = ""
    ) -> Embedded:
        deadline = _deadline(timeout_s, self._timeout_s)

        def call(chunk: Sequence[NDArray[np.uint8]]) -> Embedded:
            faces = [
                embedding_pb2.FaceInput(
                    crop=common_pb2.RgbImage(
                        rgb=np.ascontiguousarray(c, dtype=np.uint8).tobytes(),
                        width=c.shape[1],
                        height=c.shape[0],
                    )
                )
                for c in chunk
            ]
            request = embedding_pb2.EmbedRequest(faces=faces, model=model)
            response = self._call(self._stub.Embed, request, deadline)
            vectors: list[NDArray[np.float32] | errors.FacerecError] = []
            for result in response.results:
                error = _item_error(result.error)
                if error is not None:
                    vectors.append(error)
                    continue
                vector = np.asarray(result.embedding.values, np.float32)
                if not np.isfinite(vector).all():
                    # The embedder's fault, not the caller's: never INVALID_ARGUMENT, never OK with NaN.
                    log.error("the %s returned an embedding with non-finite values", self._what)
                    raise errors.ModelFault(
                        f"The {self._what} returned an embedding with non-finite values; its model is faulty."
                    )
                vectors.append(vector)
            return Embedded(response.model, vectors)

        with self.waiting.take():
            parts = self._chunked(call, crops)
        if not parts:
            return Embedded("", [])
        return Embedded(parts[0].model, [v for part in parts for v in part.vectors])

    def model_info(self, timeout_s: float | None = None, model: str = "") -> ModelInfo:
        return _model_info(self._get_model_info(timeout_s, model))

    def models(self, timeout_s: float | None = None) -> list[ModelInfo]:
        info = self._get_model_info(timeout_s, "")
        # An embedder older than the models list serves its one model.
        return [_model_info(m) for m in info.models] or [_model_info(info)]

    def _get_model_info(self, timeout_s: float | None, model: str) -> embedding_pb2.ModelInfo:
        with self.waiting.take():
            info: embedding_pb2.ModelInfo = self._call(
                self._stub.GetModelInfo,
                embedding_pb2.GetModelInfoRequest(model=model),
                _deadline(timeout_s, self._timeout_s),
            )
        return info


def _model_info(info: embedding_pb2.ModelInfo) -> ModelInfo:
    return ModelInfo(info.name, info.dimension, info.threshold, info.threshold_source, info.precision)

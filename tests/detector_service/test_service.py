"""The servicer's translation and limits, on a real gRPC server on port 0 with a fake detector inside."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from detector_service.batcher import BatchingDetector
from detector_service.config import MODELS, Settings
from detector_service.detector import Box, Detection, DetectOptions, DetectorModel, Landmarks
from detector_service.service import build_detector_server
from facerec.remote import error_from_rpc
from facerec.server import Health
from facerec.settings import SettingError
from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc
from tests.support.images import encode, lying_jpeg, noise, png_header_only

GOOD = encode(noise(48, 64), "PNG")


class FakeDetector:
    """One face per picture, whose box is the picture's size; records the options and batch sizes."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, DetectOptions]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def detect(self, images, options):
        self.entered.set()
        self.gate.wait(10)
        self.calls.append((len(images), options))
        found = []
        for image in images:
            h, w = image.shape[:2]
            marks = Landmarks((1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0))
            crop = np.full((160, 160, 3), 7, np.uint8) if options.return_crops else None
            found.append([Detection(Box(0.0, 0.0, float(w), float(h)), 0.99, marks, crop)])
        return found


class Served:
    def __init__(self, settings: Settings) -> None:
        self.fake = FakeDetector()
        self.batching = BatchingDetector(
            self.fake, max_batch=8, max_delay_ms=20, max_queue=settings.max_queue
        )
        self.health = Health(["facerec.v1.Detector"])
        self.server, port = build_detector_server(settings, self.batching, self.health)
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = detector_pb2_grpc.DetectorStub(self.channel)

    def detect(self, *datas: bytes, **options) -> detector_pb2.DetectResponse:
        request = detector_pb2.DetectRequest(
            images=[common_pb2.Image(data=d) for d in datas], options=detector_pb2.DetectOptions(**options)
        )
        return self.stub.Detect(request, timeout=10)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0)
        self.batching.close()


SETTINGS = Settings(host="127.0.0.1", port=0, max_images_per_request=10, max_message_bytes=2 * 1024 * 1024)


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served(SETTINGS)
    yield s
    s.close()


def assert_still_answers(served: Served) -> None:
    reply = served.detect(GOOD)
    assert len(reply.results) == 1 and reply.results[0].width == 64 and len(reply.results[0].faces) == 1


def test_translates_faces_and_sizes(served: Served) -> None:
    reply = served.detect(GOOD, encode(noise(30, 20), "BMP"), return_crops=True)
    first, second = reply.results
    assert (first.width, first.height) == (64, 48) and (second.width, second.height) == (20, 30)
    face = second.faces[0]
    assert (face.box.width, face.box.height) == (20, 30)
    assert face.confidence == pytest.approx(0.99)
    assert (face.landmarks.mouth_right.x, face.landmarks.mouth_right.y) == (9.0, 10.0)
    assert (face.crop.width, face.crop.height) == (160, 160) and face.crop.rgb == bytes([7]) * 160 * 160 * 3


def test_options_reach_the_detector_with_defaults_filled_in(served: Served) -> None:
    served.detect(GOOD)
    served.detect(GOOD, min_face_size_px=40, min_confidence=0.5, max_faces=2, alignment=2)
    # A request naming no model gets the service's default, RetinaFace (DETECTOR_MODEL).
    assert served.fake.calls[0][1] == DetectOptions(model=DetectorModel.RETINAFACE)
    assert served.fake.calls[1][1].min_face_size_px == 40 and served.fake.calls[1][1].max_faces == 2
    assert served.fake.calls[1][1].alignment.name == "SIMILARITY"


def test_the_model_is_the_requests_or_the_servers_default() -> None:
    served = Served(replace(SETTINGS, model="retinaface"))
    try:
        served.detect(GOOD)
        served.detect(GOOD, model="mtcnn")
        served.detect(GOOD, model="retinaface")
    finally:
        served.close()
    assert [options.model for _, options in served.fake.calls] == [
        DetectorModel.RETINAFACE,
        DetectorModel.MTCNN,
        DetectorModel.RETINAFACE,
    ]


def test_no_crop_unless_asked(served: Served) -> None:
    assert not served.detect(GOOD).results[0].faces[0].HasField("crop")


BAD_IMAGES = {
    "empty": (b"", grpc.StatusCode.INVALID_ARGUMENT),
    "truncated-jpeg": (encode(noise(), "JPEG")[:200], grpc.StatusCode.INVALID_ARGUMENT),
    "text": (b"name,age\nada,36\n", grpc.StatusCode.INVALID_ARGUMENT),
    "one-pixel": (encode(noise(1, 1), "PNG"), grpc.StatusCode.INVALID_ARGUMENT),
    "huge-header": (png_header_only(20000, 20000), grpc.StatusCode.RESOURCE_EXHAUSTED),
}


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_bad_image_gets_its_own_error(served: Served, name: str) -> None:
    data, code = BAD_IMAGES[name]
    reply = served.detect(data)
    assert reply.results[0].error.code == code.value[0]
    assert reply.results[0].error.message and not reply.results[0].faces and reply.results[0].width == 0
    assert_still_answers(served)


def test_one_corrupt_image_in_ten(served: Served) -> None:
    datas = [GOOD] * 10
    datas[6] = b"\xff\xd8\xff corrupt"
    reply = served.detect(*datas)
    codes = [r.error.code for r in reply.results]
    assert codes == [0] * 6 + [grpc.StatusCode.INVALID_ARGUMENT.value[0]] + [0] * 3
    assert reply.results[6].error.field == "images[6]"  # the item's place, as a BadRequest would name it
    assert sum(len(r.faces) for r in reply.results) == 9
    # The nine good pictures go to the model together, in max_batch (8) chunks.
    assert [n for n, _ in served.fake.calls] == [8, 1]


@pytest.mark.parametrize(
    ("datas", "options", "code", "field"),
    [
        ([], {}, grpc.StatusCode.INVALID_ARGUMENT, "images"),
        ([GOOD] * 11, {}, grpc.StatusCode.INVALID_ARGUMENT, "images"),
        ([GOOD], {"min_face_size_px": 11}, grpc.StatusCode.INVALID_ARGUMENT, "options.min_face_size_px"),
        ([GOOD], {"min_confidence": 1.5}, grpc.StatusCode.INVALID_ARGUMENT, "options.min_confidence"),
        ([GOOD], {"max_faces": -1}, grpc.StatusCode.INVALID_ARGUMENT, "options.max_faces"),
        ([GOOD], {"alignment": 9}, grpc.StatusCode.INVALID_ARGUMENT, "options.alignment"),
        ([GOOD], {"model": "yolo"}, grpc.StatusCode.INVALID_ARGUMENT, "options.model"),
        ([GOOD], {"model": "MTCNN"}, grpc.StatusCode.INVALID_ARGUMENT, "options.model"),
        ([b"\0" * (3 * 1024 * 1024)], {}, grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ],
    ids=[
        "no-images",
        "too-many",
        "min-face",
        "confidence",
        "max-faces",
        "alignment",
        "unknown-model",
        "model-names-are-lowercase",
        "message-too-large",
    ],
)
def test_request_level_problems_are_statuses(served: Served, datas, options, code, field) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        served.detect(*datas, **options)
    assert caught.value.code() == code
    # The field at fault travels as a google.rpc.BadRequest violation (facerec.remote reads it back).
    assert error_from_rpc(caught.value, "the detector").field == field
    assert_still_answers(served)


def test_image_byte_limit_is_per_image() -> None:
    s = Served(replace(SETTINGS, max_image_bytes=len(GOOD)))
    try:
        reply = s.detect(GOOD, encode(noise(48, 65), "PNG"))
        assert reply.results[0].error.code == 0
        assert reply.results[1].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    finally:
        s.close()


def test_full_queue_is_resource_exhausted_and_recovers() -> None:
    s = Served(replace(SETTINGS, max_queue=1))
    s.fake.gate.clear()  # the worker blocks on the first batch
    try:
        pool = [threading.Thread(target=lambda: s.detect(GOOD)) for _ in range(2)]
        # One request is in the worker, one fills the queue; the next is refused at once.
        pool[0].start()
        assert s.fake.entered.wait(10)
        pool[1].start()
        for _ in range(500):
            if s.batching.batcher.queue_depth() == 1:
                break
            threading.Event().wait(0.01)
        with pytest.raises(grpc.RpcError) as caught:
            s.detect(GOOD)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        s.fake.gate.set()
        for t in pool:
            t.join(10)
        assert_still_answers(s)
    finally:
        s.fake.gate.set()
        s.close()


def test_concurrent_requests_share_model_calls(served: Served) -> None:
    served.fake.gate.clear()
    pool = [threading.Thread(target=lambda: served.detect(GOOD, GOOD)) for _ in range(4)]
    for t in pool:
        t.start()
    threading.Event().wait(0.3)
    served.fake.gate.set()
    for t in pool:
        t.join(10)
    assert sum(n for n, _ in served.fake.calls) == 8
    assert max(n for n, _ in served.fake.calls) > 2


def test_health_follows_warm_up(served: Served) -> None:
    stub = health_pb2_grpc.HealthStub(served.channel)
    ask = health_pb2.HealthCheckRequest(service="facerec.v1.Detector")
    assert stub.Check(ask, timeout=5).status == health_pb2.HealthCheckResponse.NOT_SERVING
    served.batching.warm_up()
    served.health.set_serving()
    assert stub.Check(ask, timeout=5).status == health_pb2.HealthCheckResponse.SERVING


def test_settings_from_env_and_flags() -> None:
    env = {"DETECTOR_MAX_IMAGES_PER_REQUEST": "4", "DETECTOR_MAX_DELAY_MS": "2.5", "DETECTOR_HOST": "0.0.0.0"}
    settings = Settings.from_env(env)
    assert (settings.max_images_per_request, settings.max_delay_ms, settings.host) == (4, 2.5, "0.0.0.0")
    flagged = Settings.parse(["--max-queue", "3", "--port", "0", "--intra-op-threads", "4"], env)
    assert (flagged.max_queue, flagged.port, flagged.intra_op_threads, flagged.max_images_per_request) == (
        3,
        0,
        4,
        4,
    )
    assert Settings.from_env({"DETECTOR_PAD_SIZES": "true"}).pad_sizes is True
    assert Settings.from_env({"DETECTOR_MODEL": "retinaface"}).model == "retinaface"
    assert MODELS == tuple(model.value for model in DetectorModel)
    with pytest.raises(SettingError):
        Settings.from_env({"DETECTOR_MODEL": "yolo"})
    assert Settings.parse(["--pad-sizes", "false"], {"DETECTOR_PAD_SIZES": "1"}).pad_sizes is False
    with pytest.raises(SettingError):
        Settings.from_env({"DETECTOR_MAX_QUEUE": "0"})
    with pytest.raises(SettingError):
        Settings.from_env({"DETECTOR_MAX_QUEUE": "many"})


def test_pictures_that_fit_the_pixel_budget_one_by_one_are_served_in_parts() -> None:
    """Four pictures of 3072 pixels against a budget of 8000 in flight: together they never fit, so the
    call was told "try again later" for ever; now they are searched two at a time, one call answering."""
    s = Served(replace(SETTINGS, max_pixels_in_flight=8000))
    try:
        reply = s.detect(GOOD, GOOD, GOOD, GOOD)
        assert [(r.error.code, r.width, len(r.faces)) for r in reply.results] == [(0, 64, 1)] * 4
        assert [size for size, _ in s.fake.calls] == [2, 2]
        assert_still_answers(s)  # every part gave its pixels back
    finally:
        s.close()


def test_a_picture_over_the_whole_pixel_budget_is_too_large_not_busy_and_the_others_are_served() -> None:
    s = Served(replace(SETTINGS, max_pixels_in_flight=3000))
    try:
        small = encode(noise(40, 40), "PNG")
        reply = s.detect(small, GOOD, small)
        assert [r.error.code for r in reply.results] == [0, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], 0]
        assert (
            "too large" in reply.results[1].error.message
            and "try again" not in reply.results[1].error.message
        )
        assert [len(r.faces) for r in reply.results] == [1, 0, 1]
    finally:
        s.close()


def test_a_header_that_declares_more_pixels_than_its_bytes_can_carry_is_refused_before_decoding(
    served: Served,
) -> None:
    lie = lying_jpeg(6000, 6000)
    assert len(lie) < 1000
    reply = served.detect(lie, GOOD)
    assert reply.results[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "6000x6000" in reply.results[0].error.message
    assert (reply.results[0].width, len(reply.results[0].faces)) == (0, 0)
    assert [size for size, _ in served.fake.calls] == [1]  # the model saw only the good picture
    assert_still_answers(served)

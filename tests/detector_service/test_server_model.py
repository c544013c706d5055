"""The Detector service with the real MTCNN: in-process server on port 0, and the real process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from detector_service.batcher import BatchingDetector
from detector_service.config import Settings
from detector_service.detector import Detector
from detector_service.service import SERVICE_NAME, build_detector_server
from facerec.server import Health
from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc
from facerec_app.health_check import check
from tests.support.images import encode, noise, png_header_only
from tests.support.servers import running

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def jpegs(train_images) -> list[bytes]:
    return [path.read_bytes() for _, path in train_images[::12]]


@pytest.fixture(scope="module")
def stub(mtcnn_model) -> Iterator[detector_pb2_grpc.DetectorStub]:
    # mtcnn's Keras models alone (no RetinaFace loaded): requests naming no model get MTCNN.
    settings = Settings(host="127.0.0.1", port=0, max_images_per_request=10, model="mtcnn")
    batching = BatchingDetector(Detector(mtcnn_model))
    health = Health([SERVICE_NAME])
    server, port = build_detector_server(settings, batching, health)
    server.start()
    batching.warm_up()
    health.set_serving()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield detector_pb2_grpc.DetectorStub(channel)
    server.stop(0)
    batching.close()


def detect(stub, *datas: bytes, **options) -> detector_pb2.DetectResponse:
    request = detector_pb2.DetectRequest(
        images=[common_pb2.Image(data=d) for d in datas], options=detector_pb2.DetectOptions(**options)
    )
    return stub.Detect(request, timeout=60)


def test_dataset_pictures_through_grpc(stub, jpegs) -> None:
    reply = detect(stub, *jpegs, return_crops=True)
    assert len(reply.results) == len(jpegs)
    for result in reply.results:
        assert result.error.code == 0 and result.width > 0 and len(result.faces) >= 1
        crop = result.faces[0].crop
        assert (crop.width, crop.height, len(crop.rgb)) == (160, 160, 160 * 160 * 3)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", grpc.StatusCode.INVALID_ARGUMENT),
        (b"GIF89a? no, just text\n", grpc.StatusCode.INVALID_ARGUMENT),
        (encode(noise(1, 1), "PNG"), grpc.StatusCode.INVALID_ARGUMENT),
        (png_header_only(20000, 20000), grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
    ids=["empty", "text", "one-pixel", "huge-header"],
)
def test_bad_image_then_good(stub, jpegs, data: bytes, code: grpc.StatusCode) -> None:
    assert detect(stub, data).results[0].error.code == code.value[0]
    assert len(detect(stub, jpegs[0]).results[0].faces) >= 1


def test_truncated_jpeg_then_good(stub, jpegs) -> None:
    assert detect(stub, jpegs[1][: len(jpegs[1]) // 2]).results[0].error.code in (
        0,  # libjpeg fills a cut-off tail with grey and may still find the face
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
    )
    assert detect(stub, jpegs[1][:300]).results[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert len(detect(stub, jpegs[0]).results[0].faces) >= 1


@pytest.mark.parametrize("count", [0, 11])
def test_no_images_or_too_many(stub, jpegs, count: int) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        detect(stub, *([jpegs[0]] * count))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(detect(stub, jpegs[0]).results[0].faces) >= 1


def test_ten_with_one_corrupt(stub, jpegs) -> None:
    datas = [jpegs[i % len(jpegs)] for i in range(10)]
    datas[4] = b"\x89PNG\r\n\x1a\n broken"
    reply = detect(stub, *datas)
    assert [r.error.code for r in reply.results].count(0) == 9
    assert reply.results[4].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert all(len(r.faces) >= 1 for i, r in enumerate(reply.results) if i != 4)


def test_the_real_process_serves_after_warm_up(jpegs) -> None:
    with running("detector_service", ["--max-images-per-request", "2"]) as service:
        serving, detail = check(service.address, SERVICE_NAME)
        assert serving, detail
        with grpc.insecure_channel(service.address) as channel:
            stub = detector_pb2_grpc.DetectorStub(channel)
            assert len(detect(stub, jpegs[0]).results[0].faces) >= 1
            with pytest.raises(grpc.RpcError) as caught:
                detect(stub, *jpegs[:3])
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def tensorflow_files_mapped(pid: int) -> list[str]:
    """The files of TensorFlow's (its package or shared libraries) that process pid has loaded: importing
    tensorflow, or anything that does (mtcnn, tf2onnx, keras on its TensorFlow backend), maps them."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    files = {line.split()[-1] for line in maps if len(line.split()) >= 6}
    return sorted(f for f in files if "tensorflow" in f.lower())


def test_a_serving_detector_never_loads_tensorflow(fetched_assets, jpegs) -> None:
    # The ONNX exports must be there already (made here, with TensorFlow, in the test process if not):
    # the detector imports TensorFlow only to export them once.
    home = str(fetched_assets.home)
    Detector.load(Settings.from_env({"FACEREC_HOME": home}))
    with running("detector_service", env={"FACEREC_HOME": home}) as service:
        with grpc.insecure_channel(service.address) as channel:
            reply = detect(detector_pb2_grpc.DetectorStub(channel), jpegs[0], return_crops=True)
        assert len(reply.results[0].faces) == 1
        assert tensorflow_files_mapped(service.process.pid) == []


def test_a_detector_without_retinafaces_weights_exits_with_one_sentence(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "DETECTOR_RETINAFACE_WEIGHTS": str(tmp_path / "absent.onnx")}
    done = subprocess.run(
        [sys.executable, "-m", "detector_service", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("run `facerec fetch`.")

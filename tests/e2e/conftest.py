"""Real inference services for end-to-end tests: one detector and one embedder process per session
(TensorFlow loads once), started side by side on port 0."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from facerec.assets import Assets
from facerec_app.supervisor import ServiceProcess
from tests.support.servers import Running

ARGS = ["--host", "127.0.0.1", "--port", "0"]


@pytest.fixture(scope="session")
def inference_services(fetched_assets: Assets) -> Iterator[tuple[Running, Running]]:
    """(detector, embedder) processes with the real MTCNN and FaceNet, serving on 127.0.0.1.

    Both are started from this (the main) thread: children die with the thread that started them
    (PR_SET_PDEATHSIG), so a worker thread must not start them.
    """
    children = [
        ServiceProcess.start("detector_service", ARGS),
        ServiceProcess.start("embedding_service", ARGS),
    ]
    try:
        for child in children:
            child.wait_ready(180.0)
    except BaseException:
        for child in children:
            child.stop()
        raise
    detector, embedder = children
    _first_decode(detector.address)
    yield detector, embedder
    detector.stop()
    embedder.stop()


def _first_decode(address: str) -> None:
    """One picture through the detector before the tests send concurrent ones: Pillow registers its
    format plugins on the first open, and concurrent first opens can race (KeyError 'MPO' → INTERNAL)."""
    import io

    import grpc
    from PIL import Image

    from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc

    png = io.BytesIO()
    Image.new("RGB", (64, 64)).save(png, format="PNG")
    with grpc.insecure_channel(address) as channel:
        detector_pb2_grpc.DetectorStub(channel).Detect(
            detector_pb2.DetectRequest(images=[common_pb2.Image(data=png.getvalue())]), timeout=120
        )

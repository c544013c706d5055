"""Real inference services for end-to-end tests: one detector and one embedder process per session
(TensorFlow loads once), started side by side on port 0."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from facerec.assets import Assets
from facerec.supervisor import ServiceProcess
from tests.servers import Running

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
        ports = [child.wait_ready(180.0) for child in children]
    except BaseException:
        for child in children:
            child.stop()
        raise
    detector, embedder = (Running(c.process, port, c.output) for c, port in zip(children, ports, strict=True))
    yield detector, embedder
    detector.stop()
    embedder.stop()

"""The gallery's clients send the request id they are called under, also for the chunks they send from
their thread pool (a pool thread does not inherit the caller's context): a real gRPC server on port 0."""

from __future__ import annotations

import threading

from facerec import requestid
from facerec.server import Health, Service, build_server
from facerec.settings import ServerOptions
from facerec.v1 import detector_pb2, detector_pb2_grpc
from gallery.clients import DetectorClient
from gallery.ports import DetectorOptions


class Recording(detector_pb2_grpc.DetectorServicer):
    """Answers every picture with no face, and notes the request id each call was bound to."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def Detect(self, request, context):
        with self._lock:
            self.seen.append(requestid.current())
        return detector_pb2.DetectResponse(
            results=[detector_pb2.ImageResult(width=1, height=1) for _ in request.images]
        )


def test_every_chunk_of_a_request_carries_its_id() -> None:
    recording = Recording()
    service = Service(
        "facerec.v1.Detector", lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(recording, s)
    )
    server, port = build_server([service], ServerOptions(host="127.0.0.1", port=0, max_workers=4), Health([]))
    server.start()
    client = DetectorClient(f"127.0.0.1:{port}", timeout_s=10, max_images_per_call=1, concurrency=4)
    try:
        with requestid.bound("enroll-of-six"):
            images = client.detect([b"a", b"b", b"c", b"d", b"e", b"f"], DetectorOptions())
        assert len(images) == 6
        assert recording.seen == ["enroll-of-six"] * 6
        # Outside any request, the server makes an id of its own for each call.
        client.detect([b"a", b"b"], DetectorOptions())
        assert len(set(recording.seen[6:])) == 2 and "enroll-of-six" not in recording.seen[6:]
    finally:
        client.close()
        server.stop(0).wait()

"""Overload on real gRPC servers: with the model (or downstream) stuck, a flood from many threads is
shed at once as RESOURCE_EXHAUSTED, the queue never grows past its bound, nothing is INTERNAL, and
once the load is gone the service answers normally.

"At once" is shown without timing: every refused call has come back while the model is still
blocked, i.e. no refusal waited for the work ahead of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np

from detector_service.batcher import BatchingDetector
from detector_service.config import Settings as DetectorSettings
from detector_service.detector import Box, Detection, Landmarks
from detector_service.service import build_detector_server
from embedding_service.batcher import EmbeddingBatcher
from embedding_service.config import Settings as EmbedderSettings
from embedding_service.embedder import Embedder
from embedding_service.service import build_server as build_embedder_server
from facerec.server import Health, Service
from facerec.server import build_server as build_grpc_server
from facerec.settings import ServerOptions
from facerec.v1 import (
    common_pb2,
    detector_pb2,
    detector_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    gallery_pb2,
    gallery_pb2_grpc,
)
from gallery.backend import open_gallery
from gallery.clients import DetectorClient, EmbedderClient
from gallery.config import Settings as GallerySettings
from gallery.service import build_server as build_gallery_server
from tests.support.gallery import MODEL, FakeDetectorServicer, FakeEmbedderServicer, World, portrait
from tests.support.images import encode, noise

CALLERS = 48
GALLERY_LIMIT = 3
OK, SHED = grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED


class Gate:
    """Blocks model calls until opened; counts the items held inside."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.holding = 0
        self._lock = threading.Lock()

    def hold(self, items: int) -> None:
        with self._lock:
            self.holding += items
        self.opened.wait(30)
        with self._lock:
            self.holding -= items


class GatedDetector:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def detect(self, images, options):
        self.gate.hold(len(images))
        marks = Landmarks((1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0))
        return [[Detection(Box(0.0, 0.0, 10.0, 10.0), 0.99, marks, None)] for _ in images]


def flood(call: Callable[[], object], blocked: Callable[[], int], gate: Gate) -> tuple[list, list]:
    """Runs `call` from CALLERS threads with the gate shut. Returns (codes back before opening, after)."""
    before: list[grpc.StatusCode] = []
    after: list[grpc.StatusCode] = []
    details: list[str] = []

    def one() -> None:
        try:
            call()
            code = OK
        except grpc.RpcError as exc:
            code = exc.code()
            details.append(exc.details() or "")
        (after if gate.opened.is_set() else before).append(code)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(CALLERS)]
    for t in threads:
        t.start()
    # Settled: every call is either answered or held by the model/queue (polling, not timing).
    give_up = time.monotonic() + 60
    while len(before) + blocked() < CALLERS and time.monotonic() < give_up:
        time.sleep(0.01)
    gate.opened.set()
    for t in threads:
        t.join(30)
    assert len(before) + len(after) == CALLERS  # every call came back
    assert all(d and "Traceback" not in d for d in details)
    return before, after


def check_shed(before: list, after: list) -> None:
    assert before and set(before) == {SHED}, before  # refused while the model was stuck: at once
    assert set(after) <= {OK}, after  # the held calls all finish once it moves: nothing INTERNAL


def test_detector_sheds_a_flood_at_once_and_recovers() -> None:
    gate = Gate()
    settings = DetectorSettings(host="127.0.0.1", port=0, max_queue=4, max_batch=2)
    detector = BatchingDetector(
        GatedDetector(gate), max_batch=2, max_delay_ms=1, max_queue=settings.max_queue
    )
    server, port = build_detector_server(settings, detector, Health(["facerec.v1.Detector"]))
    server.start()
    depth: list[int] = []

    def blocked() -> int:
        depth.append(detector.batcher.queue_depth())
        return depth[-1] + gate.holding

    picture = encode(noise(48, 64), "PNG")
    request = detector_pb2.DetectRequest(images=[common_pb2.Image(data=picture)])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = detector_pb2_grpc.DetectorStub(channel)
            before, after = flood(lambda: stub.Detect(request, timeout=30), blocked, gate)
            check_shed(before, after)
            assert max(depth) <= settings.max_queue and detector.batcher.stats.rejected == len(before)
            assert len(stub.Detect(request, timeout=10).results[0].faces) == 1
    finally:
        server.stop(0)
        detector.close()


def test_embedder_sheds_a_flood_at_once_and_recovers(tmp_path: Path) -> None:
    gate = Gate()

    def infer(batch):
        gate.hold(len(batch))
        return np.ones((len(batch), 128), dtype=np.float32)

    settings = EmbedderSettings(
        weights_path=tmp_path / "w.h5",
        calibration_path=tmp_path / "c.json",
        host="127.0.0.1",
        port=0,
        max_queue=4,
    )
    batcher = EmbeddingBatcher.from_settings(Embedder(infer, runtime="fake"), settings)
    server, port = build_embedder_server(settings, batcher, Health(["facerec.v1.Embedder"]))
    server.start()
    crop = np.zeros((160, 160, 3), np.uint8)
    face = embedding_pb2.FaceInput(crop=common_pb2.RgbImage(rgb=crop.tobytes(), width=160, height=160))
    request = embedding_pb2.EmbedRequest(faces=[face])
    depth: list[int] = []

    def blocked() -> int:
        depth.append(batcher.queue_depth())
        return depth[-1] + gate.holding

    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = embedding_pb2_grpc.EmbedderStub(channel)
            before, after = flood(lambda: stub.Embed(request, timeout=30), blocked, gate)
            check_shed(before, after)
            assert max(depth) <= settings.max_queue
            assert len(stub.Embed(request, timeout=10).results[0].embedding.values) == 128
    finally:
        server.stop(0)
        batcher.close()


class GatedDetectorServicer(FakeDetectorServicer):
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def Detect(self, request, context):
        self.gate.hold(1)
        return super().Detect(request, context)


def test_gallery_sheds_beyond_max_concurrent_rpcs_and_recovers(tmp_path: Path) -> None:
    """The gallery has no batcher: grpc's maximum_concurrent_rpcs (GALLERY_MAX_CONCURRENT_RPCS) bounds it."""
    gate, world = Gate(), World()
    downstream = []
    for name, add in (
        (
            "facerec.v1.Detector",
            lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(GatedDetectorServicer(gate), s),
        ),
        (
            "facerec.v1.Embedder",
            lambda s: embedding_pb2_grpc.add_EmbedderServicer_to_server(FakeEmbedderServicer(world), s),
        ),
    ):
        server, port = build_grpc_server(
            [Service(name, add)], ServerOptions(host="127.0.0.1"), Health([name])
        )
        server.start()
        downstream.append((server, f"127.0.0.1:{port}"))
    settings = GallerySettings(
        store=tmp_path / "g.sqlite", calibration_path=tmp_path / "c.json", host="127.0.0.1", port=0
    )
    settings = replace(settings, max_concurrent_rpcs=GALLERY_LIMIT)
    gallery = open_gallery(
        settings.store, MODEL, DetectorClient(downstream[0][1], 30), EmbedderClient(downstream[1][1], 30)
    )
    server, port = build_gallery_server(settings, gallery, Health(["facerec.v1.Gallery"]))
    server.start()
    request = gallery_pb2.IdentifyRequest(image=common_pb2.Image(data=portrait(world.val["person-0"][0])))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            before, after = flood(lambda: stub.Identify(request, timeout=30), lambda: gate.holding, gate)
            check_shed(before, after)
            assert len(after) == GALLERY_LIMIT
            assert len(stub.Identify(request, timeout=10).faces) == 1
    finally:
        server.stop(0)
        gallery.close()
        for s, _ in downstream:
            s.stop(0)

"""Operating points through gRPC: a real gallery server on port 0 (fake Detector and Embedder servers
downstream) whose requests name a calibrated point, answers that say which threshold and point were
used, Stats listing every point, the live calibration file, and exporting enrolled embeddings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from numpy.typing import NDArray

from facerec.calibration import (
    DEFAULT_IDENTIFICATION_THRESHOLD,
    DEFAULT_OPERATING_POINT,
    DEFAULT_POINTS,
    DEFAULT_THRESHOLD,
    CalibrationSource,
    OperatingPoint,
    save_calibration,
)
from facerec.server import Health, Service
from facerec.server import build_server as build_grpc_server
from facerec.settings import ServerOptions
from facerec.v1 import common_pb2, detector_pb2_grpc, embedding_pb2_grpc, gallery_pb2, gallery_pb2_grpc
from gallery.backend import open_gallery
from gallery.clients import DetectorClient, EmbedderClient
from gallery.config import Settings
from gallery.service import SERVICE_NAME, build_server
from tests.support.gallery import MODEL, FakeDetectorServicer, FakeEmbedderServicer, World, portrait

INVALID = grpc.StatusCode.INVALID_ARGUMENT
# Same-person faces of the synthetic world lie ≈0.6 apart, different people's ≈1.4: "strict" rejects
# a same-person pair that "loose" accepts.
STRICT = OperatingPoint("far_1e-3", 0.3, 0.0, 0.0009, 0.1, 100, 4000)
LOOSE = OperatingPoint("far_1e-2", 1.0, 0.004, 0.006, 0.99, 100, 4000)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def downstream(world: World) -> Iterator[tuple[str, str]]:
    """A fake detector and a fake embedder server; yields their addresses."""
    detector, dport = serve(
        "facerec.v1.Detector",
        lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(FakeDetectorServicer(), s),
    )
    embedder, eport = serve(
        "facerec.v1.Embedder",
        lambda s: embedding_pb2_grpc.add_EmbedderServicer_to_server(FakeEmbedderServicer(world), s),
    )
    yield f"127.0.0.1:{dport}", f"127.0.0.1:{eport}"
    detector.stop(0)
    embedder.stop(0)


def serve(name: str, add: Callable[[grpc.Server], None]) -> tuple[grpc.Server, int]:
    server, port = build_grpc_server([Service(name, add)], ServerOptions(host="127.0.0.1"), Health([name]))
    server.start()
    return server, port


def image(data: bytes) -> common_pb2.Image:
    return common_pb2.Image(data=data)


def embedding(vector: NDArray[np.float32]) -> common_pb2.Embedding:
    return common_pb2.Embedding(values=list(vector), model=MODEL)


def enroll(stub: gallery_pb2_grpc.GalleryStub, world: World, name: str, n: int = 8) -> None:
    pictures = [image(portrait(i)) for i in world.train[name][:n]]
    stub.Enroll(gallery_pb2.EnrollRequest(identity=name, images=pictures), timeout=10)


class Served:
    def __init__(self, stub: gallery_pb2_grpc.GalleryStub, calibration_path: Path) -> None:
        self.stub = stub
        self.calibration_path = calibration_path


@pytest.fixture()
def served(tmp_path: Path, downstream: tuple[str, str]) -> Iterator[Served]:
    """A gallery reading its thresholds from tmp_path/calibration.json (absent: the shipped points)."""
    detector, embedders = downstream
    path = tmp_path / "calibration.json"
    settings = Settings(store=tmp_path / "g.sqlite", calibration_path=path, host="127.0.0.1", port=0)
    g = open_gallery(
        settings.store,
        MODEL,
        DetectorClient(detector, timeout_s=10),
        EmbedderClient(embedders, timeout_s=10),
        calibration=CalibrationSource(path, MODEL).current,
    )
    health = Health([SERVICE_NAME])
    server, port = build_server(settings, g, health)
    server.start()
    health.set_serving()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield Served(gallery_pb2_grpc.GalleryStub(channel), path)
    channel.close()
    server.stop(0)
    g.close()


def calibrate(path: Path) -> None:
    save_calibration(
        path,
        MODEL,
        STRICT.threshold,
        identification_threshold=0.9,
        points=(STRICT, LOOSE),
        operating_point="far_1e-3",
    )


def verify(stub, world: World, **fields) -> gallery_pb2.VerifyResponse:
    a, b = world.val["person-0"][:2]
    return stub.Verify(
        gallery_pb2.VerifyRequest(image_a=image(portrait(a)), image_b=image(portrait(b)), **fields),
        timeout=10,
    )


def test_with_no_calibration_file_the_shipped_points_are_listed_and_used(
    served: Served, world: World
) -> None:
    stats = served.stub.Stats(gallery_pb2.StatsRequest(), timeout=10)
    assert [p.name for p in stats.operating_points] == [p.name for p in DEFAULT_POINTS]
    assert stats.operating_point == DEFAULT_OPERATING_POINT
    assert stats.threshold == pytest.approx(DEFAULT_THRESHOLD) and stats.threshold_source == "default"
    listed = stats.operating_points[1]
    assert (listed.far_upper, listed.tar, listed.impostor_pairs) == pytest.approx(
        (DEFAULT_POINTS[1].far_upper, DEFAULT_POINTS[1].tar, DEFAULT_POINTS[1].impostor_pairs)
    )
    assert stats.identification_point.name == "identification"
    reply = verify(served.stub, world)
    assert (reply.operating_point, reply.threshold) == (
        DEFAULT_OPERATING_POINT,
        pytest.approx(DEFAULT_THRESHOLD),
    )
    reply = verify(served.stub, world, operating_point="eer")
    eer = next(p for p in DEFAULT_POINTS if p.name == "eer")
    assert (reply.operating_point, reply.threshold) == ("eer", pytest.approx(eer.threshold))


def test_a_named_point_decides_verify_and_identify_and_the_answer_says_which(
    served: Served, world: World
) -> None:
    calibrate(served.calibration_path)
    enroll(served.stub, world, "person-0")
    enroll(served.stub, world, "person-1")
    strict = verify(served.stub, world, operating_point="far_1e-3")
    loose = verify(served.stub, world, operating_point="far_1e-2")
    assert STRICT.threshold < strict.distance < LOOSE.threshold
    assert (strict.match, strict.threshold, strict.operating_point) == (False, pytest.approx(0.3), "far_1e-3")
    assert (loose.match, loose.threshold, loose.operating_point) == (True, pytest.approx(1.0), "far_1e-2")
    default = verify(served.stub, world)
    assert (default.match, default.operating_point) == (False, "far_1e-3")
    explicit = verify(served.stub, world, threshold=1.5)
    assert (explicit.match, explicit.threshold, explicit.operating_point) == (True, pytest.approx(1.5), "")

    query = image(portrait(world.val["person-1"][0]))
    named = served.stub.Identify(
        gallery_pb2.IdentifyRequest(image=query, operating_point="far_1e-3"), timeout=10
    )
    assert (named.threshold, named.operating_point) == (pytest.approx(0.3), "far_1e-3")
    assert not named.faces[0].known and named.faces[0].distance > 0.3
    usual = served.stub.Identify(gallery_pb2.IdentifyRequest(image=query), timeout=10)
    assert (usual.threshold, usual.operating_point) == (pytest.approx(0.9), "identification")
    assert usual.faces[0].known and usual.faces[0].identity == "person-1"
    by_vector = served.stub.Identify(
        gallery_pb2.IdentifyRequest(
            embedding=embedding(world.vectors[world.val["person-1"][0]]), operating_point="far_1e-2"
        ),
        timeout=10,
    )
    assert (by_vector.operating_point, by_vector.faces[0].identity) == ("far_1e-2", "person-1")


def test_unknown_points_and_a_point_with_a_threshold_are_invalid_and_the_server_still_answers(
    served: Served, world: World
) -> None:
    calibrate(served.calibration_path)
    enroll(served.stub, world, "person-0")
    query = image(portrait(world.val["person-0"][0]))
    bad = [
        ("far_1e-4", 0.0, "Unknown operating point 'far_1e-4'; this gallery knows far_1e-3, far_1e-2."),
        ("far_1e-2", 1.1, "Give a threshold or an operating point, not both."),
        ("x" * 5000, 0.0, None),
    ]
    for name, threshold, message in bad:
        with pytest.raises(grpc.RpcError) as caught:
            verify(served.stub, world, operating_point=name, threshold=threshold)
        assert caught.value.code() == INVALID
        if message:
            assert caught.value.details() == message
        assert len(caught.value.details()) < 200
        with pytest.raises(grpc.RpcError) as caught:
            served.stub.Identify(
                gallery_pb2.IdentifyRequest(image=query, operating_point=name, threshold=threshold),
                timeout=10,
            )
        assert caught.value.code() == INVALID
    # "identification" names Identify's own point, not a pair threshold Verify could use.
    with pytest.raises(grpc.RpcError) as caught:
        verify(served.stub, world, operating_point="identification")
    assert caught.value.code() == INVALID
    assert served.stub.Stats(gallery_pb2.StatsRequest(), timeout=10).faces == 8


def test_a_saved_calibration_is_listed_live_and_an_old_file_names_no_points(
    served: Served, world: World
) -> None:
    calibrate(served.calibration_path)
    stats = served.stub.Stats(gallery_pb2.StatsRequest(), timeout=10)
    assert [(p.name, round(p.threshold, 3)) for p in stats.operating_points] == [
        ("far_1e-3", 0.3),
        ("far_1e-2", 1.0),
    ]
    assert (stats.operating_point, stats.threshold_source) == ("far_1e-3", "calibrated")
    # A file written before operating points: its threshold holds, and naming a point says why it fails.
    served.calibration_path.write_text(
        json.dumps({"models": {MODEL: {"threshold": 1.25, "identification_threshold": 1.0}}})
    )
    stats = served.stub.Stats(gallery_pb2.StatsRequest(), timeout=10)
    assert (stats.threshold, stats.operating_point, len(stats.operating_points)) == (
        pytest.approx(1.25),
        "",
        0,
    )
    reply = verify(served.stub, world)
    assert (reply.threshold, reply.operating_point) == (pytest.approx(1.25), "")
    with pytest.raises(grpc.RpcError) as caught:
        verify(served.stub, world, operating_point="far_1e-3")
    assert caught.value.code() == INVALID and "predates" in caught.value.details()


def test_get_identity_exports_the_enrolled_embeddings_only_when_asked(served: Served, world: World) -> None:
    enroll(served.stub, world, "person-2", n=3)
    plain = served.stub.GetIdentity(gallery_pb2.GetIdentityRequest(identity="person-2"), timeout=10)
    assert all(not f.HasField("embedding") for f in plain.faces)
    full = served.stub.GetIdentity(
        gallery_pb2.GetIdentityRequest(identity="person-2", include_embeddings=True), timeout=10
    )
    got = np.array([f.embedding.values for f in full.faces], dtype=np.float32)
    want = np.stack([world.vectors[i] for i in world.train["person-2"][:3]])
    assert got.shape == (3, 128) and {f.embedding.model for f in full.faces} == {MODEL}
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(grpc.RpcError) as caught:
        served.stub.GetIdentity(
            gallery_pb2.GetIdentityRequest(identity="nobody", include_embeddings=True), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_identification_default_is_reported_as_its_point(served: Served, world: World) -> None:
    enroll(served.stub, world, "person-0")
    reply = served.stub.Identify(
        gallery_pb2.IdentifyRequest(
            image=image(portrait(world.val["person-0"][0])), operating_point="identification"
        ),
        timeout=10,
    )
    assert (reply.threshold, reply.operating_point) == (
        pytest.approx(DEFAULT_IDENTIFICATION_THRESHOLD),
        "identification",
    )

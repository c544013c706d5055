"""The Gallery over gRPC, with the real clients talking to fake Detector and Embedder servers: exact
status codes for bad input, the server answering afterwards, outages as UNAVAILABLE, round_robin
over embedder replicas, and `python -m gallery` starting with its downstream services down."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facerec.calibration import DEFAULT_IDENTIFICATION_THRESHOLD
from facerec.channels import channel_target
from facerec.remote import error_from_rpc
from facerec.server import Health, Service
from facerec.server import build_server as build_grpc_server
from facerec.settings import ServerOptions
from facerec.v1 import (
    common_pb2,
    detector_pb2,
    detector_pb2_grpc,
    embedding_pb2_grpc,
    gallery_pb2,
    gallery_pb2_grpc,
)
from gallery.backend import open_gallery
from gallery.clients import DetectorClient, EmbedderClient
from gallery.config import DEFAULT_MODEL, Settings
from gallery.gallery import Gallery
from gallery.service import SERVICE_NAME, build_server
from tests.support.gallery import MODEL, FakeDetectorServicer, FakeEmbedderServicer, World, picture, portrait
from tests.support.servers import start_service

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def serve(name: str, add) -> tuple[grpc.Server, int]:
    server, port = build_grpc_server([Service(name, add)], ServerOptions(host="127.0.0.1"), Health([name]))
    server.start()
    return server, port


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def downstream(world: World) -> Iterator[tuple[str, str, list[FakeEmbedderServicer]]]:
    """One fake detector and two fake embedder replicas; yields their addresses."""
    detector, dport = serve(
        "facerec.v1.Detector",
        lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(FakeDetectorServicer(), s),
    )
    replicas = [FakeEmbedderServicer(world), FakeEmbedderServicer(world)]
    embedders = [
        serve("facerec.v1.Embedder", lambda s, r=r: embedding_pb2_grpc.add_EmbedderServicer_to_server(r, s))
        for r in replicas
    ]
    addresses = ",".join(f"127.0.0.1:{port}" for _, port in embedders)
    yield f"127.0.0.1:{dport}", addresses, replicas
    for server, _ in [(detector, dport), *embedders]:
        server.stop(0)


def start_gallery(tmp_path: Path, detector: str, embedder: str) -> tuple[grpc.Server, grpc.Channel, Gallery]:
    settings = Settings(
        store=tmp_path / "g.sqlite", calibration_path=tmp_path / "none.json", host="127.0.0.1", port=0
    )
    gallery = open_gallery(
        settings.store, MODEL, DetectorClient(detector, timeout_s=10), EmbedderClient(embedder, timeout_s=10)
    )
    health = Health([SERVICE_NAME])
    server, port = build_server(settings, gallery, health)
    server.start()
    health.set_serving()
    return server, grpc.insecure_channel(f"127.0.0.1:{port}"), gallery


@pytest.fixture()
def gallery(tmp_path: Path, downstream) -> Iterator[gallery_pb2_grpc.GalleryStub]:
    detector, embedders, _ = downstream
    server, channel, g = start_gallery(tmp_path, detector, embedders)
    yield gallery_pb2_grpc.GalleryStub(channel)
    channel.close()
    server.stop(0)
    g.close()


def image(data: bytes) -> common_pb2.Image:
    return common_pb2.Image(data=data)


def embedding(vector, model: str = "") -> common_pb2.Embedding:
    return common_pb2.Embedding(values=list(vector), model=model)


def enroll(stub, world: World, name: str, n: int = 8) -> gallery_pb2.EnrollResponse:
    return stub.Enroll(
        gallery_pb2.EnrollRequest(identity=name, images=[image(portrait(i)) for i in world.train[name][:n]]),
        timeout=10,
    )


@pytest.fixture()
def enrolled(gallery, world: World) -> tuple[gallery_pb2_grpc.GalleryStub, gallery_pb2.EnrollResponse]:
    """person-0 enrolled from a mixed request (two good faces, three bad pictures, a zero embedding),
    person-1 from eight portraits. Returns the stub and person-0's reply."""
    stub = gallery
    a = world.train["person-0"]
    reply = stub.Enroll(
        gallery_pb2.EnrollRequest(
            identity="person-0",
            images=[image(portrait(a[0])), image(b"not a picture"), image(picture()), image(portrait(a[0]))],
            embeddings=[embedding(world.vectors[a[1]]), embedding([0.0] * 128)],
        ),
        timeout=10,
    )
    enroll(stub, world, "person-1")
    return stub, reply


def test_enroll_reports_an_outcome_per_picture_and_embedding(enrolled) -> None:
    _, reply = enrolled
    assert [r.outcome for r in reply.results] == [
        gallery_pb2.ENROLLED,
        gallery_pb2.INVALID,
        gallery_pb2.NO_FACE,
        gallery_pb2.DUPLICATE,
        gallery_pb2.ENROLLED,
        gallery_pb2.INVALID,
    ]
    assert reply.results[1].error.code == INVALID.value[0] and reply.results[1].error.message
    # Each per-item error names its item, as a BadRequest field violation would.
    assert [r.error.field for r in reply.results if r.error.code] == ["images[1]", "embeddings[1]"]
    assert reply.results[0].box.width == 100 and reply.results[0].faces_found == 1


def test_identify_names_a_known_face_and_leaves_a_stranger_unknown(enrolled, world: World) -> None:
    stub, _ = enrolled
    found = stub.Identify(
        gallery_pb2.IdentifyRequest(image=image(portrait(world.val["person-1"][0]))), timeout=10
    )
    assert found.method == "svm" and found.threshold == pytest.approx(DEFAULT_IDENTIFICATION_THRESHOLD)
    assert (found.faces[0].identity, found.faces[0].known, found.faces[0].box.height) == (
        "person-1",
        True,
        120,
    )
    stranger = stub.Identify(
        gallery_pb2.IdentifyRequest(embedding=embedding(world.vectors[world.val["person-4"][0]]), top_k=1),
        timeout=10,
    )
    assert (stranger.faces[0].identity, stranger.faces[0].known, len(stranger.faces[0].candidates)) == (
        "",
        False,
        1,
    )


def test_verify_against_an_identity_and_between_two_pictures(enrolled, world: World) -> None:
    stub, _ = enrolled
    with_passer_by = stub.Identify(
        gallery_pb2.IdentifyRequest(
            image=image(
                picture(
                    (world.val["person-1"][0], (10.0, 20.0, 100.0, 120.0), 0.99),
                    (world.val["person-0"][0], (400.0, 30.0, 18.0, 25.0), 0.98),
                )
            )
        ),
        timeout=10,
    )
    named, tiny = with_passer_by.faces
    assert named.identity == "person-1" and named.not_identifiable == gallery_pb2.NOT_IDENTIFIABLE_UNSPECIFIED
    assert (tiny.identity, tiny.known, tiny.not_identifiable) == ("", False, gallery_pb2.FACE_TOO_SMALL)
    assert tiny.not_identifiable_reason.startswith("The face is 18x25 px") and tiny.box.width == 18

    same = stub.Verify(
        gallery_pb2.VerifyRequest(image_a=image(portrait(world.val["person-0"][0])), identity="person-0"),
        timeout=10,
    )
    assert same.match and not same.HasField("box_b") and same.faces_a == 1
    differ = stub.Verify(
        gallery_pb2.VerifyRequest(
            image_a=image(portrait(world.val["person-0"][0])),
            image_b=image(portrait(world.val["person-1"][0])),
        ),
        timeout=10,
    )
    assert not differ.match and differ.distance > differ.threshold


def test_search_finds_the_enrolled_embedding_first(enrolled, world: World) -> None:
    stub, reply = enrolled
    a = world.train["person-0"]
    hits = stub.Search(
        gallery_pb2.SearchRequest(embedding=embedding(world.vectors[a[1]]), top_k=2), timeout=10
    ).hits
    assert hits[0].face_id == reply.results[4].face_id and hits[0].identity == "person-0"


def test_list_get_remove_train_and_stats(enrolled) -> None:
    stub, _ = enrolled
    listed = stub.ListIdentities(gallery_pb2.ListIdentitiesRequest(page_size=1), timeout=10)
    assert [i.identity for i in listed.identities] == ["person-0"] and listed.next_page_token
    rest = stub.ListIdentities(
        gallery_pb2.ListIdentitiesRequest(page_token=listed.next_page_token), timeout=10
    )
    assert [(i.identity, i.face_count) for i in rest.identities] == [
        ("person-1", 8)
    ] and not rest.next_page_token

    got = stub.GetIdentity(gallery_pb2.GetIdentityRequest(identity="person-0"), timeout=10)
    assert got.identity.face_count == 2 and {f.model for f in got.faces} == {MODEL}
    assert len({f.image_sha256 for f in got.faces}) == 2
    assert stub.RemoveFace(
        gallery_pb2.RemoveFaceRequest(face_id=got.faces[0].face_id), timeout=10
    ).identity == ("person-0")
    trained = stub.Train(gallery_pb2.TrainRequest(), timeout=10)
    assert (trained.identities, trained.faces, trained.train_accuracy) == (2, 9, 1.0)
    assert (
        stub.RemoveIdentity(gallery_pb2.RemoveIdentityRequest(identity="person-1"), timeout=10).faces_removed
        == 8
    )
    stats = stub.Stats(gallery_pb2.StatsRequest(), timeout=10)
    assert (stats.identities, stats.faces, stats.index_size, stats.model) == (1, 1, 1, MODEL)
    assert (stats.index_kind, stats.classifier, stats.threshold_source) == (
        "flat",
        "nearest-neighbour",
        "default",
    )


def bad_requests(world: World) -> list[tuple[str, object, grpc.StatusCode]]:
    v = world.vectors[0]
    return [
        ("Enroll", gallery_pb2.EnrollRequest(identity="", images=[image(portrait(0))]), INVALID),
        ("Enroll", gallery_pb2.EnrollRequest(identity="x" * 10_000, images=[image(portrait(0))]), INVALID),
        ("Enroll", gallery_pb2.EnrollRequest(identity="a\x1bb", images=[image(portrait(0))]), INVALID),
        ("Enroll", gallery_pb2.EnrollRequest(identity="nothing"), INVALID),
        (
            "Enroll",
            gallery_pb2.EnrollRequest(
                identity="tiny",
                images=[image(portrait(0))],
                detect_options=detector_pb2.DetectOptions(min_face_size_px=5),
            ),
            INVALID,
        ),
        ("Identify", gallery_pb2.IdentifyRequest(), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(image=image(b"")), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(image=image(b"not a picture")), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(embedding=embedding(v[:100])), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(embedding=embedding([float("nan")] * 128)), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(embedding=embedding([float("inf")] + [0.1] * 127)), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(embedding=embedding([0.0] * 128)), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(embedding=embedding(v), top_k=101), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(embedding=embedding(v), top_k=-1), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(embedding=embedding(v), threshold=2.5), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(embedding=embedding(v), threshold=-0.5), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(embedding=embedding(v, "arcface-512")), PRECONDITION),
        # JSON that is no fake picture is undecodable, as a real detector says of bytes like these.
        ("Identify", gallery_pb2.IdentifyRequest(image=image(b"0")), INVALID),
        ("Identify", gallery_pb2.IdentifyRequest(image=image(b'{"faces": 3}')), INVALID),
        ("Verify", gallery_pb2.VerifyRequest(), INVALID),
        ("Verify", gallery_pb2.VerifyRequest(image_a=image(portrait(0))), INVALID),
        ("Verify", gallery_pb2.VerifyRequest(image_a=image(portrait(0)), identity="nobody"), NOT_FOUND),
        ("Verify", gallery_pb2.VerifyRequest(image_a=image(picture()), image_b=image(portrait(0))), INVALID),
        ("Search", gallery_pb2.SearchRequest(), INVALID),
        ("Search", gallery_pb2.SearchRequest(embedding=embedding(v), top_k=1000), INVALID),
        ("ListIdentities", gallery_pb2.ListIdentitiesRequest(page_size=5000), INVALID),
        ("GetIdentity", gallery_pb2.GetIdentityRequest(identity="nobody"), NOT_FOUND),
        ("GetIdentity", gallery_pb2.GetIdentityRequest(identity=""), INVALID),
        ("RemoveIdentity", gallery_pb2.RemoveIdentityRequest(identity="nobody"), NOT_FOUND),
        ("RemoveFace", gallery_pb2.RemoveFaceRequest(face_id=987654), NOT_FOUND),
        ("Train", gallery_pb2.TrainRequest(), PRECONDITION),
    ]


def test_bad_requests_get_exact_codes_and_the_server_still_answers(gallery, world: World) -> None:
    stub = gallery
    enroll(stub, world, "person-0", n=2)  # one identity: Train is a failed precondition
    for method, request, code in bad_requests(world):
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, method)(request, timeout=10)
        assert info.value.code() == code, (method, request, info.value.details())
        assert info.value.details() and "Traceback" not in info.value.details()
        assert stub.Stats(gallery_pb2.StatsRequest(), timeout=10).faces == 2
    answer = stub.Identify(
        gallery_pb2.IdentifyRequest(image=image(portrait(world.val["person-0"][0]))), timeout=10
    )
    assert answer.faces[0].identity == "person-0"


def test_a_downstream_outage_is_unavailable_naming_the_service(
    tmp_path: Path, downstream, world: World, dead: str
) -> None:
    _, embedders, _ = downstream
    server, channel, g = start_gallery(tmp_path, dead, embedders)
    stub = gallery_pb2_grpc.GalleryStub(channel)
    try:
        for method, request in [
            ("Identify", gallery_pb2.IdentifyRequest(image=image(portrait(0)))),
            ("Enroll", gallery_pb2.EnrollRequest(identity="person-0", images=[image(portrait(0))])),
            ("Verify", gallery_pb2.VerifyRequest(image_a=image(portrait(0)), image_b=image(portrait(1)))),
        ]:
            with pytest.raises(grpc.RpcError) as info:
                getattr(stub, method)(request, timeout=20)
            assert info.value.code() == UNAVAILABLE
            assert info.value.details() == f"The detector at {dead} is unavailable."
        # Everything that needs no detector still works.
        reply = stub.Enroll(
            gallery_pb2.EnrollRequest(identity="person-0", embeddings=[embedding(world.vectors[0])]),
            timeout=10,
        )
        assert reply.results[0].outcome == gallery_pb2.ENROLLED
        assert (
            stub.Identify(gallery_pb2.IdentifyRequest(embedding=embedding(world.vectors[1])), timeout=10)
            .faces[0]
            .known
        )
        assert stub.Stats(gallery_pb2.StatsRequest(), timeout=10).faces == 1
    finally:
        channel.close()
        server.stop(0)
        g.close()


def test_embedder_replicas_share_the_calls(gallery, downstream, world: World) -> None:
    _, _, replicas = downstream
    before = [r.calls for r in replicas]
    for i in world.val["person-2"]:
        gallery.Identify(gallery_pb2.IdentifyRequest(image=image(portrait(i, tag="rr"))), timeout=10)
        gallery.Identify(gallery_pb2.IdentifyRequest(image=image(portrait(i, tag="rr2"))), timeout=10)
    made = [r.calls - b for r, b in zip(replicas, before, strict=True)]
    assert sum(made) == 10 and min(made) >= 2, made


def test_channel_targets() -> None:
    assert channel_target("127.0.0.1:50051") == "127.0.0.1:50051"
    assert channel_target("dns:///detector:50051") == "dns:///detector:50051"
    assert channel_target("127.0.0.1:5001, 127.0.0.1:5002") == "ipv4:127.0.0.1:5001,127.0.0.1:5002"
    assert channel_target("[::1]:5001,[::1]:5002") == "ipv6:[::1]:5001,[::1]:5002"
    for bad in ("", "detector:1,embedder:2", "127.0.0.1:1,[::1]:2"):
        with pytest.raises(ValueError):
            channel_target(bad)


def test_settings_from_env_and_flags_agree(tmp_path: Path) -> None:
    env = {
        "FACEREC_HOME": str(tmp_path),
        "GALLERY_DETECTOR": "dns:///detector:50051",
        "GALLERY_THRESHOLD": "0.9",
    }
    settings = Settings.from_env(env)
    assert (
        settings.store == str(tmp_path / "gallery.sqlite")
        and settings.calibration_path == tmp_path / "calibration.json"
    )
    assert (settings.detector, settings.threshold, settings.port) == ("dns:///detector:50051", 0.9, 50053)
    args = Settings.parser(settings, "gallery", "").parse_args(
        ["--svm-max-identities", "7", "--threshold", "1.1"]
    )
    assert (args.svm_max_identities, args.threshold, args.detector) == (7, 1.1, "dns:///detector:50051")
    with pytest.raises(ValueError):
        Settings.from_env({**env, "GALLERY_THRESHOLD": "3"})


def test_main_serves_with_its_downstream_services_down(tmp_path: Path, dead: str) -> None:
    store = tmp_path / "g.sqlite"
    running = start_service(
        "gallery",
        ["--store", str(store), "--detector", dead, "--embedder", dead],
        env={"FACEREC_HOME": str(tmp_path)},
        timeout_s=60,
    )
    try:
        with grpc.insecure_channel(running.address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10
            )
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            stub = gallery_pb2_grpc.GalleryStub(channel)
            stats = stub.Stats(gallery_pb2.StatsRequest(), timeout=10)
            assert (stats.model, stats.threshold_source, stats.faces) == (DEFAULT_MODEL, "default", 0)
            with pytest.raises(grpc.RpcError) as info:
                stub.Identify(gallery_pb2.IdentifyRequest(image=image(b"\x89PNG....")), timeout=20)
            assert info.value.code() == UNAVAILABLE and dead in info.value.details()
            vector = np.random.default_rng(7).normal(size=128)
            reply = stub.Enroll(
                gallery_pb2.EnrollRequest(identity="someone", embeddings=[embedding(vector)]), timeout=10
            )
            assert reply.results[0].outcome == gallery_pb2.ENROLLED
    finally:
        assert running.stop() == 0
    assert store.is_file() and (tmp_path / "g.sqlite.faiss").is_file()


def test_a_picture_enrolled_under_another_identity_is_a_warning_and_strict_refuses_it(
    gallery, world: World
) -> None:
    stub = gallery
    shot = image(portrait(world.train["person-0"][0]))
    first = stub.Enroll(gallery_pb2.EnrollRequest(identity="person-0", images=[shot]), timeout=10)
    assert (first.results[0].outcome, first.results[0].duplicate_of) == (gallery_pb2.ENROLLED, "")
    # The same picture under another name: stored, with a warning that names the first.
    second = stub.Enroll(gallery_pb2.EnrollRequest(identity="person-1", images=[shot]), timeout=10)
    assert (second.results[0].outcome, second.results[0].duplicate_of) == (gallery_pb2.ENROLLED, "person-0")
    assert second.results[0].face_id not in (0, first.results[0].face_id)
    # Strict: refused, nothing stored, the reason in one sentence; the other pictures still enrolled.
    other = image(portrait(world.train["person-2"][0]))
    strict = stub.Enroll(
        gallery_pb2.EnrollRequest(identity="person-2", images=[shot, other], strict=True), timeout=10
    )
    refused, kept = strict.results
    assert (refused.outcome, refused.face_id, refused.duplicate_of) == (gallery_pb2.INVALID, 0, "person-0")
    assert refused.error.message == (
        "This picture is already enrolled as 'person-0'; it was not enrolled as 'person-2' too."
    )
    assert kept.outcome == gallery_pb2.ENROLLED and kept.duplicate_of == ""
    faces = stub.GetIdentity(gallery_pb2.GetIdentityRequest(identity="person-2"), timeout=10).faces
    assert [f.face_id for f in faces] == [kept.face_id]
    # The same picture again for its own identity stays a plain DUPLICATE.
    again = stub.Enroll(
        gallery_pb2.EnrollRequest(identity="person-0", images=[shot], strict=True), timeout=10
    )
    assert (again.results[0].outcome, again.results[0].face_id) == (
        gallery_pb2.DUPLICATE,
        first.results[0].face_id,
    )


def test_facerec_enroll_strict_refuses_and_without_it_warns(tmp_path: Path, downstream, world: World) -> None:
    detector, embedders, _ = downstream
    settings = Settings(
        store=tmp_path / "g.sqlite", calibration_path=tmp_path / "none.json", host="127.0.0.1", port=0
    )
    g = open_gallery(
        settings.store, MODEL, DetectorClient(detector, timeout_s=10), EmbedderClient(embedders, timeout_s=10)
    )
    health = Health([SERVICE_NAME])
    server, port = build_server(settings, g, health)
    server.start()
    health.set_serving()
    target = f"127.0.0.1:{port}"
    shot = tmp_path / "shot.jpg"
    shot.write_bytes(portrait(world.train["person-3"][0]))
    try:

        def enroll(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "facerec_app.cli", "enroll", "--gallery", target, *args]
            return subprocess.run(
                command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
            )

        assert enroll("--identity", "person-3", str(shot)).returncode == 0
        warned = enroll("--identity", "someone-else", str(shot))
        assert warned.returncode == 0, warned.stderr
        assert "already enrolled as 'person-3'" in warned.stderr
        refused = enroll("--identity", "a-third", str(shot), "--strict")
        assert refused.returncode == 1
        assert "This picture is already enrolled as 'person-3'" in refused.stderr
        assert [r.identity for r in g.list_identities()[0]] == ["person-3", "someone-else"]
    finally:
        server.stop(0)
        g.close()


def test_represent_answers_every_faces_box_quality_and_embedding_without_touching_the_store(
    enrolled, world: World
) -> None:
    stub, _ = enrolled
    before = stub.Stats(gallery_pb2.StatsRequest(), timeout=10)
    near, tiny = world.val["person-1"][0], world.val["person-0"][0]
    reply = stub.Represent(
        gallery_pb2.RepresentRequest(
            image=image(
                picture((near, (10.0, 20.0, 100.0, 120.0), 0.99), (tiny, (400.0, 30.0, 18.0, 25.0), 0.98))
            )
        ),
        timeout=10,
    )
    assert (reply.width, reply.height, reply.model) == (640, 480, MODEL)
    big, small = reply.faces
    assert (big.box.width, big.box.height, small.box.width) == (100, 120, 18)
    assert (big.quality.size_px, big.quality.detection_confidence) == (100, pytest.approx(0.99))
    assert (
        big.quality.identifiable and big.quality.not_identifiable == gallery_pb2.NOT_IDENTIFIABLE_UNSPECIFIED
    )
    assert big.quality.not_identifiable_reason == ""
    assert (small.quality.identifiable, small.quality.not_identifiable) == (False, gallery_pb2.FACE_TOO_SMALL)
    assert small.quality.size_px == 18 and small.quality.not_identifiable_reason.startswith(
        "The face is 18x25 px"
    )
    # Each face's own embedding, of the gallery's model (the fake embedder names the vector by the crop).
    for face, index in ((big, near), (small, tiny)):
        assert face.embedding.model == MODEL
        np.testing.assert_allclose(face.embedding.values, world.vectors[index], atol=1e-6)
    # Nothing was stored or changed: the same counts and the same enrolled people.
    after = stub.Stats(gallery_pb2.StatsRequest(), timeout=10)
    assert (after.identities, after.faces, after.index_size) == (
        before.identities,
        before.faces,
        before.index_size,
    )
    # The embedding identifies the person as the picture does (Identify takes it as it is).
    named = stub.Identify(gallery_pb2.IdentifyRequest(embedding=big.embedding), timeout=10)
    assert named.faces[0].identity == "person-1"


def test_represent_of_a_picture_without_a_face_is_ok_and_empty(gallery) -> None:
    reply = gallery.Represent(gallery_pb2.RepresentRequest(image=image(picture())), timeout=10)
    assert list(reply.faces) == [] and (reply.width, reply.height, reply.model) == (640, 480, MODEL)


@pytest.mark.parametrize("data", [b"", b"not a picture"])
def test_represent_of_no_picture_or_a_bad_one_is_invalid_argument_naming_the_image(
    gallery, data: bytes
) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        gallery.Represent(gallery_pb2.RepresentRequest(image=image(data)), timeout=10)
    assert failed.value.code() == INVALID
    assert error_from_rpc(failed.value, "the gallery").field == "image"
    assert gallery.Represent(gallery_pb2.RepresentRequest(image=image(picture())), timeout=10).width == 640

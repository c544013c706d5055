"""A real gallery process in front of fake detectors that hang or die: one slow or poisoned part costs
a bounded share of the gallery, and idle streams cannot take the workers unary calls need."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from facerec.v1 import common_pb2, detector_pb2, gallery_pb2, gallery_pb2_grpc
from tests.support.fake_detector import FakeDetector, first_to_exit
from tests.support.servers import Running, start_service

TOKEN = "resilience-test-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
# Nothing listens there: the gallery starts without an embedder (it assumes the default model).
NO_EMBEDDER = "127.0.0.1:9"


def gallery(tmp_path: Path, detector: str, *args: str) -> Running:
    return start_service(
        "gallery",
        [
            *("--store", str(tmp_path / "gallery.sqlite")),
            *("--detector", detector, "--embedder", NO_EMBEDDER),
            *("--calibration", str(tmp_path / "none.json")),
            *("--tokens", f"{TOKEN} rw"),
            *args,
        ],
        timeout_s=120,
    )


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def identify_picture(
    stub: gallery_pb2_grpc.GalleryStub, timeout_s: float = 60.0
) -> gallery_pb2.IdentifyResponse:
    return stub.Identify(
        gallery_pb2.IdentifyRequest(image=common_pb2.Image(data=b"a picture")),
        metadata=AUTH,
        timeout=timeout_s,
    )


def still_answers(address: str) -> None:
    """Stats, ListIdentities, Identify by embedding and health Check all answer OK."""
    with grpc.insecure_channel(address) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        assert stub.Stats(gallery_pb2.StatsRequest(), metadata=AUTH, timeout=30).faces == 0
        stub.ListIdentities(gallery_pb2.ListIdentitiesRequest(), metadata=AUTH, timeout=30)
        vector = np.zeros(128, np.float32)
        vector[0] = 1.0
        answer = stub.Identify(
            gallery_pb2.IdentifyRequest(embedding=common_pb2.Embedding(values=vector.tolist())),
            metadata=AUTH,
            timeout=30,
        )
        assert len(answer.faces) == 1 and not answer.faces[0].known
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def hung_detector() -> Iterator[FakeDetector]:
    fake = FakeDetector("hang")
    yield fake
    fake.kill()


def test_a_hung_detector_holds_at_most_its_share_and_the_rest_keeps_answering(
    tmp_path: Path, hung_detector: FakeDetector
) -> None:
    service = gallery(tmp_path, hung_detector.address, "--max-calls-per-downstream", "4")
    try:
        with grpc.insecure_channel(service.address) as channel, ThreadPoolExecutor(20) as pool:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            finished = threading.Semaphore(0)
            calls = [pool.submit(code_of, lambda: identify_picture(stub)) for _ in range(20)]
            for call in calls:
                call.add_done_callback(lambda _: finished.release())
            assert hung_detector.wait_calls(4)
            # The 16 calls beyond the bound are refused at once, without waiting on the detector.
            assert all(finished.acquire(timeout=60) for _ in range(16))
            early = [c.result() for c in calls if c.done()]
            assert early == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 16
            still_answers(service.address)
            assert sum(not c.done() for c in calls) == 4
            hung_detector.kill()
            codes = [c.result(timeout=60) for c in calls]
        # The 4 that reached the hung replica end when it dies, and are not sent anywhere else.
        assert codes.count(grpc.StatusCode.UNAVAILABLE) == 4
        assert hung_detector.calls == 4
    finally:
        service.stop()


def test_sixteen_idle_reflection_streams_leave_unary_calls_and_health_answering(
    tmp_path: Path, hung_detector: FakeDetector
) -> None:
    service = gallery(tmp_path, hung_detector.address, "--max-workers", "16")
    release = threading.Event()

    def idle() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        release.wait()
        yield from ()

    ended = threading.Semaphore(0)
    try:
        with grpc.insecure_channel(service.address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            streams = [stub.ServerReflectionInfo(idle()) for _ in range(20)]
            for stream in streams:
                stream.add_done_callback(lambda _: ended.release())
            # The server holds 8 streams (its stream limit) and refuses the others at once.
            assert all(ended.acquire(timeout=60) for _ in range(12))
            refused = [s for s in streams if s.done()]
            assert [s.code() for s in refused] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 12
            still_answers(service.address)
            release.set()
            assert all(ended.acquire(timeout=60) for _ in range(8))
            assert all(s.code() == grpc.StatusCode.OK for s in streams if s not in refused)
            # Once they end, their slots are free again: a `grpcurl list` works.
            listing = stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
            names = {s.name for s in next(listing).list_services_response.service}
            assert "facerec.v1.Gallery" in names
    finally:
        release.set()
        service.stop()


def test_a_picture_that_kills_a_detector_replica_is_not_sent_to_the_next(tmp_path: Path) -> None:
    replicas = [FakeDetector("die"), FakeDetector("die")]
    service = gallery(tmp_path, ",".join(r.address for r in replicas))
    try:
        with grpc.insecure_channel(service.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                identify_picture(stub)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "not sent to another replica" in refused.value.details()
        # The call fails as the replica's socket closes, a moment before its process counts as exited:
        # wait for that exit (bounded) rather than asking poll() at once.
        dead = first_to_exit(replicas)
        assert dead is not None, "no replica exited"
        (survivor,) = [r for r in replicas if r is not dead]
        assert survivor.process.poll() is None
        # "call" is written before the replica dies; the reader thread may count it a moment later.
        assert dead.wait_calls(1) and dead.calls == 1
        assert survivor.calls == 0
    finally:
        service.stop()
        for replica in replicas:
            replica.kill()


def test_a_call_that_reached_no_replica_is_sent_to_one_that_answers(tmp_path: Path) -> None:
    gone = FakeDetector("answer")
    gone.kill()
    answering = FakeDetector("answer")
    service = gallery(tmp_path, f"{gone.address},{answering.address}")
    try:
        with grpc.insecure_channel(service.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            for _ in range(6):
                assert list(identify_picture(stub).faces) == []
        # The fake counts a call when its reader thread reads the line: wait for it, bounded.
        assert answering.wait_calls(6) and answering.calls == 6
    finally:
        service.stop()
        answering.kill()


def test_an_unknown_alignment_is_refused_by_the_gallery_itself(tmp_path: Path) -> None:
    answering = FakeDetector("answer")
    service = gallery(tmp_path, answering.address)
    try:
        with grpc.insecure_channel(service.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            request = gallery_pb2.IdentifyRequest(
                image=common_pb2.Image(data=b"a picture"),
                detect_options=detector_pb2.DetectOptions(alignment=99),
            )
            with pytest.raises(grpc.RpcError) as refused:
                stub.Identify(request, metadata=AUTH, timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "alignment 99" in refused.value.details()
            assert answering.calls == 0
            still_answers(service.address)
    finally:
        service.stop()
        answering.kill()


def wait_until_fresh(stub: gallery_pb2_grpc.GalleryStub) -> None:
    """Polls Stats until the background refit has ended (a bound on polling, not a timing)."""
    for _ in range(3000):
        if not stub.Stats(gallery_pb2.StatsRequest(), metadata=AUTH, timeout=30).classifier_stale:
            return
        time.sleep(0.1)
    pytest.fail("the background SVM refit did not end")


def test_the_svm_is_refit_in_the_background_while_identify_answers_and_says_so(
    tmp_path: Path, hung_detector: FakeDetector
) -> None:
    # 200 identities x 100 faces: a refit takes seconds, which every Identify after an Enroll used to wait.
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(200, 128))
    service = gallery(tmp_path, hung_detector.address)
    try:
        with grpc.insecure_channel(service.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            for person, centre in enumerate(centres):
                vectors = centre + 0.3 * rng.normal(size=(100, 128))
                stub.Enroll(
                    gallery_pb2.EnrollRequest(
                        identity=f"person-{person:03d}",
                        embeddings=[common_pb2.Embedding(values=v.tolist()) for v in vectors],
                    ),
                    metadata=AUTH,
                    timeout=120,
                )

            def identify(person: int) -> gallery_pb2.IdentifyResponse:
                query = common_pb2.Embedding(values=(centres[person] + 0.3 * rng.normal(size=128)).tolist())
                return stub.Identify(gallery_pb2.IdentifyRequest(embedding=query), metadata=AUTH, timeout=60)

            # No SVM yet: the nearest neighbour answers while the first fit runs.
            first = identify(3)
            assert (first.method, first.classifier_stale) == ("nearest-neighbour", True)
            assert first.faces[0].identity == "person-003"
            wait_until_fresh(stub)
            fresh = identify(4)
            assert (fresh.method, fresh.classifier_stale) == ("svm", False)
            assert fresh.faces[0].identity == "person-004"

            stub.Enroll(
                gallery_pb2.EnrollRequest(
                    identity="person-000", embeddings=[common_pb2.Embedding(values=centres[0].tolist())]
                ),
                metadata=AUTH,
                timeout=60,
            )
            # After a change, the previous SVM answers at once, and says so, while the refit runs.
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(identify, range(10, 18)))
            assert all((a.method, a.classifier_stale) == ("svm", True) for a in answers)
            assert [a.faces[0].identity for a in answers] == [f"person-{p:03d}" for p in range(10, 18)]
            wait_until_fresh(stub)
            assert identify(20).classifier_stale is False
    finally:
        service.stop()


def test_after_a_downstream_restart_the_gallery_answers_within_a_few_attempts(tmp_path: Path) -> None:
    """gRPC's reconnect backoff grows to 120 s by default: after 10 s down, the next connection attempt
    came up to 6 s after the restart. Capped at 1 s, calls 0.2 s apart get through in a few."""
    first = FakeDetector("answer")
    port = first.port
    service = gallery(tmp_path, first.address)
    try:
        with grpc.insecure_channel(service.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            assert list(identify_picture(stub).faces) == []
            first.kill()
            for _ in range(20):  # 10 s down, with calls that keep the channel reconnecting
                assert code_of(lambda: identify_picture(stub, 10)) == grpc.StatusCode.UNAVAILABLE
                time.sleep(0.5)
            second = FakeDetector("answer", port)
            try:
                attempts = 1
                while code_of(lambda: identify_picture(stub, 10)) != grpc.StatusCode.OK and attempts < 50:
                    attempts += 1
                    time.sleep(0.2)
                assert second.wait_calls(1)
                assert attempts <= 12
            finally:
                second.kill()
    finally:
        service.stop()

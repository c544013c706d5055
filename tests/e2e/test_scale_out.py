"""Scale-out on one machine: two detector and two embedder processes behind one gallery process that is
given both addresses of each (round_robin). Every replica serves a share (read from its own /metrics),
the real services' counters and histograms move, and a kill -9 of one embedder in the middle of a run
of identify calls fails none of them. Also, without a model: a large call hanging on a replica that
dies is retried on the other one."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from facerec.assets import Assets
from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc, gallery_pb2, gallery_pb2_grpc
from facerec_app.health_check import check
from facerec_app.supervisor import ServiceProcess
from gallery.clients import EmbedderClient

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DETECT = "facerec.v1.Detector/Detect"
EMBED = "facerec.v1.Embedder/Embed"
IDENTIFY = "facerec.v1.Gallery/Identify"
ENROLL_PER_PERSON = 3  # 15 enrolled + 25 identified = 40 pictures

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Replica:
    service: ServiceProcess
    port: int
    metrics_port: int

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def scrape(self) -> Samples:
        return scrape(self.metrics_port)


@dataclass
class Stack:
    gallery: Replica
    detectors: list[Replica]
    embedders: list[Replica]
    stub: gallery_pb2_grpc.GalleryStub
    baseline: dict[str, Samples]  # each replica's metrics before the gallery's first call


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out (all held at once, so they differ); each service binds its own."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(
        v for (n, have), v in samples.items() if n == name and set(labels.items()) <= set(dict(have).items())
    )


def rpc(method: str) -> dict[str, str]:
    """The labels of gRPC's Prometheus metrics for "package.Service/Method"."""
    service, name = method.split("/")
    return {"grpc_type": "unary", "grpc_service": service, "grpc_method": name}


def ok_calls(samples: Samples, method: str) -> float:
    return value(samples, "grpc_server_handled_total", **rpc(method), grpc_code="OK")


def start(module: str, args: list[str], metrics_port: int) -> ServiceProcess:
    # From the main thread: children die with the thread that started them (PR_SET_PDEATHSIG).
    return ServiceProcess.start(
        module, ["--host", HOST, "--port", "0", "--metrics-port", str(metrics_port), *args]
    )


def first_decode(address: str) -> None:
    """One picture through a detector before concurrent calls: Pillow registers its format plugins on
    the first open, and concurrent first opens can race (see tests/e2e/conftest.py)."""
    png = io.BytesIO()
    Image.new("RGB", (64, 64)).save(png, format="PNG")
    with grpc.insecure_channel(address) as channel:
        detector_pb2_grpc.DetectorStub(channel).Detect(
            detector_pb2.DetectRequest(images=[common_pb2.Image(data=png.getvalue())]), timeout=120
        )


@pytest.fixture(scope="module")
def stack(fetched_assets: Assets, tmp_path_factory) -> Iterator[Stack]:
    """Four inference processes started at once (TensorFlow loads in parallel), then the gallery."""
    folder = tmp_path_factory.mktemp("scale-out")
    metrics_ports = free_ports(5)
    inference = [
        start("detector_service", [], metrics_ports[0]),
        start("detector_service", [], metrics_ports[1]),
        start("embedding_service", [], metrics_ports[2]),
        start("embedding_service", [], metrics_ports[3]),
    ]
    started = list(inference)
    try:
        ports = [child.wait_ready(240.0) for child in inference]
        replicas = [Replica(c, p, m) for c, p, m in zip(inference, ports, metrics_ports, strict=False)]
        detectors, embedders = replicas[:2], replicas[2:]
        gallery_process = start(
            "gallery",
            [
                *("--store", str(folder / "g.sqlite"), "--calibration", str(folder / "none.json")),
                *("--detector", ",".join(r.address for r in detectors)),
                *("--embedder", ",".join(r.address for r in embedders)),
                *("--downstream-timeout-s", "120"),
            ],
            metrics_ports[4],
        )
        started.append(gallery_process)
        gallery = Replica(gallery_process, gallery_process.wait_ready(180.0), metrics_ports[4])
        for detector in detectors:
            first_decode(detector.address)
        baseline = {r.address: r.scrape() for r in [gallery, *replicas]}
        channel = grpc.insecure_channel(gallery.address)
        yield Stack(gallery, detectors, embedders, gallery_pb2_grpc.GalleryStub(channel), baseline)
        channel.close()
    finally:
        for child in started:  # all at once: each one's grace period runs in parallel
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in reversed(started):
            child.stop()


def by_person(pairs: list[tuple[str, Path]]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for name, path in pairs:
        out.setdefault(name, []).append(path)
    return out


def identify(stub: gallery_pb2_grpc.GalleryStub, path: Path) -> gallery_pb2.IdentifyResponse:
    request = gallery_pb2.IdentifyRequest(image=common_pb2.Image(data=path.read_bytes()))
    return stub.Identify(request, timeout=300)


def right_answers(pairs: list[tuple[str, Path]], answers: list[gallery_pb2.IdentifyResponse]) -> int:
    right = 0
    for (name, _), answer in zip(pairs, answers, strict=True):
        face = max(answer.faces, key=lambda f: f.box.width * f.box.height)
        right += face.known and face.identity == name
    return right


@pytest.mark.model
def test_every_replica_serves_a_share_and_the_metrics_move(stack: Stack, train_images, val_images) -> None:
    for name, paths in sorted(by_person(train_images).items()):
        reply = stack.stub.Enroll(
            gallery_pb2.EnrollRequest(
                identity=name,
                images=[common_pb2.Image(data=p.read_bytes()) for p in paths[:ENROLL_PER_PERSON]],
            ),
            timeout=300,
        )
        assert all(r.outcome == gallery_pb2.ENROLLED for r in reply.results), reply
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda pair: identify(stack.stub, pair[1]), val_images))
    assert right_answers(val_images, answers) >= len(val_images) - 2

    shares = {}
    for replicas, method in ((stack.detectors, DETECT), (stack.embedders, EMBED)):
        calls = [ok_calls(r.scrape(), method) - ok_calls(stack.baseline[r.address], method) for r in replicas]
        shares[method] = calls
        assert all(c > 0 for c in calls), (method, calls)
    log.info("calls answered OK per replica: %s", shares)

    # The real services' counters and histograms moved by what the gallery sent them.
    for replica, method in ((stack.detectors[0], DETECT), (stack.embedders[0], EMBED)):
        before, after = stack.baseline[replica.address], replica.scrape()
        calls = ok_calls(after, method) - ok_calls(before, method)
        timed = value(after, "grpc_server_handling_seconds_count", **rpc(method)) - value(
            before, "grpc_server_handling_seconds_count", **rpc(method)
        )
        assert timed == calls > 0
        assert value(after, "grpc_server_handling_seconds_sum", **rpc(method)) > value(
            before, "grpc_server_handling_seconds_sum", **rpc(method)
        )
        assert value(after, "facerec_batch_size_count") > value(before, "facerec_batch_size_count")
        assert value(after, "facerec_batch_size_sum") >= value(after, "facerec_batch_size_count")
        assert any(name == "facerec_queue_depth" for name, _ in after)
    # The gallery's own: every Identify counted and timed, and the enrolled faces.
    before, after = stack.baseline[stack.gallery.address], stack.gallery.scrape()
    assert ok_calls(after, IDENTIFY) - ok_calls(before, IDENTIFY) == len(val_images)
    assert value(after, "grpc_server_handling_seconds_count", **rpc(IDENTIFY)) - value(
        before, "grpc_server_handling_seconds_count", **rpc(IDENTIFY)
    ) == len(val_images)
    assert value(after, "grpc_server_handling_seconds_bucket", **rpc(IDENTIFY), le="+Inf") == len(val_images)
    assert value(after, "facerec_gallery_faces") == 5 * ENROLL_PER_PERSON
    assert value(after, "facerec_gallery_identities") == 5


@pytest.mark.model
def test_kill_9_of_one_embedder_fails_no_call(stack: Stack, val_images) -> None:
    """The victim is first stopped (SIGSTOP): its connection stays up, so round_robin keeps handing it
    every other Embed and those calls hang there. Once the survivor has answered two calls of the run,
    one call between them is certainly hanging on the victim; kill -9 then ends it mid-call."""
    if not stack.stub.Stats(gallery_pb2.StatsRequest(), timeout=10).faces:
        pytest.skip("needs the gallery enrolled by the test above")
    victim, survivor = stack.embedders
    assert ok_calls(victim.scrape(), EMBED) > 0
    survivor_before = ok_calls(survivor.scrape(), EMBED)
    os.kill(victim.service.process.pid, signal.SIGSTOP)
    # 4 callers: the 4th call picked for the victim comes after 3 for the survivor, so this cannot stall.
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(identify, stack.stub, path) for _, path in val_images]
        for _ in range(6000):  # a bound on polling, not a timing: 2 calls take a few seconds
            if ok_calls(survivor.scrape(), EMBED) - survivor_before >= 2:
                break
            assert not any(f.done() and f.exception() for f in futures)
            time.sleep(0.05)
        else:
            pytest.fail("the survivor answered fewer than 2 calls of the run")
        os.kill(victim.service.process.pid, signal.SIGKILL)
        answers = [f.result() for f in futures]  # raises if any call failed
    assert victim.service.process.wait(10) == -signal.SIGKILL
    assert right_answers(val_images, answers) >= len(val_images) - 2
    # The survivor answered every Embed of the run, the retried ones included.
    assert ok_calls(survivor.scrape(), EMBED) - survivor_before >= len(val_images)
    assert check(stack.gallery.address, "facerec.v1.Gallery", timeout_s=10) == (True, "SERVING")


# A stand-in embedder: `hang` never answers (and says on stdout when a call arrived), `answer` answers.
FAKE_EMBEDDER = """
import sys, threading
from concurrent import futures
import grpc
from facerec.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

class Fake(embedding_pb2_grpc.EmbedderServicer):
    def Embed(self, request, context):
        if sys.argv[1] == "hang":
            print("call", flush=True)
            threading.Event().wait()
        vector = common_pb2.Embedding(values=[0.0] * 128, model="fake")
        return embedding_pb2.EmbedResponse(
            results=[embedding_pb2.EmbedResult(embedding=vector) for _ in request.faces], model="fake"
        )

server = grpc.server(futures.ThreadPoolExecutor(8), options=[("grpc.max_receive_message_length", 64 << 20)])
embedding_pb2_grpc.add_EmbedderServicer_to_server(Fake(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"""


def test_a_large_call_hanging_on_a_replica_that_dies_is_retried_on_the_other() -> None:
    """Calls of 8 face crops (600 KiB each, over gRPC's default retry buffer of 256 KiB): round_robin
    sends some to the hanging replica; kill -9 ends them mid-call, and the client's retries answer them."""
    root = Path(__file__).resolve().parents[2]
    fakes = [
        subprocess.Popen(
            [sys.executable, "-c", FAKE_EMBEDDER, kind], cwd=root, stdout=subprocess.PIPE, text=True
        )
        for kind in ("hang", "answer")
    ]
    try:
        hang, answer = fakes
        ports = [int(fake.stdout.readline()) for fake in fakes]
        client = EmbedderClient(",".join(f"{HOST}:{port}" for port in ports), timeout_s=60)
        arrived = threading.Event()
        threading.Thread(target=lambda: hang.stdout.readline() and arrived.set(), daemon=True).start()
        crops = [np.zeros((160, 160, 3), np.uint8)] * 8
        with ThreadPoolExecutor(4) as pool:
            calls = []
            # Until round_robin (once connected to both) has handed the hanging replica a call.
            while not arrived.is_set() and len(calls) < 200:
                calls.append(pool.submit(client.embed, crops))
                arrived.wait(0.05)
            assert arrived.is_set()
            hang.kill()
            answers = [call.result() for call in calls]  # raises Unavailable if one was not retried
        assert all(len(a.vectors) == 8 and a.model == "fake" for a in answers)
        client.close()
    finally:
        for fake in fakes:
            fake.kill()
            fake.wait(10)

"""Bounded attacks on the real services: each request's cost must stay bounded by what it sends.

Real detector and embedder processes (the session's), and a real gallery process with tokens and metrics
on. Each attack is measured from /proc (VmRSS, VmHWM, CPU) and held to the bound docs/limits.md states;
after each, health must still say SERVING and an ordinary call must still be answered.
"""

from __future__ import annotations

import io
import logging
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from facerec.v1 import (
    common_pb2,
    detector_pb2,
    detector_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    gallery_pb2,
    gallery_pb2_grpc,
)
from tests.support.engines import free_port
from tests.support.images import lying_jpeg, png_header_only
from tests.support.servers import Running, running

pytestmark = pytest.mark.model

log = logging.getLogger(__name__)
MiB = 1024 * 1024
TOKEN = "attack-tests-token-0123456789"
AUTH = [("authorization", f"Bearer {TOKEN}")]
# docs/limits.md, "Attacks on the services": what each attack may add to a service's memory at most.
LYING_HEADER_PEAK_MIB = 64
GZIP_BOMB_PEAK_MIB = 32
EMBED_BURST_PEAK_MIB = 256
EMBED_BURST_KEPT_MIB = 48
MADE_UP_METHODS_METRICS_GROWTH_BYTES = 8 * 1024


@dataclass(frozen=True)
class Memory:
    """A process's resident memory and its peak since the last reset, in MiB, and its CPU seconds."""

    rss_mib: float
    peak_mib: float
    cpu_s: float


def memory(pid: int) -> Memory:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            fields[line.split(":")[0]] = int(line.split()[1]) / 1024
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(stat[11]) + int(stat[12])) / 100  # utime + stime, in clock ticks of 1/100 s
    return Memory(fields["VmRSS"], fields["VmHWM"], cpu_s)


def reset_peak(pid: int) -> Memory:
    """Resets VmHWM to the current RSS (writing 5 to clear_refs, Linux >= 4.0) and returns the start."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return memory(pid)


def serving(address: str, metadata: list[tuple[str, str]] | None = None) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10, metadata=metadata
        )
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def flat_png(side: int, shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (shade, 255 - shade, 90)).save(out, format="PNG")
    return out.getvalue()


def flat_jpeg(width: int, height: int, shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (shade, shade, shade)).save(out, format="JPEG", quality=85)
    return out.getvalue()


def detect(address: str, datas: list[bytes], **call: object) -> detector_pb2.DetectResponse:
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)]) as channel:
        reply: detector_pb2.DetectResponse = detector_pb2_grpc.DetectorStub(channel).Detect(
            detector_pb2.DetectRequest(images=[common_pb2.Image(data=d) for d in datas]), timeout=300, **call
        )
    return reply


def assert_detector_answers(address: str, picture: Path) -> None:
    assert serving(address)
    result = detect(address, [picture.read_bytes()]).results[0]
    assert not result.error.code and len(result.faces) >= 1


@pytest.fixture(scope="module")
def gallery(inference_services: tuple[Running, Running], tmp_path_factory) -> Iterator[tuple[Running, int]]:
    """A gallery process with tokens and metrics on, in front of the session's detector and embedder."""
    detector, embedder = inference_services
    metrics_port = free_port()
    store = tmp_path_factory.mktemp("attacks") / "gallery.sqlite"
    args = ["--store", str(store), "--detector", detector.address, "--embedder", embedder.address]
    args += ["--metrics-port", str(metrics_port)]
    with running("gallery", args, env={"GALLERY_TOKENS": f"{TOKEN} rw"}) as service:
        yield service, metrics_port


def test_a_jpeg_header_that_lies_about_its_size_costs_the_detector_nothing(
    inference_services: tuple[Running, Running], train_images: list[tuple[str, Path]]
) -> None:
    """632 bytes declaring 6000x6000 once cost 3.2 s of CPU and +632 MiB each (libjpeg fills the rest)."""
    detector, _ = inference_services
    pid = detector.process.pid
    lie = lying_jpeg(6000, 6000)
    start = reset_peak(pid)
    reply = detect(detector.address, [lie] * 8)
    end = memory(pid)
    log.warning(
        "8 lying JPEGs (%d B each): CPU %.2f s, peak +%.0f MiB",
        len(lie),
        end.cpu_s - start.cpu_s,
        end.peak_mib - start.rss_mib,
    )
    assert {r.error.code for r in reply.results} == {grpc.StatusCode.INVALID_ARGUMENT.value[0]}
    assert all("6000x6000" in r.error.message for r in reply.results)
    assert end.peak_mib - start.rss_mib < LYING_HEADER_PEAK_MIB
    assert_detector_answers(detector.address, train_images[0][1])


def test_a_gzip_bomb_is_refused_before_it_is_inflated_by_every_service(
    inference_services: tuple[Running, Running],
    gallery: tuple[Running, int],
    train_images: list[tuple[str, Path]],
) -> None:
    """60 MiB of zeros sent as 60 KiB of gzip: within the 64 MiB message limit once inflated, it cost a
    gallery +405 MiB; every server now refuses a compressed request before inflating it."""
    detector, embedder = inference_services
    service, _ = gallery
    zeros = bytes(60 * MiB)
    calls = [
        (detector, "/facerec.v1.Detector/Detect", detector_pb2.DetectRequest(images=[{"data": zeros}])),
        (
            embedder,
            "/facerec.v1.Embedder/Embed",
            embedding_pb2.EmbedRequest(faces=[{"encoded": {"data": zeros[: 15 * MiB]}}]),
        ),
        (service, "/facerec.v1.Gallery/Identify", gallery_pb2.IdentifyRequest(image={"data": zeros})),
    ]
    for target, method, request in calls:
        pid = target.process.pid
        start = reset_peak(pid)
        with grpc.insecure_channel(target.address, options=[("grpc.max_send_message_length", -1)]) as channel:
            call = channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString())
            with pytest.raises(grpc.RpcError) as caught:
                call(request, timeout=60, metadata=AUTH, compression=grpc.Compression.Gzip)
        end = memory(pid)
        log.warning("gzip bomb to %s: peak +%.0f MiB", method, end.peak_mib - start.rss_mib)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert end.peak_mib - start.rss_mib < GZIP_BOMB_PEAK_MIB
        assert serving(target.address)
    assert_detector_answers(detector.address, train_images[0][1])


def test_made_up_method_names_with_tokens_on_do_not_grow_the_metrics(gallery: tuple[Running, int]) -> None:
    """With tokens and metrics on, each made-up name once added series: 20,000 made /metrics 115 MB."""
    service, metrics_port = gallery
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        before = len(reply.read())
    with grpc.insecure_channel(service.address) as channel:
        for i in range(1000):
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary(f"/made.up.Service{i}/Method{i}")(b"", timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    log.warning("/metrics: %d B before, %d B after 1000 made-up methods", before, len(text))
    assert len(text) - before < MADE_UP_METHODS_METRICS_GROWTH_BYTES
    assert "made.up" not in text
    counted = {
        (
            sample.labels.get("grpc_service"),
            sample.labels.get("grpc_method"),
            sample.labels.get("grpc_code"),
        ): (sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "grpc_server_handled_total"
    }
    assert counted[("unknown", "unknown", "UNAUTHENTICATED")] == 1000
    assert serving(service.address)


def test_a_burst_of_encoded_faces_is_bounded_and_the_embedder_gives_its_memory_back(
    inference_services: tuple[Running, Running],
) -> None:
    """Three calls at once of 64 small flat PNGs each: decoded whole and kept, such bursts took an
    embedder from 439 to 1,247 MiB for good. Calls within the per-call budget are served; calls over it
    (64 faces of 4 megapixels) are refused whole, as too large, before any face is decoded."""
    _, embedder = inference_services
    pid = embedder.process.pid

    def burst(side: int) -> tuple[list[str], Memory, Memory]:
        faces = [embedding_pb2.FaceInput(encoded=common_pb2.Image(data=flat_png(side, i))) for i in range(64)]

        def call(_: int) -> str:
            with grpc.insecure_channel(embedder.address) as channel:
                try:
                    reply = embedding_pb2_grpc.EmbedderStub(channel).Embed(
                        embedding_pb2.EmbedRequest(faces=faces), timeout=300
                    )
                except grpc.RpcError as exc:
                    assert "too large" in (exc.details() or "")
                    return exc.code().name
            assert not any(r.error.code for r in reply.results)
            return "OK"

        start = reset_peak(pid)
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(call, range(3)))
        return answers, start, memory(pid)

    for side, expected in ((700, "OK"), (1990, "RESOURCE_EXHAUSTED")):
        answers, start, end = burst(side)
        log.warning(
            "3 x 64 PNGs of %dx%d: %s; RSS %.0f MiB before, peak +%.0f, kept +%.0f",
            side,
            side,
            answers,
            start.rss_mib,
            end.peak_mib - start.rss_mib,
            end.rss_mib - start.rss_mib,
        )
        assert answers == [expected] * 3
        assert end.peak_mib - start.rss_mib < EMBED_BURST_PEAK_MIB
        assert end.rss_mib - start.rss_mib < EMBED_BURST_KEPT_MIB
    assert serving(embedder.address)


def test_pictures_that_together_pass_the_detectors_budget_are_enrolled_in_parts_not_refused(
    gallery: tuple[Running, int],
) -> None:
    """Four 24-megapixel pictures in one enrol (96 M pixels against the detector's 80 M in flight) were
    answered "try again later", for ever. Flat pictures: no face, but each is searched and answered."""
    service, _ = gallery
    pictures = [flat_jpeg(6000, 4000, shade) for shade in (60, 100, 140, 180)]  # four, not one repeated
    with grpc.insecure_channel(service.address, options=[("grpc.max_send_message_length", -1)]) as channel:
        reply = gallery_pb2_grpc.GalleryStub(channel).Enroll(
            gallery_pb2.EnrollRequest(identity="four-large", images=[{"data": p} for p in pictures]),
            timeout=600,
            metadata=AUTH,
        )
    assert [r.outcome for r in reply.results] == [gallery_pb2.NO_FACE] * 4


def test_a_picture_over_the_pixel_limit_on_identify_is_too_large_not_try_again(
    gallery: tuple[Running, int],
) -> None:
    service, _ = gallery
    with grpc.insecure_channel(service.address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            gallery_pb2_grpc.GalleryStub(channel).Identify(
                gallery_pb2.IdentifyRequest(image={"data": png_header_only(20000, 20000)}),
                timeout=60,
                metadata=AUTH,
            )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = caught.value.details() or ""
    assert "too large" in details and "try again" not in details
    assert serving(service.address)

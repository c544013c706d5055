"""The detector's memory per picture is bounded by design: peak RSS read from the service process.

A plain grey 6300x6300 PNG (38 KB) and a 3200x3200 JPEG holding 256 faces once took the detector to
5.7 and 13.2 GB; docs/limits.md states the bound these tests hold it to.
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from detector_service.config import MODELS
from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc
from tests.support.servers import running

pytestmark = pytest.mark.model

log = logging.getLogger(__name__)
MiB = 1024 * 1024
# docs/limits.md: one call's pictures add at most this much to the detector's resident memory.
PEAK_PER_CALL_MIB = 1024
# docs/limits.md: all calls at once add at most this much (the deploy limit, 3 GiB, holds idle + this).
PEAK_PER_SERVICE_MIB = 2048
# deploy/k8s/detector.yaml and docker-compose.yml: a detector replica's memory limit.
DEPLOY_LIMIT_MIB = 3072
# Tiles of the 256-face picture whose face each model finds, searched at 1600 px (faces ≈ 50 px, squashed
# to square tiles): mtcnn ≈ 255; RetinaFace-MobileNet0.25 191 (it finds 87 of 93 such tiles even alone).
MOST_TILES = {"mtcnn": 200, "retinaface": 180}


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's peak resident memory since start (or since reset_peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


def reset_peak(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def grey_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (128, 128, 128)).save(out, format="PNG")
    return out.getvalue()


def faces_jpeg(paths: list[Path], per_side: int, tile: int) -> bytes:
    """per_side x per_side tiles of tile px, each a 5-celebrity picture (one face each)."""
    canvas = Image.new("RGB", (per_side * tile, per_side * tile))
    for k in range(per_side * per_side):
        picture = Image.open(paths[k % len(paths)]).convert("RGB").resize((tile, tile))
        canvas.paste(picture, ((k % per_side) * tile, (k // per_side) * tile))
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=85)
    return out.getvalue()


def detect(address: str, data: bytes, model: str = "") -> detector_pb2.ImageResult:
    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 * MiB)]) as channel:
        response = detector_pb2_grpc.DetectorStub(channel).Detect(
            detector_pb2.DetectRequest(
                images=[common_pb2.Image(data=data)],
                options=detector_pb2.DetectOptions(return_crops=True, model=model),
            ),
            timeout=600,
        )
    return response.results[0]


@pytest.fixture(scope="module")
def detector(fetched_assets):
    with running("detector_service", ["--max-batch", "8"]) as service:
        detect(service.address, grey_png(64))
        yield service


@pytest.mark.parametrize("model", MODELS)
def test_a_plain_grey_6300px_png_stays_within_the_per_call_bound(detector, model: str) -> None:
    pid = detector.process.pid
    before = rss_mib(pid)
    reset_peak(pid)
    result = detect(detector.address, grey_png(6300), model)
    assert (result.width, result.height) == (6300, 6300)
    assert not result.error.code and len(result.faces) == 0
    peak = peak_rss_mib(pid)
    log.warning(
        "%s, grey 6300x6300 PNG: RSS before %.0f MiB, peak %.0f MiB (+%.0f)",
        model,
        before,
        peak,
        peak - before,
    )
    assert peak - before < PEAK_PER_CALL_MIB


@pytest.mark.parametrize("model", MODELS)
def test_a_3200px_jpeg_of_256_faces_finds_them_within_the_per_call_bound(
    detector, train_images, model: str
) -> None:
    pid = detector.process.pid
    data = faces_jpeg([p for _, p in train_images], per_side=16, tile=200)
    before = rss_mib(pid)
    reset_peak(pid)
    result = detect(detector.address, data, model)
    peak = peak_rss_mib(pid)
    log.warning(
        "%s, 256-face 3200x3200 JPEG (%s KiB): %s faces, RSS before %.0f MiB, peak %.0f MiB (+%.0f)",
        model,
        len(data) // 1024,
        len(result.faces),
        before,
        peak,
        peak - before,
    )
    assert peak - before < PEAK_PER_CALL_MIB
    # Boxes are in the original picture's pixels (it was searched shrunk): most tiles hold
    # their face, each box inside its own 200 px tile.
    assert len(result.faces) >= MOST_TILES[model]
    tiles = {
        (int(f.box.x + f.box.width / 2) // 200, int(f.box.y + f.box.height / 2) // 200) for f in result.faces
    }
    assert len(tiles) >= MOST_TILES[model]
    assert all(f.crop.width == 160 and f.crop.height == 160 for f in result.faces)
    assert np.all([0 <= f.box.x and f.box.x + f.box.width <= 3200 for f in result.faces])


def test_concurrent_large_calls_stay_within_the_per_service_bound(detector, train_images) -> None:
    """Six large calls at once: the decoded-pixel budget (80 M) takes two 40 M-pixel pictures at a time and
    refuses the rest at once; the service's peak stays within its bound, and it keeps answering."""
    pid = detector.process.pid
    grey = grey_png(6300)
    faces = faces_jpeg([p for _, p in train_images], per_side=16, tile=200)
    before = rss_mib(pid)
    reset_peak(pid)

    def call(data: bytes) -> grpc.StatusCode:
        try:
            detect(detector.address, data)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(call, [grey, grey, grey, grey, faces, faces]))
    peak = peak_rss_mib(pid)
    log.warning("6 concurrent large calls: %s; RSS before %.0f MiB, peak %.0f MiB", codes, before, peak)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert codes.count(grpc.StatusCode.OK) >= 2
    assert peak - before < PEAK_PER_SERVICE_MIB
    assert peak < DEPLOY_LIMIT_MIB
    assert detect(detector.address, grey_png(64)).width == 64

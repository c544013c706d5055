"""A real gallery process and its files: a full disk, a bad calibration file, and its log settings."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from facerec_app.supervisor import ServiceProcess
from tests.support.fake_detector import FakeDetector
from tests.support.servers import start_service

NO_EMBEDDER = "127.0.0.1:9"


@pytest.fixture
def detector() -> Iterator[FakeDetector]:
    fake = FakeDetector("answer")
    yield fake
    fake.kill()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs (the tests run as root, as CI does), grown again with `remount`."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def enroll(stub: gallery_pb2_grpc.GalleryStub, name: str, vectors: np.ndarray) -> gallery_pb2.EnrollResponse:
    return stub.Enroll(
        gallery_pb2.EnrollRequest(
            identity=name, embeddings=[common_pb2.Embedding(values=v.tolist()) for v in vectors]
        ),
        timeout=60,
    )


def test_a_full_disk_is_resource_exhausted_and_nothing_acknowledged_is_lost(
    small_disk: Path, detector: FakeDetector
) -> None:
    gallery = start_service(
        "gallery",
        [
            *("--store", str(small_disk / "gallery.sqlite")),
            *("--detector", detector.address, "--embedder", NO_EMBEDDER),
            *("--calibration", str(small_disk / "none.json")),
        ],
        timeout_s=120,
    )
    rng = np.random.default_rng(7)
    acknowledged = 0
    try:
        with grpc.insecure_channel(gallery.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            for batch in range(200):
                try:
                    enroll(stub, f"person-{batch:03d}", rng.normal(size=(200, 128)))
                except grpc.RpcError as exc:
                    full = exc
                    break
                acknowledged += 200
            else:
                pytest.fail("2 MiB held 40,000 faces: the disk never filled")
            assert full.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert full.details() == "The store's disk is full; nothing of this request was stored."
            # The gallery keeps answering, and holds every face it acknowledged.
            assert stub.Stats(gallery_pb2.StatsRequest(), timeout=30).faces == acknowledged
            assert not [p.name for p in small_disk.iterdir() if p.stat().st_size == 0 or ".tmp" in p.name]
            subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
            enroll(stub, "after-space-came-back", rng.normal(size=(10, 128)))
            assert stub.Stats(gallery_pb2.StatsRequest(), timeout=30).faces == acknowledged + 10
    finally:
        gallery.stop()
    assert not [p.name for p in small_disk.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize(
    "content", ["[]", '{"models": {"facenet-keras-128": {"threshold": 2.0}}}', "{broken"]
)
def test_a_bad_calibration_file_stops_the_start_with_one_sentence_naming_it(
    tmp_path: Path, detector: FakeDetector, content: str
) -> None:
    calibration = tmp_path / "calibration.json"
    calibration.write_text(content)
    run = subprocess.run(
        [
            sys.executable,
            *("-m", "gallery", "--host", "127.0.0.1", "--port", "0"),
            *("--store", str(tmp_path / "g.sqlite"), "--calibration", str(calibration)),
            *("--model", "facenet-keras-128"),
            *("--detector", detector.address, "--embedder", NO_EMBEDDER),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.startswith("gallery: ")]
    assert len(lines) == 1 and str(calibration) in lines[0]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("flag", "env", "seen"), [("-v", {}, "INFO"), ("", {"GALLERY_LOG_LEVEL": "debug"}, "DEBUG")]
)
def test_facerec_serve_gallery_takes_its_own_verbose_flag_and_a_log_level_setting(
    tmp_path: Path, detector: FakeDetector, flag: str, env: dict[str, str], seen: str
) -> None:
    args = [
        *("serve", "gallery", "--host", "127.0.0.1", "--port", "0"),
        *("--store", str(tmp_path / "g.sqlite"), "--calibration", str(tmp_path / "none.json")),
        *("--detector", detector.address, "--embedder", NO_EMBEDDER),
    ]
    service = ServiceProcess.start("facerec_app.cli", [*args, *([flag] if flag else [])], env)
    try:
        service.wait_ready(120)
    finally:
        service.stop()
    assert any(f" {seen} " in line for line in service.output)

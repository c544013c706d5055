"""No leak: each service's resident memory after 600 Identify calls stays within 10% of its memory after 100.

The short form of bench/memory.py (10 000 calls): small pictures, so the calls are quick.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from facerec_app.soak import BOUND, enroll_and_train, identify_calls, rss_mib
from tests.support.servers import start_service

pytestmark = pytest.mark.model


def small_jpeg(path: Path, side: int = 160) -> bytes:
    picture = Image.open(path).convert("RGB")
    picture.thumbnail((side, side))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_memory_stays_flat_over_600_identify_calls(
    inference_services, tmp_path: Path, train_images, val_images
) -> None:
    detector, embedder = inference_services
    gallery = start_service(
        "gallery",
        [
            *("--store", str(tmp_path / "gallery.sqlite")),
            *("--detector", detector.address, "--embedder", embedder.address),
            *("--calibration", str(tmp_path / "none.json")),
        ],
        timeout_s=120,
    )
    try:
        people = sorted({identity for identity, _ in train_images})[:2]
        train = [
            (i, small_jpeg(p))
            for person in people
            for i, p in [x for x in train_images if x[0] == person][:6]
        ]
        datas = [small_jpeg(p) for i, p in val_images if i in people]
        enroll_and_train(gallery.address, train)
        pids = {
            "detector": detector.process.pid,
            "embedder": embedder.process.pid,
            "gallery": gallery.process.pid,
        }

        identify_calls(gallery.address, datas, 100, clients=1)
        first = {name: rss_mib(pid) for name, pid in pids.items()}
        identify_calls(gallery.address, datas, 500, clients=1, start_at=100)
        last = {name: rss_mib(pid) for name, pid in pids.items()}

        growth = {name: last[name] / first[name] - 1.0 for name in pids}
        assert all(g <= BOUND for g in growth.values()), (first, last)
        assert gallery.process.poll() is None
    finally:
        gallery.stop()

"""Start-up: each service's cold-start time and memory at its first start and in steady state, from the
files `facerec export` wrote, beside an embedder that exports FaceNet at start (the old way).

    .venv/bin/python -m bench.startup                # ~2-3 minutes on 2 cores
    .venv/bin/python -m bench.startup --skip-export-at-start

The services start one after the other (so no start shares the CPU with another), each timed from
its process's start to its "serving on" line; VmHWM then is its first-start peak. The gallery then
enrolls 12 train pictures and answers --calls Identify calls (VmRSS then: the steady figure); then
the embedder gets 4 calls at once of 64 crops each (full batches of 32); VmHWM last is each one's peak. Last, an embedder on a FACEREC_HOME holding only the weights and the calibration crops,
with EMBEDDER_EXPORT_AT_START=true: the start every pod made before `facerec export`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from facerec_app.soak import enroll_and_train, identify_calls
from facerec_app.supervisor import ServiceProcess

HOST = ["--host", "127.0.0.1", "--port", "0"]


def status_mib(pid: int, field: str) -> float:
    """A VmXXX field of /proc/PID/status, MiB (VmRSS: resident now, VmHWM: the resident peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} for process {pid}")


def start(name: str, args: Sequence[str], env: dict[str, str]) -> tuple[ServiceProcess, float, float]:
    """(the started service, seconds to its serving line, its VmHWM then in MiB)."""
    began = time.perf_counter()
    service = ServiceProcess.start(name, [*HOST, *args], env=env)
    service.wait_ready(900)
    return service, time.perf_counter() - began, status_mib(service.process.pid, "VmHWM")


def embed_burst(address: str, calls: int = 4, faces: int = 64) -> None:
    """`calls` Embed calls at once of `faces` 160x160 crops each (the request limit): full batches of 32."""
    import threading

    import grpc
    import numpy as np

    from facerec.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

    crops = np.random.default_rng(7).integers(0, 256, (faces, 160, 160, 3), dtype=np.uint8)
    request = embedding_pb2.EmbedRequest(
        faces=[
            embedding_pb2.FaceInput(crop=common_pb2.RgbImage(rgb=c.tobytes(), width=160, height=160))
            for c in crops
        ]
    )

    def call() -> None:
        with grpc.insecure_channel(address) as channel:
            embedding_pb2_grpc.EmbedderStub(channel).Embed(request, timeout=300)

    threads = [threading.Thread(target=call) for _ in range(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100, help="Identify calls for the steady figures")
    parser.add_argument("--skip-export-at-start", action="store_true")
    args = parser.parse_args(argv)
    out = sys.stdout.write

    from facerec import assets

    home = assets.facerec_home(os.environ)
    fetched = assets.Assets(home)
    env = {"FACEREC_HOME": str(home)}
    train = [(i, p.read_bytes()) for i, p in assets.labelled_images(fetched.split("train"))]
    people = sorted({i for i, _ in train})[:3]
    enrol = [(i, d) for person in people for i, d in [x for x in train if x[0] == person][:4]]
    datas = [d for _, d in train[::4]]

    rows: list[tuple[str, float, float, float, float]] = []
    started: list[ServiceProcess] = []
    with tempfile.TemporaryDirectory(prefix="facerec-startup-") as tmp:
        try:
            first: dict[str, tuple[float, float]] = {}
            for name in ("detector", "embedder"):
                service, seconds, peak = start(name, [], env)
                started.append(service)
                first[name] = (seconds, peak)
            detector, embedder = started
            gallery_args = [
                *("--store", str(Path(tmp) / "g.sqlite"), "--calibration", str(Path(tmp) / "none.json")),
                *("--detector", detector.address, "--embedder", embedder.address),
            ]
            gallery, seconds, peak = start("gallery", gallery_args, env)
            started.append(gallery)
            first["gallery"] = (seconds, peak)
            gateway, seconds, peak = start("gateway", ["--gallery", gallery.address], env)
            started.append(gateway)
            first["gateway"] = (seconds, peak)
            enroll_and_train(gallery.address, enrol)
            identify_calls(gallery.address, datas, args.calls, clients=2)
            steady = {s.name: status_mib(s.process.pid, "VmRSS") for s in started}
            embed_burst(embedder.address)
            for service in started:
                pid = service.process.pid
                seconds, peak = first[service.name]
                rows.append((service.name, seconds, peak, steady[service.name], status_mib(pid, "VmHWM")))
        finally:
            for service in reversed(started):
                service.stop()

        if not args.skip_export_at_start:
            fresh = Path(tmp) / "fresh"
            (fresh / "models").mkdir(parents=True)
            for name in ("facenet_keras.h5", "facenet-calibration.npz"):
                (fresh / "models" / name).symlink_to(fetched.facenet_h5.parent / name)
            old_env = {"FACEREC_HOME": str(fresh), "EMBEDDER_EXPORT_AT_START": "true"}
            service, seconds, peak = start("embedder", [], old_env)
            rss = status_mib(service.process.pid, "VmRSS")
            service.stop()
            rows.append(("embedder, exporting at start", seconds, peak, rss, peak))

    out(
        f"{'service':<30} {'cold start s':>12} {'first-start peak MiB':>21} {'steady RSS MiB':>15} {'peak MiB':>9}\n"
    )
    for name, seconds, first_peak, rss, peak in rows:
        out(f"{name:<30} {seconds:>12.1f} {first_peak:>21.0f} {rss:>15.0f} {peak:>9.0f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

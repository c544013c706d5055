"""The HTTP gateway's cost: Identify through the gateway (multipart POST) beside the same call on gRPC.

    .venv/bin/python -m bench.gateway                                   # starts the services and a gateway
    .venv/bin/python -m bench.gateway --gallery 127.0.0.1:50053 --gateway http://127.0.0.1:8080

Both sides identify the same 5-celebrity val pictures against the same gallery (the train set
enrolled first when the bench starts the services itself), at 1 and 4 concurrent clients, one picture
per call: (a) gRPC Gallery/Identify straight to the gallery, the baseline; (b) POST /v1/identify to
the gateway, which makes that same gRPC call. Prints pictures/s and p50 latency of each, and (b)/(a).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from bench.clients import closed_loop
from facerec import assets
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc


def http_loop(base_url: str, work: Sequence[bytes], clients: int) -> tuple[float, list[float]]:
    """POSTs every picture once to /v1/identify, `clients` at a time. Returns (wall seconds, latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()
    next_index = [0]

    def client() -> None:
        with httpx.Client(base_url=base_url, timeout=300) as http:
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(work):
                    return
                start = time.perf_counter()
                answer = http.post("/v1/identify", files={"image": ("face.jpg", work[i])})
                took = time.perf_counter() - start
                answer.raise_for_status()
                with lock:
                    latencies.append(took)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies


def grpc_identify(stub: object, data: bytes) -> int:
    request = gallery_pb2.IdentifyRequest(image=common_pb2.Image(data=data))
    return len(stub.Identify(request, timeout=300).faces)  # type: ignore[attr-defined]


@contextmanager
def started() -> Iterator[tuple[str, str]]:
    """The services and a gateway on free ports, the train set enrolled; yields (gallery, gateway URL)."""
    from facerec_app.supervisor import ServiceProcess, local_services

    home = assets.Assets(assets.facerec_home(os.environ))
    with local_services() as services:
        gateway = ServiceProcess.start(
            "gateway", ["--host", "127.0.0.1", "--port", "0", "--gallery", services.gallery]
        )
        try:
            gateway.wait_ready(60)
            enroll(services.gallery, home.split("train"))
            yield services.gallery, f"http://{gateway.address}"
        finally:
            gateway.stop()


def enroll(gallery: str, folder: Path) -> None:
    import grpc

    with grpc.insecure_channel(gallery) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        for identity, path in assets.labelled_images(folder):
            image = common_pb2.Image(data=path.read_bytes())
            stub.Enroll(gallery_pb2.EnrollRequest(identity=identity, images=[image]), timeout=300)


def run(
    gallery: str, gateway: str, pictures: list[bytes], counts: Sequence[int], write: Callable[[str], object]
) -> None:
    write(f"{len(pictures)} pictures per run; Identify, one picture per call\n")
    write(
        f"{'clients':>7} {'gRPC pic/s':>11} {'p50 ms':>7} {'HTTP pic/s':>11} {'p50 ms':>7} {'HTTP/gRPC':>10}\n"
    )
    http_loop(gateway, pictures[:2], 1)  # warm both paths once
    closed_loop(gallery, gallery_pb2_grpc.GalleryStub, pictures[:2], 1, grpc_identify)
    for clients in counts:
        grpc_s, grpc_lat, _ = closed_loop(
            gallery, gallery_pb2_grpc.GalleryStub, pictures, clients, grpc_identify
        )
        http_s, http_lat = http_loop(gateway, pictures, clients)
        a, b = len(pictures) / grpc_s, len(pictures) / http_s
        write(
            f"{clients:>7} {a:>11.2f} {1000 * np.median(grpc_lat):>7.1f} "
            f"{b:>11.2f} {1000 * np.median(http_lat):>7.1f} {b / a:>9.2f}x\n"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", default="", help="a running gallery (with people enrolled)")
    parser.add_argument("--gateway", default="", help="a running gateway in front of it, as a URL")
    parser.add_argument(
        "--repeat", type=int, default=2, help="each run identifies the val pictures this often"
    )
    args = parser.parse_args(argv)
    home = assets.fetch(assets.facerec_home(os.environ))
    pictures = [p.read_bytes() for _, p in assets.labelled_images(home.split("val"))] * args.repeat
    if args.gallery and args.gateway:
        run(args.gallery, args.gateway, pictures, (1, 4), sys.stdout.write)
        return
    with started() as (gallery, gateway):
        run(gallery, gateway, pictures, (1, 4), sys.stdout.write)


if __name__ == "__main__":
    main()

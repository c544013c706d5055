"""Load on the whole system: N concurrent clients calling Gallery Identify on real services, on loopback.

    .venv/bin/python -m bench.load                   # 64 clients for 60 s (about 2 minutes in all)
    .venv/bin/python -m bench.load -t 20             # 20 s
    .venv/bin/python -m bench.load --query embedding # the gallery alone (Identify by embedding)

Starts detector, embedder and gallery as processes (facerec_app.supervisor.local_services) on 127.0.0.1,
enrolls the 5-celebrity train pictures, then asks Identify with the val pictures: first one client
(the baseline, a quarter of the time), then N clients. Prints throughput and p50/p99 latency of the
answered calls, RESOURCE_EXHAUSTED (shed load: the queues are full) apart from unexpected errors,
and each service's resident memory (VmRSS) before and after. Exits 1 on any unexpected error.
Bounded in time (--seconds) and count (--max-calls).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Run:
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return self.codes["OK"]

    @property
    def shed(self) -> int:
        return self.codes["RESOURCE_EXHAUSTED"]

    @property
    def unexpected(self) -> int:
        return sum(n for code, n in self.codes.items() if code not in ("OK", "RESOURCE_EXHAUSTED"))

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")


def rss_mib(pid: int) -> float:
    """Resident memory of a process (VmRSS in /proc/<pid>/status), MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load(address: str, requests: Sequence[Any], clients: int, seconds: float, max_calls: int) -> Run:
    """`clients` threads call Identify round the `requests` until `seconds` pass or `max_calls` are made."""
    import grpc

    from facerec.v1 import gallery_pb2_grpc

    run = Run()
    lock = threading.Lock()
    issued = [0]
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            i = offset
            while time.monotonic() < stop_at:
                with lock:
                    if issued[0] >= max_calls:
                        return
                    issued[0] += 1
                start = time.perf_counter()
                try:
                    stub.Identify(requests[i % len(requests)], timeout=60)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                elapsed = time.perf_counter() - start
                with lock:
                    run.codes[code] += 1
                    if code == "OK":
                        run.latencies_s.append(elapsed)
                i += 1

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.seconds = time.perf_counter() - started
    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("-t", "--seconds", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--max-calls", type=int, default=200_000, help="stop after this many calls")
    parser.add_argument("--query", choices=("image", "embedding"), default="image", help="Identify by what")
    args = parser.parse_args(argv)

    import grpc

    from facerec import assets
    from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
    from facerec_app.supervisor import local_services

    fetched = assets.fetch(assets.facerec_home(os.environ))
    train = assets.labelled_images(fetched.split("train"))
    val = [p.read_bytes() for _, p in assets.labelled_images(fetched.split("val"))]
    with local_services("127.0.0.1") as services:
        pids = {p.name: p.process.pid for p in services.processes}
        with grpc.insecure_channel(services.gallery) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            by_identity: dict[str, list[bytes]] = {}
            for identity, path in train:
                by_identity.setdefault(identity, []).append(path.read_bytes())
            for identity, pictures in by_identity.items():
                stub.Enroll(
                    gallery_pb2.EnrollRequest(
                        identity=identity, images=[common_pb2.Image(data=d) for d in pictures[:3]]
                    ),
                    timeout=300,
                )
            if args.query == "image":
                requests = [gallery_pb2.IdentifyRequest(image=common_pb2.Image(data=d)) for d in val]
            else:
                rng = np.random.default_rng(7)
                requests = [
                    gallery_pb2.IdentifyRequest(embedding=common_pb2.Embedding(values=list(v)))
                    for v in rng.normal(size=(64, 128))
                ]
            stub.Identify(requests[0], timeout=120)  # warm every path once
        before = {name: rss_mib(pid) for name, pid in pids.items()}
        baseline = load(services.gallery, requests, 1, max(2.0, args.seconds / 4), args.max_calls)
        loaded = load(services.gallery, requests, args.clients, args.seconds, args.max_calls)
        after = {name: rss_mib(pid) for name, pid in pids.items()}
        gone = services.exited()

    rows = [("1 client (baseline)", baseline), (f"{args.clients} clients", loaded)]
    out = sys.stdout.write
    out(f"Identify by {args.query} on 127.0.0.1, {args.seconds:.0f} s under load\n\n")
    out(f"{'':22}{'answered/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'answered':>10}{'shed':>7}{'unexpected':>11}\n")
    for name, run in rows:
        rate = run.ok / run.seconds if run.seconds else 0.0
        out(
            f"{name:22}{rate:11.1f}{run.percentile_ms(50):9.0f}{run.percentile_ms(99):9.0f}"
            f"{run.ok:10d}{run.shed:7d}{run.unexpected:11d}\n"
        )
    ratio = (loaded.ok / loaded.seconds) / (baseline.ok / baseline.seconds) if baseline.ok else float("nan")
    out(f"\nthroughput ratio {args.clients} clients / 1 client: {ratio:.2f}\n")
    out("\nresident memory (VmRSS, MiB)   before   after\n")
    for name in pids:
        out(f"  {name:28}{before[name]:8.0f}{after[name]:8.0f}\n")
    unexpected = {
        c: n
        for run in (baseline, loaded)
        for c, n in run.codes.items()
        if c not in ("OK", "RESOURCE_EXHAUSTED")
    }
    if unexpected or gone:
        out(f"\nUNEXPECTED: {unexpected} exited: {gone}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

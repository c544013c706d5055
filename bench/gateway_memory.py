"""The gateway's peak memory under one large body, and whether /healthz keeps answering meanwhile.

    .venv/bin/python -m bench.gateway_memory                        # this checkout's gateway
    .venv/bin/python -m bench.gateway_memory --checkout /work/main  # another checkout's, as the baseline

For each body, a fresh gateway process (uvicorn, `python -m gateway`) in front of a fake gallery on a
real gRPC server is warmed with one small call, then sent the body while another client asks /healthz
every 50 ms. Prints the answer's status, the rise of the process's peak resident memory (VmHWM from
/proc/PID/status) over its value before the body, that rise as a multiple of the body's size, and the
slowest /healthz answer (and how many failed) while the body was in flight.
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.gateway import FACE, fake_services

MiB = 1024 * 1024


def vm(pid: int, key: str) -> int:
    """A /proc/PID/status figure in bytes (VmHWM: peak resident; VmRSS: resident now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


@contextmanager
def gateway(checkout: Path, gallery: str) -> Iterator[tuple[int, str]]:
    """A gateway process of `checkout` on a free port; yields (pid, base URL)."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", "0", "--gallery", gallery],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = 0
        for line in process.stdout:
            # facerec.server.announce: "gateway serving on HOST:PORT"
            if "serving" in line and ":" in line:
                port = int(line.rsplit(":", 1)[1].split()[0])
                break
        if not port:
            raise RuntimeError("the gateway did not start")
        threading.Thread(target=process.stdout.read, daemon=True).start()  # drain its output
        yield process.pid, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def measure(checkout: Path, gallery: str, name: str, request: dict[str, Any], size: int) -> str:
    with gateway(checkout, gallery) as (pid, url):
        with httpx.Client(base_url=url, timeout=300) as http:
            http.post("/v1/identify", files={"image": ("warm.jpg", FACE)}).raise_for_status()
            http.post("/v1/identify", json={"image": base64.b64encode(FACE).decode()}).raise_for_status()
        before = vm(pid, "VmHWM")
        done = threading.Event()
        worst = [0.0]
        failed = [0]

        def probe() -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                while not done.is_set():
                    start = time.perf_counter()
                    try:
                        ok = http.get("/healthz").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    worst[0] = max(worst[0], time.perf_counter() - start)
                    failed[0] += not ok
                    time.sleep(0.05)

        prober = threading.Thread(target=probe)
        prober.start()
        status: int | str
        try:
            with httpx.Client(base_url=url, timeout=300) as http:
                status = http.post(
                    "/v1/enroll" if "files" in request else "/v1/identify", **request
                ).status_code
        except httpx.HTTPError as exc:
            status = f"{type(exc).__name__}"
        done.set()
        prober.join()
        rise = vm(pid, "VmHWM") - before
    return (
        f"| {name} | {size / MiB:.1f} | {status} | {rise / MiB:.0f} | {rise / size:.2f}x | "
        f"{worst[0] * 1000:.0f} ms | {failed[0]} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=Path.cwd(), help="the checkout whose gateway runs")
    args = parser.parse_args()
    big_text = "A" * (64 * MiB - len('{"image": ""}'))
    picture_19 = bytes(19 * MiB)
    text_19 = base64.b64encode(picture_19).decode()
    text_limit = "A" * (32 * MiB - 64)  # a JSON body at the gateway's JSON limit: parsed, then refused
    numbers = b'{"embedding": [' + b"0," * ((64 * MiB - 18) // 2) + b"0]}"
    bodies: list[tuple[str, dict[str, Any], int]] = [
        ("JSON, one 64 MiB base64 string", {"json": {"image": big_text}}, 64 * MiB),
        (
            "JSON, 64 MiB of numbers (an embedding)",
            {"content": numbers, "headers": {"content-type": "application/json"}},
            len(numbers),
        ),
        (
            "JSON at its 32 MiB limit, one base64 string",
            {"json": {"image": text_limit}},
            len(text_limit) + 13,
        ),
        ("JSON, a 19 MiB picture in base64 (25 MiB)", {"json": {"image": text_19}}, len(text_19) + 13),
        (
            "multipart, 3 pictures of 19 MiB (enroll)",
            {"data": {"identity": "ada"}, "files": [("images", (f"{i}.jpg", picture_19)) for i in range(3)]},
            57 * MiB,
        ),
    ]
    del big_text
    sys.stdout.write(f"checkout: {args.checkout}" + "\n")
    sys.stdout.write(
        "| body | MiB | answer | peak RSS rise, MiB | rise / body | slowest /healthz | /healthz failures |"
        + "\n"
    )
    sys.stdout.write("|---|---|---|---|---|---|---|" + "\n")
    with fake_services() as (_, gallery):
        for name, request, size in bodies:
            sys.stdout.write(measure(args.checkout.resolve(), gallery, name, request, size) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()

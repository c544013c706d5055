"""End to end: Gallery/Identify through the three running services beside the tutorial's recipe in process.

    .venv/bin/python -m bench.e2e                 # the 118 5-celebrity pictures, once per client count
    .venv/bin/python -m bench.e2e --repeat 3      # each client count identifies the 118 pictures 3 times

(a) the tutorial, one picture at a time in this process: read and decode, mtcnn's detect_faces, crop,
FaceNet (model.predict), the linear SVM fitted on the train set. (b) the services started by
facerec_app.supervisor.local_services (as `facerec serve` does; its start is the cold start), the train
set enrolled, Train, then Identify at 1, 4 and 8 concurrent clients, one picture per call.
Prints images/s, p50/p99 latency, (b)/(a), then where (b)'s time goes, from the services' own
timings: their Prometheus RPC latencies (scraped before and after each run) and the per-stage
seconds each service logs when it stops.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

DESIGN_TUTORIAL_IPS = 6.1  # design.md: the tutorial's recipe on a 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile_ms(latencies: Sequence[float], q: float) -> float:
    return 1000.0 * float(np.percentile(latencies, q)) if latencies else float("nan")


def tutorial_run(
    pairs: list[tuple[str, Path]], train: list[tuple[str, Path]]
) -> tuple[float, list[float], int]:
    """(a): returns (seconds, latencies, correct). The SVM is fitted on the train set first (not timed)."""
    from mtcnn import MTCNN
    from sklearn.svm import SVC

    from embedding_service.facenet import build_facenet
    from facerec import assets
    from facerec_app import tutorial

    detector = MTCNN()
    # A keras.Model: it has the predict the tutorial calls (build_facenet types only what the service uses).
    model = cast(
        tutorial.KerasModel, build_facenet(assets.Assets(assets.facerec_home(os.environ)).facenet_h5)
    )
    labels, faces = [], []
    for identity, path in train:
        face = tutorial.extract_face(detector, path)
        if face is not None:
            labels.append(identity)
            faces.append(face)
    svm = SVC(kernel="linear").fit(tutorial.embed(model, faces), labels)

    def one(path: Path) -> str:
        face = tutorial.extract_face(detector, path)
        if face is None:
            return ""
        return str(svm.predict(tutorial.embed(model, [face]))[0])

    one(pairs[0][1])  # first calls trace and allocate
    latencies, correct = [], 0
    start = time.perf_counter()
    for identity, path in pairs:
        t = time.perf_counter()
        correct += one(path) == identity
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - start, latencies, correct


def identify_run(address: str, work: list[tuple[str, bytes]], clients: int) -> tuple[float, list[float], int]:
    """(b) at `clients` threads, each with its own channel: (seconds, latencies, correct)."""
    from bench.clients import closed_loop
    from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc

    def identify(stub: Any, item: tuple[str, bytes]) -> bool:
        identity, data = item
        request = gallery_pb2.IdentifyRequest(image=common_pb2.Image(data=data), top_k=1)
        reply = stub.Identify(request, timeout=120)
        return bool(reply.faces) and reply.faces[0].identity == identity

    seconds, latencies, correct = closed_loop(address, gallery_pb2_grpc.GalleryStub, work, clients, identify)
    return seconds, latencies, int(correct)


def scrape(port: int) -> dict[str, tuple[float, float]]:
    """method → (calls, seconds) from a service's grpc_server_handling_seconds histogram."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found: dict[str, list[float]] = {}
    for kind, method, value in re.findall(
        r'^grpc_server_handling_seconds_(count|sum)\{[^}]*grpc_method="([^"]+)"[^}]*\} (\S+)$', text, re.M
    ):
        found.setdefault(method, [0.0, 0.0])[0 if kind == "count" else 1] = float(value)
    return {m: (v[0], v[1]) for m, v in found.items()}


def _delta(
    after: dict[str, tuple[float, float]], before: dict[str, tuple[float, float]], method: str
) -> tuple[float, float]:
    a, b = after.get(method, (0.0, 0.0)), before.get(method, (0.0, 0.0))
    return a[0] - b[0], a[1] - b[1]


def _timings(output: Sequence[str]) -> dict[str, float]:
    """The last `timings {...}` line a service logged."""
    for line in reversed(output):
        match = re.search(r"timings (\{.*\})", line)
        if match:
            found: dict[str, float] = json.loads(match.group(1))
            return found
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4,8", help="comma-separated client counts")
    parser.add_argument(
        "--repeat", type=int, default=1, help="identify the pictures this many times per count"
    )
    parser.add_argument("--skip-tutorial", action="store_true", help="(b) only (no ratio)")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]
    out = sys.stdout.write

    from facerec import assets
    from facerec.tfconfig import quiet_tensorflow

    quiet_tensorflow()
    fetched = assets.fetch(assets.facerec_home(os.environ))
    train = assets.labelled_images(fetched.split("train"))
    val = assets.labelled_images(fetched.split("val"))
    pairs = [*train, *val]
    out(f"{len(pairs)} pictures (train {len(train)}, val {len(val)}), {os.cpu_count()} CPUs\n")

    a_ips = float("nan")
    a_p50 = float("nan")
    if not args.skip_tutorial:
        seconds, latencies, correct = tutorial_run(pairs, train)
        a_ips, a_p50 = len(pairs) / seconds, _percentile_ms(latencies, 50)
        a_row = (a_ips, a_p50, _percentile_ms(latencies, 99), correct)

    from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
    from facerec_app.supervisor import local_services

    ports = {name: _free_port() for name in ("detector", "embedder", "gallery")}
    extra = {
        "detector": ["--metrics-port", str(ports["detector"]), "-v"],
        "embedder": ["--metrics-port", str(ports["embedder"]), "-v"],
        "gallery": ["--metrics-port", str(ports["gallery"]), "-v"],
    }
    rows = []
    start = time.perf_counter()
    with local_services(extra=extra) as addresses:
        cold_start_s = time.perf_counter() - start
        import grpc

        with grpc.insecure_channel(addresses.gallery) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            for identity in sorted({i for i, _ in train}):
                images = [common_pb2.Image(data=p.read_bytes()) for i, p in train if i == identity]
                stub.Enroll(gallery_pb2.EnrollRequest(identity=identity, images=images), timeout=300)
            stub.Train(gallery_pb2.TrainRequest(), timeout=120)
            model = stub.Stats(gallery_pb2.StatsRequest(), timeout=10).model
        work = [(identity, path.read_bytes()) for identity, path in pairs]
        identify_run(addresses.gallery, work[:8], 2)  # warm the channels and the batchers' first shapes
        before_all = {name: scrape(port) for name, port in ports.items()}
        for clients in counts:
            before = {name: scrape(port) for name, port in ports.items()}
            seconds, latencies, correct = identify_run(addresses.gallery, work * args.repeat, clients)
            after = {name: scrape(port) for name, port in ports.items()}
            rows.append((clients, len(latencies) / seconds, latencies, correct, before, after))
        after_all = {name: scrape(port) for name, port in ports.items()}
        processes = {p.name: p for p in addresses.processes}
    time.sleep(0.5)  # let the output pumps read the lines the services logged as they stopped
    logged = {name: _timings(p.output) for name, p in processes.items()}

    n = len(work) * args.repeat
    out(f"\ncold start (local_services, as `facerec serve`): {cold_start_s:.1f} s to all three SERVING\n")
    out(f"model: {model} (EMBEDDER_PRECISION picks int8, the default, or fp32)\n\n")
    out(f"{'what':<44}{'images/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'right':>8}{'(b)/(a)':>9}\n")
    out(f"{'design.md: tutorial recipe':<44}{DESIGN_TUTORIAL_IPS:>9.2f}\n")
    if not args.skip_tutorial:
        ips, p50, p99, correct = a_row
        out(
            f"{'(a) tutorial, 1 at a time, in process':<44}{ips:>9.2f}{p50:>9.0f}{p99:>9.0f}"
            f"{f'{correct}/{len(pairs)}':>8}{1.0:>9.2f}\n"
        )
    for clients, ips, latencies, correct, _, _ in rows:
        out(
            f"{f'(b) Gallery/Identify, {clients} client(s)':<44}{ips:>9.2f}{_percentile_ms(latencies, 50):>9.0f}"
            f"{_percentile_ms(latencies, 99):>9.0f}{f'{correct}/{n}':>8}{ips / a_ips:>9.2f}\n"
        )
    if not args.skip_tutorial and rows:
        out(f"single-client p50 latency (b)/(a): {_percentile_ms(rows[0][2], 50) / a_p50:.2f}\n")

    out("\nwhere (b)'s time goes, ms per picture (services' own timings)\n")
    out(f"{'clients':<10}{'client':>9}{'gallery':>9}{'Detect':>9}{'Embed':>9}{'other':>9}\n")
    for clients, _, latencies, _, before, after in rows:
        calls, identify_s = _delta(after["gallery"], before["gallery"], "Identify")
        _, detect_s = _delta(after["detector"], before["detector"], "Detect")
        _, embed_s = _delta(after["embedder"], before["embedder"], "Embed")
        per = 1000.0 / max(calls, 1)
        out(
            f"{clients:<10}{1000 * float(np.mean(latencies)):>9.1f}{identify_s * per:>9.1f}"
            f"{detect_s * per:>9.1f}{embed_s * per:>9.1f}{(identify_s - detect_s - embed_s) * per:>9.1f}\n"
        )
    out(
        "  client: Identify as the client waits (mean); gallery: in the gallery's handler; Detect / Embed: in\n"
        "  the detector's / embedder's handlers (decode, queue, model, crops, protos); other: gallery minus\n"
        "  both (the two RPC hops, the index search and the SVM, the gallery's own protos)\n"
    )
    gallery, detector, embedder = (
        logged.get("gallery", {}),
        logged.get("detector", {}),
        logged.get("embedder", {}),
    )
    calls, identify_s = _delta(after_all["gallery"], before_all["gallery"], "Identify")
    det_calls, detect_s = _delta(after_all["detector"], before_all["detector"], "Detect")
    emb_calls, embed_s = _delta(after_all["embedder"], before_all["embedder"], "Embed")
    out("\nstages over the whole run (enrolment included), ms per picture or face:\n")
    if gallery.get("identify_images"):
        identified = gallery["identify_images"]
        out(
            f"  gallery   detect call {1000 * gallery['detect_call_s'] / identified:.1f}, "
            f"embed call {1000 * gallery['embed_call_s'] / identified:.1f}, "
            f"search+SVM {1000 * gallery['search_s'] / identified:.2f}  ({int(identified)} identifies)\n"
        )
        if calls and det_calls and emb_calls:
            out(
                f"  RPC gallery→detector ≈ {1000 * (gallery['detect_call_s'] / identified - detect_s / det_calls):.1f}, "
                f"gallery→embedder ≈ {1000 * (gallery['embed_call_s'] / identified - embed_s / emb_calls):.1f} "
                "(the gallery's wait minus the service's handler time, Identify runs only)\n"
            )
    if detector.get("pictures"):
        pics = detector["pictures"]
        model = sum(detector.get(k, 0.0) for k in ("pnet_s", "rnet_s", "onet_s", "retinaface_s"))
        stages = {
            "P-Net+pyramid": "pnet_s",
            "R-Net": "rnet_s",
            "O-Net": "onet_s",
            "RetinaFace": "retinaface_s",
        }
        spent = ", ".join(
            f"{name} {1000 * detector[key] / pics:.1f}" for name, key in stages.items() if key in detector
        )
        out(
            f"  detector  {spent}, crop/align {1000 * detector['crop_s'] / pics:.1f}; "
            f"{pics / detector['model_calls']:.2f} pictures per model call; waiting+queue "
            f"{1000 * (detector['in_detector_s'] - model - detector['crop_s']) / max(detector['requests'], 1):.1f} per request\n"
        )
    if embedder.get("faces"):
        faces = embedder["faces"]
        out(
            f"  embedder  prepare {1000 * embedder['prepare_s'] / faces:.2f}, FaceNet {1000 * embedder['infer_s'] / faces:.1f} "
            f"per face; {faces / embedder['model_calls']:.2f} faces per model call\n"
        )
    decode_ms = _decode_ms([d for _, d in work])
    out(f"  decode (facerec.images.decode_image on the same bytes, in this process): {decode_ms:.1f}\n")
    return 0


def _decode_ms(datas: list[bytes]) -> float:
    from facerec.images import ImageLimits, decode_image

    limits = ImageLimits(max_bytes=20 * 1024 * 1024, max_pixels=40_000_000)
    start = time.perf_counter()
    for data in datas:
        decode_image(data, limits)
    return 1000 * (time.perf_counter() - start) / len(datas)


if __name__ == "__main__":
    raise SystemExit(main())

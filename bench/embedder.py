"""Embedder throughput: gRPC Embed with batching on and off beside FaceNet's model.predict in process.

    .venv/bin/python -m bench.embedder              # 3 s per row (about a minute and a half)
    .venv/bin/python -m bench.embedder --full       # 15 s per row, and 16 clients too
    .venv/bin/python -m bench.embedder --runtime onnxruntime
    .venv/bin/python -m bench.embedder --precision-only  # int8 beside fp32 and the CPU's fp32 limit

Prints faces/s, ms per face, p50/p99 latency per request and the achieved GFLOP/s per row, beside
the baseline measured in the same run on the same faces: model.predict on 32 faces. Servers run in
this process (same cores as the clients): one with dynamic batching, one without (max batch 1),
sharing one loaded model. Clients are closed loops: each sends its next request when the last returns.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from embedding_service.config import Settings as EmbedderSettings
    from embedding_service.embedder import Embedder

GFLOP_PER_FACE = 2.84  # design.md: FaceNet's cost per 160x160 face
PEAK_GFLOPS = 420.0  # design.md: this machine's fp32 peak (SGEMM, AVX-512)
DESIGN_MS_PER_FACE = (10.0, 14.5)  # design.md: model.predict, batch 32, TensorFlow


@dataclass
class Row:
    label: str
    faces: int
    seconds: float
    latencies_s: list[float]
    per_call: float = 0.0

    @property
    def faces_per_s(self) -> float:
        return self.faces / self.seconds

    def line(self, baseline: float) -> str:
        p50, p99 = np.percentile(np.array(self.latencies_s) * 1000, [50, 99]) if self.latencies_s else (0, 0)
        fps = self.faces_per_s
        batch = f"{self.per_call:.1f}" if self.per_call else ""
        return (
            f"{self.label:<40}{fps:>8.1f}{1000 / fps:>8.1f}{p50:>9.1f}{p99:>9.1f}{batch:>7}"
            f"{fps * GFLOP_PER_FACE:>9.0f}{fps / baseline:>9.2f}\n"
        )


def _crops(n: int) -> list[np.ndarray]:
    """n real 160x160 face-centred crops from the 5-celebrity pictures (cycled)."""
    from embedding_service.preprocessing import resize_crop
    from facerec import assets
    from facerec.images import decode_image

    fetched = assets.fetch(assets.facerec_home(os.environ))
    paths = [p for _, p in assets.labelled_images(fetched.split("train"))]
    crops = []
    for path in paths[:n]:
        image = decode_image(path.read_bytes())
        h, w, _ = image.shape
        side = int(min(h, w) * 0.7)
        top, left = (h - side) // 2, (w - side) // 2
        crops.append(resize_crop(np.ascontiguousarray(image[top : top + side, left : left + side])))
    return [crops[i % len(crops)] for i in range(n)]


def _embedded(embedder: Embedder, x: np.ndarray) -> int:
    """Faces embedded by one call of the model alone on a prepared batch."""
    return len(embedder.embed_prepared(x))


def _loop_for(seconds: float, step: Callable[[], int]) -> tuple[int, float, list[float]]:
    """Runs step() (returns faces done) until `seconds` pass. (faces, elapsed, latencies)."""
    latencies = []
    faces = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        faces += step()
        latencies.append(time.perf_counter() - t)
    return faces, time.perf_counter() - start, latencies


def _clients(
    address: str, requests: Sequence[Any], clients: int, seconds: float
) -> tuple[int, float, list[float]]:
    """`clients` closed-loop threads over one channel sending requests round-robin for `seconds`."""
    import grpc

    from facerec.v1 import embedding_pb2_grpc

    latencies: list[float] = []
    faces = [0]
    lock = threading.Lock()
    with grpc.insecure_channel(address) as channel:
        stub = embedding_pb2_grpc.EmbedderStub(channel)
        stub.Embed(requests[0], timeout=60)
        stop_at = time.perf_counter() + seconds

        def client(offset: int) -> None:
            i = offset
            mine: list[float] = []
            done = 0
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                reply = stub.Embed(requests[i % len(requests)], timeout=120)
                mine.append(time.perf_counter() - t)
                done += len(reply.results)
                i += clients
            with lock:
                latencies.extend(mine)
                faces[0] += done

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    return faces[0], elapsed, latencies


def precision_table(base: EmbedderSettings, crops: list[np.ndarray], seconds: float) -> str:
    """FaceNet on onnxruntime in fp32 and in int8 (the service's guarded model), model alone, at 1 and 2
    threads and batch 1 and 8, beside the fp32 limit of the cores used (their share of the CPU's fp32
    peak / FaceNet's GFLOP a face): int8 is measured against what no fp32 runtime can beat."""
    from embedding_service.embedder import Embedder
    from embedding_service.preprocessing import prepare_batch

    cores = os.cpu_count() or 1
    lines = [
        f"FaceNet model alone on onnxruntime, {seconds:.0f} s per row, same crops; "
        f"fp32 limit = {PEAK_GFLOPS:.0f} GFLOP/s peak on {cores} cores / {GFLOP_PER_FACE} GFLOP a face = "
        f"{cores * 1000 * GFLOP_PER_FACE / PEAK_GFLOPS:.1f} ms/face a core\n",
        f"{'precision':<10}{'threads':>8}{'batch':>6}{'faces/s':>9}{'ms/face':>9}{'× fp32':>8}{'× limit':>9}\n",
    ]
    fp32_rate: dict[tuple[int, int], float] = {}
    for threads in (1, 2):
        for precision in ("fp32", "int8"):
            embedder = Embedder.load(dataclasses.replace(base, precision=precision, intra_threads=threads))
            if embedder.precision != precision:
                lines.append(f"{precision:<10} not available (see the embedder's warning)\n")
                continue
            for size in (1, 8):
                x = prepare_batch(crops[:size])
                embedder.embed_prepared(x)
                faces, took, _ = _loop_for(seconds, functools.partial(_embedded, embedder, x))
                rate = faces / took
                limit = PEAK_GFLOPS * min(threads, cores) / cores / GFLOP_PER_FACE
                fp32_rate.setdefault((threads, size), rate)
                lines.append(
                    f"{precision:<10}{threads:>8}{size:>6}{rate:>9.1f}{1000 / rate:>9.1f}"
                    f"{rate / fp32_rate[(threads, size)]:>8.2f}{rate / limit:>9.2f}\n"
                )
    lines.append(guard_line(base))
    return "".join(lines)


def guard_line(base: EmbedderSettings) -> str:
    """What the int8 guard measured when it built the model: cosine to fp32 on held-out and augmented crops."""
    import json

    from embedding_service.quantize import cache_paths

    try:
        record = json.loads(cache_paths(base.weights_path.parent)[1].read_text())
    except (OSError, ValueError):
        return "int8 guard: no record\n"
    groups = [
        f"{name} min {g['min']:.4f} p1 {g['p1']:.4f} mean {g['mean']:.4f} (n={g['n']})"
        for name, g in (("held-out", record.get("held_out")), ("augmented", record.get("augmented")))
        if isinstance(g, dict)
    ]
    return (
        f"int8 guard ({record.get('recipe', {}).get('method', '?')}, built in {record.get('build_s', '?')} s): "
        f"cosine to fp32 {'; '.join(groups)}; pair accuracy {100 * record.get('accuracy_int8', 0):.2f}% "
        f"(fp32 {100 * record.get('accuracy_fp32', 0):.2f}%)\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="15 s per row and 16 clients (default 3 s)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per row")
    parser.add_argument("--clients", default=None, help="comma-separated client counts (default 1,8,16,32)")
    parser.add_argument("--runtime", choices=("tensorflow", "onnxruntime"), default="tensorflow")
    parser.add_argument("--max-delay-ms", type=float, default=3.0)
    parser.add_argument(
        "--precision-only", action="store_true", help="only FaceNet int8 vs fp32 on onnxruntime, model alone"
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (15.0 if args.full else 3.0)
    client_counts = [int(c) for c in (args.clients or "1,8,16,32").split(",")]

    from facerec.tfconfig import pin_threads, quiet_tensorflow

    quiet_tensorflow()
    pin_threads(2, 1)
    from embedding_service.batcher import EmbeddingBatcher
    from embedding_service.config import Settings
    from embedding_service.embedder import Embedder
    from embedding_service.facenet import build_facenet
    from embedding_service.preprocessing import prepare_batch
    from embedding_service.service import SERVICE_NAME, build_server
    from facerec.server import Health
    from facerec.v1 import common_pb2, embedding_pb2

    base = Settings.from_env(os.environ)
    settings = dataclasses.replace(
        base, host="127.0.0.1", port=0, runtime=args.runtime, max_delay_ms=args.max_delay_ms, max_queue=512
    )
    if args.precision_only:
        sys.stdout.write(precision_table(base, _crops(64), seconds))
        return 0
    model = build_facenet(settings.weights_path)
    if args.runtime == "onnxruntime":
        from embedding_service.onnx_runtime import onnx_infer

        embedder = Embedder(onnx_infer(model, settings), "onnxruntime")
    else:
        embedder = Embedder.from_keras(model)

    crops = _crops(64)
    x32 = prepare_batch(crops[:32])
    keras_model: Any = model  # a keras.Model (build_facenet types only what the service uses)
    keras_model.predict(x32, verbose=0)
    embedder.embed(crops[:32])
    embedder.embed(crops[:1])

    out = sys.stdout.write
    rows: list[Row] = []
    faces, took, lat = _loop_for(seconds, lambda: len(keras_model.predict(x32, verbose=0)))
    baseline = Row("baseline model.predict, 32 faces", faces, took, lat, 32)
    # The model's own cost per face by batch size bounds what batching can gain: cost(1) / cost(n).
    for size in (1, 8, 16, 32):
        x = prepare_batch(crops[:size])
        faces, took, lat = _loop_for(seconds, functools.partial(_embedded, embedder, x))
        rows.append(Row(f"{embedder.runtime} model alone, batch {size}", faces, took, lat, size))
    faces, took, lat = _loop_for(seconds, lambda: len(embedder.embed(crops[:32])))
    rows.append(Row(f"Embedder.embed ({embedder.runtime}), 32 faces", faces, took, lat, 32))

    def request(faces: list[np.ndarray]) -> embedding_pb2.EmbedRequest:
        return embedding_pb2.EmbedRequest(
            faces=[
                embedding_pb2.FaceInput(crop=common_pb2.RgbImage(rgb=c.tobytes(), width=160, height=160))
                for c in faces
            ]
        )

    singles = [request([c]) for c in crops]
    batches = [request(crops[:32]), request(crops[32:64])]
    results: dict[tuple[bool, int], Row] = {}
    for batching in (True, False):
        mode = dataclasses.replace(settings, batching=batching)
        batcher = EmbeddingBatcher.from_settings(embedder, mode)
        server, port = build_server(mode, batcher, Health([SERVICE_NAME]))
        server.start()
        address = f"127.0.0.1:{port}"
        runs: list[tuple[str, Sequence[Any], int]] = [
            (f"{c} client(s), 1 face", singles, c) for c in client_counts
        ]
        if batching:
            runs.insert(0, ("1 client, 32 faces a request", batches, 1))
        for label, requests, clients in runs:
            before = batcher.stats
            faces, took, lat = _clients(address, requests, clients, seconds)
            after = batcher.stats
            per_call = (after.items - before.items) / max(1, after.calls - before.calls)
            row = Row(f"gRPC {'batched' if batching else 'unbatched'}, {label}", faces, took, lat, per_call)
            rows.append(row)
            if requests is singles:
                results[(batching, clients)] = row
        server.stop(0)
        batcher.close()

    out(
        f"FaceNet, {args.runtime}, 2 intra / 1 inter threads, {seconds:.0f} s per row, server in this process\n"
        f"baseline = keras model.predict on 32 faces, same process, same faces; design.md figure for it: "
        f"{DESIGN_MS_PER_FACE[0]:.0f}–{DESIGN_MS_PER_FACE[1]:.1f} ms/face\n"
        f"GFLOP/s = faces/s × {GFLOP_PER_FACE} (fp32 peak ≈ {PEAK_GFLOPS:.0f})\n\n"
    )
    out(
        f"{'what':<40}{'faces/s':>8}{'ms/face':>8}{'p50 ms':>9}{'p99 ms':>9}{'/call':>7}{'GFLOP/s':>9}"
        f"{'× base':>9}\n"
    )
    out(baseline.line(baseline.faces_per_s))
    for row in rows:
        out(row.line(baseline.faces_per_s))
    batch_row = next(r for r in rows if "32 faces a request" in r.label)
    out(
        f"\ngoal: gRPC batch-32 ≥ 0.9× in-process predict: "
        f"{batch_row.faces_per_s / baseline.faces_per_s:.2f}×\n"
    )
    alone = {int(r.label.rsplit(" ", 1)[1]): r.faces_per_s for r in rows if "model alone" in r.label}
    out(
        "batching can gain at most the model's own cost(1) / cost(n): "
        + ", ".join(f"n={n} {fps / alone[1]:.2f}×" for n, fps in alone.items() if n > 1)
        + "\n"
    )
    for clients in client_counts:
        on, off = results.get((True, clients)), results.get((False, clients))
        if on and off:
            goal = " (goal ≥ 3× at 16)" if clients == 16 else ""
            out(
                f"{clients} single-face clients, batching on / off: {on.faces_per_s / off.faces_per_s:.2f}×{goal}\n"
            )
    best = max([baseline, *rows], key=lambda r: r.faces_per_s)
    out(
        f"best: {best.faces_per_s * GFLOP_PER_FACE:.0f} GFLOP/s = "
        f"{100 * best.faces_per_s * GFLOP_PER_FACE / PEAK_GFLOPS:.0f}% of the fp32 peak\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The gallery's store x index backends side by side: SQLite + FAISS (the baseline, in process) against
PostgreSQL + FAISS and PostgreSQL + Milvus, on the same synthetic faces; then how fast one replica sees
another's enroll, and the identify rate of one against two gallery replicas on one PostgreSQL.

    .venv/bin/python -m bench.gallery_scale --engines            # 10k faces (about 3 minutes)

The engines are real: a throwaway PostgreSQL 15 cluster and a milvus-lite server, started here on free
ports (or --postgres URL / --milvus URI). milvus-lite is a functional stand-in for Milvus, not a speed
reference: its figures say what the gallery's Milvus path costs here, not what a Milvus cluster does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from facerec.errors import FacerecError
from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from facerec_app.supervisor import ServiceProcess
from gallery.backend import open_gallery
from gallery.gallery import Gallery
from gallery.index_milvus import MilvusSettings
from gallery.options import GalleryOptions
from gallery.ports import DetectedImage, DetectorOptions, Embedded, ModelInfo
from gallery.rows import NewFace
from gallery.stores import open_store

MODEL = "synthetic-128"
FACES_PER_IDENTITY = 4
CHUNK = 2000


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _NoInference:
    """The gallery's ports when every call is by embedding: never asked."""

    def detect(
        self, images: object, options: DetectorOptions, timeout_s: float | None = None
    ) -> list[DetectedImage]:
        raise FacerecError("no detector in this benchmark")

    def embed(self, crops: object, timeout_s: float | None = None, model: str = "") -> Embedded:
        raise FacerecError("no embedder in this benchmark")

    def model_info(self, timeout_s: float | None = None, model: str = "") -> ModelInfo:
        return ModelInfo(MODEL, 128)

    def models(self, timeout_s: float | None = None) -> list[ModelInfo]:
        return [ModelInfo(MODEL, 128)]


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _open(store: str, milvus: MilvusSettings | None) -> Gallery:
    # svm_max_identities=1: nearest-neighbour identification, the large-gallery path (no SVM fit).
    return open_gallery(
        store, MODEL, _NoInference(), _NoInference(), GalleryOptions(svm_max_identities=2), milvus=milvus
    )


@dataclass(frozen=True)
class Measured:
    """One backend's figures: faces/s enrolled in bulk and one at a time, seconds to start, Identify
    calls/s, and the share of identifications whose top candidate was right."""

    name: str
    bulk: float
    start_s: float
    one: float
    identify: float
    right: float


def measure_backend(
    name: str, store: str, milvus: MilvusSettings | None, x: np.ndarray, q: np.ndarray
) -> Measured:
    """Bulk enroll through the store, start (index from the store), Enroll one at a time and Identify."""
    with open_store(store, MODEL) as s:
        faces = [NewFace(v) for v in x]

        def bulk() -> None:
            for at in range(0, len(faces), CHUNK):
                chunk = faces[at : at + CHUNK]
                s.add_many(
                    [
                        (f"id-{(at + j) // FACES_PER_IDENTITY:08d}", chunk[j : j + FACES_PER_IDENTITY])
                        for j in range(0, len(chunk), FACES_PER_IDENTITY)
                    ]
                )

        bulk_s = _timed(bulk)
    gallery: Gallery | None = None

    def start() -> None:
        nonlocal gallery
        gallery = _open(store, milvus)

    t0 = time.perf_counter()
    start_s = _timed(start)
    assert gallery is not None
    if milvus is not None:
        # Serving starts at once; the reconciler's first pass then writes the bulk-enrolled faces to Milvus.
        while gallery.stats().index_size < len(x):
            time.sleep(0.05)
        out(
            f"  ({name}: the reconciler filled Milvus with {len(x):,} faces {time.perf_counter() - t0:.1f} s after start)"
        )
    n_one = 200
    fresh = np.random.default_rng(3).standard_normal((n_one, x.shape[1])).astype(np.float32)
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
    opened = gallery
    one_s = _timed(
        lambda: [opened.enroll(f"new-{i}", embeddings=[(fresh[i].tolist(), "")]) for i in range(n_one)]
    )
    gallery.identify_embedding(q[0].tolist())  # warm
    right = 0
    t0 = time.perf_counter()
    for i, v in enumerate(q):
        answer = gallery.identify_embedding(v.tolist(), top_k=1)
        right += answer.faces[0].candidates[0].face_id == i + 1 if answer.faces[0].candidates else 0
    identify_s = time.perf_counter() - t0
    gallery.close()
    return Measured(name, len(x) / bulk_s, start_s, n_one / one_s, len(q) / identify_s, right / len(q))


def replica_lag_ms(url: str, trials: int) -> list[float]:
    """ms from an Enroll returning on replica A to replica B identifying the face (in process, polled)."""
    a, b = _open(url, None), _open(url, None)
    rng = np.random.default_rng(11)
    lags = []
    try:
        for i in range(trials):
            v = rng.standard_normal(128).astype(np.float32)
            v /= np.linalg.norm(v)
            a.enroll(f"lag-{i}", embeddings=[(v.tolist(), "")])
            t0 = time.perf_counter()
            while True:
                faces = b.identify_embedding(v.tolist(), top_k=1).faces
                if faces and faces[0].identity == f"lag-{i}":
                    break
            lags.append((time.perf_counter() - t0) * 1e3)
    finally:
        a.close()
        b.close()
    return lags


def identify_rate(url: str, replicas: int, clients: int, q: np.ndarray, seconds: float) -> float:
    """Identify calls/s over gRPC from `clients` closed-loop threads spread over `replicas` gallery processes."""
    args = [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--store",
        url,
        "--model",
        MODEL,
        "--svm-max-identities",
        "2",
    ]
    args += ["--detector", "127.0.0.1:1", "--embedder", "127.0.0.1:1"]
    started = [ServiceProcess.start("gallery", args) for _ in range(replicas)]
    try:
        for p in started:
            p.wait_ready(180)
        done = [0]
        lock = threading.Lock()
        stop = time.perf_counter() + seconds

        def client(c: int) -> None:
            with grpc.insecure_channel(started[c % replicas].address) as channel:
                stub = gallery_pb2_grpc.GalleryStub(channel)
                n = 0
                while time.perf_counter() < stop:
                    v = q[(c * 997 + n) % len(q)]
                    stub.Identify(
                        gallery_pb2.IdentifyRequest(embedding=common_pb2.Embedding(values=v.tolist())),
                        timeout=30,
                    )
                    n += 1
                with lock:
                    done[0] += n

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return done[0] / (time.perf_counter() - t0)
    finally:
        for p in started:
            p.stop()


def run(
    args: argparse.Namespace,
    face_like: Callable[[int, int, np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray]],
    work: Path,
) -> None:
    from tests.support.engines import MilvusLiteServer, PostgresCluster

    n = args.engine_faces
    rng = np.random.default_rng(7)
    x, q_moved, src = face_like(n, args.queries, rng)
    q = x[: args.queries]  # enrolled faces themselves: each query's right answer is its own face id
    cluster = PostgresCluster() if not args.postgres else None
    milvus_server = MilvusLiteServer() if not args.milvus else None
    pg = args.postgres or ""
    try:

        def database() -> str:
            return cluster.new_database() if cluster is not None else pg

        milvus_uri = args.milvus or (milvus_server.uri if milvus_server else "")
        out(
            f"\n== store x index, {n:,} face-like vectors, {len(q)} identify calls by embedding, one thread =="
        )
        rows = [
            measure_backend("SQLite + FAISS (baseline)", str(work / "engines.sqlite"), None, x, q),
            measure_backend("PostgreSQL + FAISS", database(), None, x, q),
            measure_backend(
                "PostgreSQL + Milvus (milvus-lite)*",
                database(),
                MilvusSettings(milvus_uri, collection="bench_" + uuid.uuid4().hex[:8], index_type="FLAT"),
                x,
                q,
            ),
        ]
        base = rows[0]
        out(
            f"  {'backend':<36} {'bulk faces/s':>13} {'Enroll/s':>9} {'start s':>8} {'Identify/s':>11} {'top-1':>6}"
        )
        for r in rows:
            out(
                f"  {r.name:<36} {r.bulk:>13,.0f} {r.one:>9,.0f} {r.start_s:>8.2f}"
                f" {r.identify:>11,.0f} {r.right:>6.3f}"
            )
        for r in rows[1:]:
            out(
                f"  {r.name:<36} ratio to baseline: bulk {r.bulk / base.bulk:.2f}x, Enroll"
                f" {r.one / base.one:.2f}x, Identify {r.identify / base.identify:.2f}x"
            )
        out("  * milvus-lite is a functional stand-in for Milvus, not a speed reference.")

        lags = replica_lag_ms(database(), args.lag_trials)
        out(
            f"\n== a replica sees another's enroll (PostgreSQL + FAISS, LISTEN/NOTIFY, {len(lags)} enrolls) ==\n"
            f"  median {statistics.median(lags):.1f} ms, max {max(lags):.1f} ms (promised: within 2 s)"
        )

        url = database()
        with open_store(url, MODEL) as s:
            s.add_many(
                [(f"id-{i:08d}", [NewFace(v) for v in x[i * 4 : i * 4 + 4]]) for i in range(len(x) // 4)]
            )
        one = identify_rate(url, 1, args.replica_clients, q, args.replica_seconds)
        two = identify_rate(url, 2, args.replica_clients, q, args.replica_seconds)
        out(
            f"\n== Identify over gRPC, PostgreSQL + FAISS, {args.replica_clients} closed-loop clients,"
            f" {args.replica_seconds:.0f} s each ==\n"
            f"  1 replica {one:,.0f}/s, 2 replicas {two:,.0f}/s: {two / one:.2f}x"
            " (all processes share this machine's cores)"
        )
    finally:
        if cluster is not None:
            cluster.close()
        if milvus_server is not None:
            milvus_server.close()

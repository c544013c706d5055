"""Gallery at scale: the chosen FAISS index beside exact flat search on synthetic galleries, with ratios.

    .venv/bin/python -m bench.gallery_scale                      # 10k and 100k (about 2 minutes)
    .venv/bin/python -m bench.gallery_scale --sizes 1000000      # 1M: ~3 GB of memory, several minutes
    .venv/bin/python -m bench.gallery_scale --engines            # SQLite vs PostgreSQL vs Milvus, replicas

Two kinds of gallery, d=128, unit vectors:
  (a) face-like: a 28-d Gaussian latent through a fixed random 28x128 matrix, normalized, plus small noise;
      a query is its enrolled latent moved a little, projected again (cosine to its enrolled vector ~0.85).
  (b) isotropic random unit vectors, queries at cosine ~0.75: the worst case for any approximate index.
For each: bulk enroll into the Store, index build, single-query p50/p99, batched queries/s, recall@1 against
exact search, memory, restart (persisted index loaded, not rebuilt), then an nprobe sweep and the cost of the
exact_beyond fallback. FAISS threads are set with faiss.omp_set_num_threads(--threads) here and in the
restart processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import faiss
import numpy as np

from gallery.index import FaceIndex
from gallery.rows import NewFace
from gallery.store import Store

DIM = 128
LATENT = 28
MODEL = "synthetic-128"
FACES_PER_IDENTITY = 4
ENROLL_CHUNK = 2000  # faces per transaction in the bulk enroll
THRESHOLD = 1.20  # the tutorial recipe's verification threshold (design.md)


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- data ------------------------------------------------------------------------------------------


def face_like(n: int, n_queries: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a) vectors (n, 128), queries (m, 128), and the enrolled index each query came from."""
    w = rng.standard_normal((LATENT, DIM)).astype(np.float32)
    z = rng.standard_normal((n, LATENT)).astype(np.float32)
    x = np.empty((n, DIM), np.float32)
    for s in range(0, n, 100_000):
        block = unit(z[s : s + 100_000] @ w)
        x[s : s + 100_000] = unit(block + 0.1 * unit(rng.standard_normal(block.shape).astype(np.float32)))
    src = rng.choice(n, n_queries, replace=False)
    moved = z[src] + 0.55 * rng.standard_normal((n_queries, LATENT)).astype(np.float32)
    q = unit(moved @ w)
    q = unit(q + 0.1 * unit(rng.standard_normal(q.shape).astype(np.float32)))
    return x, q, src


def isotropic(n: int, n_queries: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(b) random unit vectors; queries at cosine ~0.75 to an enrolled one."""
    x = np.empty((n, DIM), np.float32)
    for s in range(0, n, 100_000):
        x[s : s + 100_000] = unit(rng.standard_normal((min(100_000, n - s), DIM)).astype(np.float32))
    src = rng.choice(n, n_queries, replace=False)
    q = unit(x[src] + 0.882 * unit(rng.standard_normal((n_queries, DIM)).astype(np.float32)))
    return x, q, src


# -- measurements ----------------------------------------------------------------------------------


T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


@contextmanager
def tuned(index: FaceIndex, nprobe: int | None = None, exact_beyond: float | None = None) -> Iterator[None]:
    """The index searching with this nprobe and exact_beyond (FaceIndex's construction-time tuning)."""
    before = index.nprobe, index.exact_beyond
    if nprobe is not None:
        index.nprobe = nprobe
    index.exact_beyond = exact_beyond
    try:
        yield
    finally:
        if nprobe is not None:
            index.nprobe = before[0]
        index.exact_beyond = before[1]


def single_query_ms(index: FaceIndex, q: np.ndarray) -> tuple[float, float]:
    """p50, p99 in ms of one query at a time."""
    index.search(q[:1], 1)  # warm
    lat = []
    for i in range(len(q)):
        t0 = time.perf_counter()
        index.search(q[i : i + 1], 1)
        lat.append(time.perf_counter() - t0)
    return float(np.percentile(lat, 50) * 1e3), float(np.percentile(lat, 99) * 1e3)


def batched_qps(index: FaceIndex, q: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    (dist, ids), secs = timed(lambda: index.search(q, 1))
    return len(q) / secs, dist, ids


def enroll(db: Path, x: np.ndarray) -> tuple[float, float, Store]:
    """Bulk enroll (ENROLL_CHUNK faces per transaction) and, on a second file, one Enroll per transaction
    (the RPC path: every enroll committed durably before it is acknowledged). Returns faces/s of both."""
    store = Store(db, MODEL)
    faces = [NewFace(v) for v in x]

    def bulk() -> None:
        for s in range(0, len(faces), ENROLL_CHUNK):
            chunk = faces[s : s + ENROLL_CHUNK]
            store.add_many(
                [
                    (f"id-{(s + j) // FACES_PER_IDENTITY:08d}", chunk[j : j + FACES_PER_IDENTITY])
                    for j in range(0, len(chunk), FACES_PER_IDENTITY)
                ]
            )

    _, bulk_s = timed(bulk)
    one_db = db.with_name("one-at-a-time.db")
    n_one = min(2000, len(faces))
    with Store(one_db, MODEL) as single:
        _, one_s = timed(
            lambda: [
                single.add_faces(f"id-{j:08d}", faces[j : j + FACES_PER_IDENTITY])
                for j in range(0, n_one, FACES_PER_IDENTITY)
            ]
        )
    for p in one_db.parent.glob(one_db.name + "*"):
        p.unlink()
    return len(faces) / bulk_s, n_one / one_s, store


def restart_probe(db: str, index_path: str, mode: str, threads: int) -> None:
    """Run in a fresh process: open the store and get an index the way the gallery does at start."""
    t0 = time.perf_counter()
    faiss.omp_set_num_threads(threads)
    base = rss_mb()
    store = Store(db, MODEL)
    if mode == "load":
        index = FaceIndex.load(Path(index_path), store.version())
        if index is None:
            raise SystemExit("the persisted index was not loaded")
    else:
        ids, vectors, _ = store.embeddings()
        del _
        index = FaceIndex.build(ids, vectors, ivf_min_size=0 if mode == "rebuild-ivf" else len(ids) + 1)
        del ids, vectors
    secs = time.perf_counter() - t0
    out(json.dumps({"secs": secs, "base_mb": base, "rss_mb": rss_mb(), "kind": index.kind}))


def restart(db: Path, index_path: Path, mode: str, threads: int) -> dict[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gallery_scale", "--restart-probe", mode, str(db), str(index_path)]
        + ["--threads", str(threads)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t0  # interpreter start and imports included
    return result


# -- one gallery -----------------------------------------------------------------------------------


def row(name: str, ours: float, flat: float, fmt: str = "{:.3g}", better: str = "") -> None:
    ratio = ours / flat if flat else float("nan")
    out(f"  {name:<34} {fmt.format(ours):>14} {fmt.format(flat):>14} {ratio:>10.3g}x  {better}")


def run_one(n: int, kind: str, args: argparse.Namespace, work: Path) -> None:
    rng = np.random.default_rng(7)
    make = face_like if kind == "a" else isotropic
    x, q, src = make(n, args.queries, rng)
    cos = float(np.mean(np.sum(q * x[src], axis=1)))
    raw_mb = x.nbytes / 2**20
    label = "(a) face-like" if kind == "a" else "(b) isotropic"
    out(f"\n== {n:,} vectors, {label}: query cosine to its source {cos:.3f}, raw vectors {raw_mb:.0f} MiB ==")

    db = work / f"g-{n}-{kind}.db"
    store = None
    if n <= args.enroll_max:
        bulk_rate, one_rate, store = enroll(db, x)
        out(
            f"  store enroll: bulk {bulk_rate:,.0f} faces/s ({ENROLL_CHUNK} per transaction);"
            f" one Enroll per transaction {one_rate:,.0f} faces/s ({FACES_PER_IDENTITY} faces each, fsynced)"
        )
        ids, x_store, _ = store.embeddings()
        if x_store.tobytes() != x.tobytes():
            raise SystemExit("the store did not give back the enrolled vectors bit for bit")
        del x_store
    else:
        ids = np.arange(1, n + 1, dtype=np.int64)
        out(f"  store enroll: skipped above --enroll-max {args.enroll_max:,}")

    chosen, build_s = timed(
        lambda: FaceIndex.build(ids, x, ivf_min_size=args.ivf_min_size, nprobe=args.nprobe)
    )
    flat, flat_build_s = timed(lambda: FaceIndex.build(ids, x, ivf_min_size=n + 1))
    out(f"  chosen: {chosen.detail}   (FAISS threads: {faiss.omp_get_max_threads()})")
    out(f"  {'':<34} {'chosen':>14} {'exact flat':>14} {'ratio':>11}")
    row("index build (s)", build_s, flat_build_s)

    n_single = min(len(q), args.single_queries)
    p50, p99 = single_query_ms(chosen, q[:n_single])
    # Exact search is slow at 1M: time it on fewer queries.
    f50, f99 = single_query_ms(flat, q[: min(n_single, args.flat_single_queries)])
    row("single query p50 (ms)", p50, f50, better=f"flat/chosen = {f50 / p50:.1f}x faster")
    row("single query p99 (ms)", p99, f99)
    qps, _, got = batched_qps(chosen, q)
    fqps, exact_d, exact = batched_qps(flat, q)
    row(f"batched {len(q)} queries (q/s)", qps, fqps, fmt="{:,.0f}")
    recall = float(np.mean(got[:, 0] == exact[:, 0]))
    row("recall@1 vs exact", recall, 1.0, fmt="{:.4f}")
    out(f"  (exact top-1 is the query's own source for {np.mean(exact[:, 0] == ids[src]):.3f} of queries)")

    index_path = work / f"g-{n}-{kind}.faiss"
    if store is not None:
        chosen.save(index_path, store.version())
        flat_path = work / f"g-{n}-{kind}-flat.faiss"
        flat.save(flat_path, store.version())
        store.close()
        loaded = restart(db, index_path, "load", args.threads)
        loaded_flat = restart(db, flat_path, "load", args.threads)
        rebuilt = restart(
            db, index_path, "rebuild-ivf" if chosen.kind == "ivf" else "rebuild-flat", args.threads
        )
        row(
            "restart: load persisted (s)", loaded["secs"], rebuilt["secs"], better="vs rebuild from the store"
        )
        row("restart wall incl. interpreter (s)", loaded["wall_s"], rebuilt["wall_s"])
        mem = loaded["rss_mb"] - loaded["base_mb"]
        mem_flat = loaded_flat["rss_mb"] - loaded_flat["base_mb"]
        row("memory after load (MiB, ΔRSS)", mem, mem_flat, fmt="{:,.0f}")
        out(
            f"  memory / raw vectors: chosen {mem / raw_mb:.2f}x, flat {mem_flat / raw_mb:.2f}x;"
            f" process RSS after load {loaded['rss_mb']:,.0f} MiB"
        )
        flat_path.unlink()
    else:
        chosen.save(index_path, 0)
        out(
            f"  index file {index_path.stat().st_size / 2**20:,.0f} MiB (no store at this size: restart not measured)"
        )

    if chosen.kind == "ivf":
        out(f"  nprobe sweep ({chosen.nlist} lists; single-query p50 over {min(200, n_single)} queries):")
        out(f"  {'nprobe':>8} {'recall@1':>9} {'p50 ms':>8} {'speedup':>8} {'batched q/s':>12}")
        for nprobe in sorted(set(args.sweep) | {chosen.nprobe}):
            if nprobe > chosen.nlist:
                continue
            with tuned(chosen, nprobe=nprobe):
                qps_p, _, got_p = batched_qps(chosen, q)
                p50_p, _ = single_query_ms(chosen, q[:200])
            mark = " <- default" if nprobe == chosen.nprobe else ""
            out(
                f"  {nprobe:>8} {np.mean(got_p[:, 0] == exact[:, 0]):>9.4f} {p50_p:>8.3f}"
                f" {f50 / p50_p:>7.1f}x {qps_p:>12,.0f}{mark}"
            )
        out(
            "  exact_beyond fallback at the default nprobe (a query whose best distance exceeds it is redone exactly):"
        )
        out(f"  {'beyond':>8} {'recall@1':>9} {'redone':>8} {'batched q/s':>12} {'p50 ms':>8} {'p99 ms':>8}")
        for beyond in sorted({0.9, 1.0, THRESHOLD}):
            redone = float(np.mean(chosen.search(q, 1)[0][:, 0] > beyond))
            with tuned(chosen, exact_beyond=beyond):
                qps_f, d_f, got_f = batched_qps(chosen, q)
                p50_f, p99_f = single_query_ms(chosen, q[:200])
            out(
                f"  {beyond:>8.2f} {np.mean(got_f[:, 0] == exact[:, 0]):>9.4f} {redone:>8.1%}"
                f" {qps_f:>12,.0f} {p50_f:>8.3f} {p99_f:>8.3f}"
            )
        out(f"  (exact best distance: median {np.median(exact_d[:, 0]):.3f}, max {exact_d[:, 0].max():.3f})")
    for p in work.glob(f"g-{n}-{kind}*"):
        p.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="gallery sizes, comma-separated")
    parser.add_argument("--kinds", default="a,b", help="a (face-like), b (isotropic)")
    parser.add_argument("--queries", type=int, default=1000, help="queries per gallery (batched, recall)")
    parser.add_argument("--single-queries", type=int, default=500, help="queries timed one at a time")
    parser.add_argument("--flat-single-queries", type=int, default=200, help="of those, timed on exact flat")
    parser.add_argument("--threads", type=int, default=2, help="faiss.omp_set_num_threads")
    parser.add_argument("--ivf-min-size", type=int, default=50_000)
    parser.add_argument("--nprobe", type=int, default=None, help="default: gallery.index.default_nprobe")
    parser.add_argument("--sweep", default="1,4,16,32,64,128,256,512", help="nprobe values for the sweep")
    parser.add_argument(
        "--enroll-max", type=int, default=1_000_000, help="largest gallery enrolled in a Store"
    )
    parser.add_argument(
        "--workdir", default=None, help="where the SQLite file and index go (default: a temp dir)"
    )
    parser.add_argument(
        "--engines",
        action="store_true",
        help="store x index backends and replicas (bench/gallery_engines.py)",
    )
    parser.add_argument("--engine-faces", type=int, default=10_000, help="faces in the --engines galleries")
    parser.add_argument(
        "--postgres", default="", help="--engines: this PostgreSQL database, else a throwaway one"
    )
    parser.add_argument("--milvus", default="", help="--engines: this Milvus URI, else a milvus-lite server")
    parser.add_argument("--lag-trials", type=int, default=50, help="--engines: enrolls timed across replicas")
    parser.add_argument(
        "--replica-clients", type=int, default=8, help="--engines: closed-loop Identify clients"
    )
    parser.add_argument(
        "--replica-seconds", type=float, default=10.0, help="--engines: seconds per replica count"
    )
    parser.add_argument("--restart-probe", nargs=3, metavar=("MODE", "DB", "INDEX"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    if args.restart_probe:
        mode, db, index_path = args.restart_probe
        restart_probe(db, index_path, mode, args.threads)
        return
    if args.engines:
        from bench.gallery_engines import run as run_engines

        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            run_engines(args, face_like, Path(tmp))
        return
    args.sweep = [int(s) for s in args.sweep.split(",")]
    out(
        f"gallery scale bench: faiss {faiss.__version__}, faiss.omp_set_num_threads({args.threads}), {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            for kind in args.kinds.split(","):
                run_one(n, kind, args, Path(tmp))


if __name__ == "__main__":
    main()

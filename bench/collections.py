"""What collections cost (issue 23), each figure beside its baseline as a ratio:

    .venv/bin/python -m bench.collections                 # about 1.5 minutes

(a) Identify by embedding, one call at a time, p50/p95 latency and CPU per call: a deployment with one
    collection of 1,000 faces (the baseline) against one with 100 collections of 1,000 faces each, every call
    to a collection drawn at random; in alternating rounds. SQLite + FAISS, the gallery facades in this process (one per collection, each over its
    own store at gallery.namespaces.store_location and its own FAISS index, as the CollectionManager keeps
    them), synthetic unit vectors; a query is an enrolled face moved a little (cosine ~0.9).
(b) Bytes per face on disk (the SQLite store and its saved index, after close, less an empty store's) for
    faces enrolled without a kept picture (the baseline) and with one: the real kept pictures
    (gallery.pictures.face_picture, as enrolment makes them) of the largest face MTCNN finds in each of the
    118 5-celebrity pictures (the detector in this process), taken in turn; or, with --picture-kb, a payload
    of that many random bytes (incompressible, as a JPEG is; SQLite stores it as it is).
(c) Re-embedding rate against enrolment rate, on the real services over gRPC (detector, embedder and
    gallery as `facerec serve` starts them): the 118 5-celebrity pictures enrolled one per Enroll into a new
    collection (the baseline, faces/s), then Reembed to the other FaceNet model (int8 or fp32), back, and
    to the other detector, each timed from the call to its operation's done (faces carried / s).
    --skip-reembed leaves it out.
(d) With --milvus N: (a) on the index in a real Milvus standalone server (the `milvus` package's, started
    here) instead of FAISS: one Milvus collection per facerec collection (gallery/index_milvus.py says why),
    1 of them against N, with the seconds it takes to create and fill one, and the same baseline read at
    Strong consistency (what reads were before: each waits for Milvus's next time tick).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facerec.errors import FacerecError
from gallery.backend import open_gallery
from gallery.gallery import Gallery
from gallery.namespaces import store_location
from gallery.options import GalleryOptions
from gallery.ports import DetectedImage, DetectorOptions, Embedded, ModelInfo
from gallery.rows import KeptPicture, NewFace
from gallery.stores import open_store

MODEL = "synthetic-128"
DIM = 128
FACES_PER_IDENTITY = 4


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _NoInference:
    """The gallery's detector and embedder when every call is by embedding: never asked."""

    def detect(
        self, images: object, options: DetectorOptions, timeout_s: float | None = None
    ) -> list[DetectedImage]:
        raise FacerecError("no detector in this benchmark")

    def embed(self, crops: object, timeout_s: float | None = None, model: str = "") -> Embedded:
        raise FacerecError("no embedder in this benchmark")

    def model_info(self, timeout_s: float | None = None, model: str = "") -> ModelInfo:
        return ModelInfo(MODEL, DIM)

    def models(self, timeout_s: float | None = None) -> list[ModelInfo]:
        return [ModelInfo(MODEL, DIM)]


def unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def fill(location: str, vectors: np.ndarray, pictures: Sequence[KeptPicture] = ()) -> None:
    """Enrolls vectors in bulk (FACES_PER_IDENTITY a person), face i keeping pictures[i % len] if any."""

    def face(i: int) -> NewFace:
        return NewFace(vectors[i], picture=pictures[i % len(pictures)] if pictures else None)

    with open_store(location, MODEL) as store:
        store.add_many(
            [
                (
                    f"person-{at // FACES_PER_IDENTITY:06d}",
                    [face(i) for i in range(at, min(at + FACES_PER_IDENTITY, len(vectors)))],
                )
                for at in range(0, len(vectors), FACES_PER_IDENTITY)
            ]
        )


def real_kept_pictures() -> list[KeptPicture]:
    """The kept picture of the largest face MTCNN finds in each 5-celebrity picture, made as enrolment
    makes it."""
    from detector_service.config import Settings as DetectorSettings
    from detector_service.detector import DetectOptions, Detector
    from facerec import assets
    from facerec.images import decode_image
    from gallery.pictures import face_picture

    fetched = assets.fetch(assets.facerec_home(os.environ))
    paths = [p for split in ("train", "val") for _, p in assets.labelled_images(fetched.split(split))]
    detector = Detector.load(DetectorSettings.from_env(os.environ))
    kept = []
    for path in paths:
        upright = decode_image(path.read_bytes())
        found = detector.detect([upright], DetectOptions())[0]
        if found:
            f = max(found, key=lambda d: d.box.width * d.box.height)
            box = (f.box.x, f.box.y, f.box.width, f.box.height)
            kept.append(face_picture(upright, box, landmarks=[tuple(p) for p in f.landmarks.as_array()]))
    return kept


def open_facade(location: str) -> Gallery:
    # svm_max_identities=2: nearest-neighbour identification (no SVM fit), the path at 250 persons too.
    nothing = _NoInference()
    return open_gallery(location, MODEL, nothing, nothing, GalleryOptions(svm_max_identities=2))


def latencies(
    galleries: dict[str, Gallery], vectors: dict[str, np.ndarray], calls: int, rng: np.random.Generator
) -> tuple[list[float], float, float]:
    """ms per Identify call (the facade looked up by collection name, as each request is), CPU ms per call
    (this process, all threads: not moved by other processes' load, as wall time is), and the share of
    calls whose top candidate is the face the query was made from."""
    names = sorted(galleries)
    faces = len(vectors[names[0]])
    picks = [(names[int(rng.integers(len(names)))], int(rng.integers(faces))) for _ in range(calls)]
    moved = {name: unit(vectors[name] + 0.035 * rng.standard_normal((faces, DIM))) for name in names}
    galleries[names[0]].identify_embedding(moved[names[0]][0].tolist())  # warm
    times, right = [], 0
    cpu0 = time.process_time()
    for name, face in picks:
        query = moved[name][face].tolist()
        t0 = time.perf_counter()
        answer = galleries[name].identify_embedding(query, top_k=1)
        times.append((time.perf_counter() - t0) * 1e3)
        candidates = answer.faces[0].candidates if answer.faces else []
        right += bool(candidates) and candidates[0].face_id == face + 1
    return times, (time.process_time() - cpu0) * 1e3 / calls, right / calls


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def identify_with_collections(work: Path, faces: int, collections: int, calls: int, rounds: int) -> None:
    home = str(work / "gallery.sqlite")
    Path(store_location(home, 2, 1)).parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(23)
    vectors: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for cid in range(1, collections + 1):
        vectors[f"c{cid}"] = unit(rng.standard_normal((faces, DIM)).astype(np.float32))
        fill(store_location(home, cid, 1), vectors[f"c{cid}"])
    out(f"  ({collections} stores of {faces:,} faces enrolled in {time.perf_counter() - t0:.1f} s)")
    # Rounds alternate the two deployments, so the machine's other load falls on both alike; the baseline
    # runs with only its collection open, the other with all of them.
    one: list[float] = []
    many: list[float] = []
    cpu = {"one": 0.0, "many": 0.0}
    right = {"one": 0.0, "many": 0.0}
    first = open_facade(store_location(home, 1, 1))
    try:
        for round_ in range(rounds):
            times, cpu_ms, share = latencies({"c1": first}, {"c1": vectors["c1"]}, calls // rounds, rng)
            one += times
            cpu["one"] += cpu_ms / rounds
            right["one"] += share / rounds
            t0, rss0 = time.perf_counter(), rss_mb()
            galleries = {"c1": first} | {
                f"c{cid}": open_facade(store_location(home, cid, 1)) for cid in range(2, collections + 1)
            }
            if round_ == 0:
                out(
                    f"  ({collections - 1} more facades opened in {time.perf_counter() - t0:.1f} s,"
                    f" +{rss_mb() - rss0:.0f} MB resident)"
                )
            try:
                times, cpu_ms, share = latencies(galleries, vectors, calls // rounds, rng)
            finally:
                for name, gallery in galleries.items():
                    if name != "c1":
                        gallery.close()
            many += times
            cpu["many"] += cpu_ms / rounds
            right["many"] += share / rounds
    finally:
        first.close()
    out(f"\n== (a) Identify by embedding, {calls:,} calls one at a time, SQLite + FAISS, in process ==")
    out(f"  {'deployment':<40} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'CPU ms':>7} {'top-1':>6}")
    rows = [
        (f"1 collection of {faces:,} faces (baseline)", one, "one"),
        (f"{collections} collections of {faces:,} faces each", many, "many"),
    ]
    for label, times, key in rows:
        out(
            f"  {label:<40} {percentile(times, 50):>8.3f} {percentile(times, 95):>8.3f}"
            f" {statistics.fmean(times):>8.3f} {cpu[key]:>7.3f} {right[key]:>6.3f}"
        )
    out(
        f"  ratio {collections} collections / 1: p50 {percentile(many, 50) / percentile(one, 50):.2f}x,"
        f" p95 {percentile(many, 95) / percentile(one, 95):.2f}x, CPU {cpu['many'] / cpu['one']:.2f}x"
    )


def on_disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def bytes_per_face(work: Path, faces: int, picture_kb: float) -> None:
    rng = np.random.default_rng(29)
    vectors = unit(rng.standard_normal((faces, DIM)).astype(np.float32))
    if picture_kb:
        payload = rng.bytes(int(picture_kb * 1024))
        pictures = [KeptPicture(payload, "image/jpeg", 320, 320, (80.0, 80.0, 160.0, 160.0))]
        what = f"a {picture_kb:g} KB payload as its kept picture"
    else:
        pictures = real_kept_pictures()
        what = f"its kept picture ({len(pictures)} real ones in turn)"
    picture_bytes = float(np.mean([len(pictures[i % len(pictures)].data) for i in range(faces)]))
    sizes = {}
    for label, kept in (("empty", None), ("bare", ()), ("kept", pictures)):
        directory = work / f"disk-{label}"
        directory.mkdir()
        location = str(directory / "gallery.sqlite")
        if kept is None:
            open_store(location, MODEL).close()
        else:
            fill(location, vectors, kept)
            open_facade(location).close()  # builds and saves the index beside the store, as a gallery does
        sizes[label] = on_disk(directory)
    bare = (sizes["bare"] - sizes["empty"]) / faces
    with_picture = (sizes["kept"] - sizes["empty"]) / faces
    out(f"\n== (b) bytes per face on disk, {faces:,} faces, SQLite store + its saved FAISS index ==")
    out(f"  without a kept picture (baseline)          {bare:>9,.0f} B")
    out(
        f"  with {what}: {with_picture:,.0f} B ({with_picture / bare:.1f}x); the pictures average"
        f" {picture_bytes:,.0f} B, so {with_picture - bare - picture_bytes:,.0f} B a face goes to storing them"
    )


FP32, INT8 = "facenet-keras-128", "facenet-keras-128-int8"


def reembed_vs_enrol(work: Path) -> None:
    import grpc

    from facerec import assets
    from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
    from facerec_app.supervisor import local_services

    fetched = assets.fetch(assets.facerec_home(os.environ))
    pictures = [
        (n, p.read_bytes())
        for split in ("train", "val")
        for n, p in assets.labelled_images(fetched.split(split))
    ]
    with (
        local_services(store=str(work / "served.sqlite")) as addresses,
        grpc.insecure_channel(addresses.gallery) as channel,
    ):
        stub = gallery_pb2_grpc.GalleryStub(channel)
        created = stub.CreateCollection(gallery_pb2.CreateCollectionRequest(name="bench"), timeout=30)
        start = created.contract
        # The first Enroll warms the channels and the models' first shapes; it is not counted.
        first, rest = pictures[0], pictures[1:]
        stub.Enroll(
            gallery_pb2.EnrollRequest(
                collection="bench", identity=first[0], images=[common_pb2.Image(data=first[1])]
            ),
            timeout=120,
        )
        t0 = time.perf_counter()
        for name, data in rest:
            stub.Enroll(
                gallery_pb2.EnrollRequest(
                    collection="bench", identity=name, images=[common_pb2.Image(data=data)]
                ),
                timeout=120,
            )
        enrol_s = time.perf_counter() - t0
        faces = stub.GetCollection(gallery_pb2.GetCollectionRequest(name="bench"), timeout=30).faces
        enrolled_here = faces - 1
        out(
            f"\n== (c) re-embedding beside enrolment, {faces} faces (of {len(pictures)} pictures), real services =="
        )
        out(f"  Enroll, one picture a call (baseline)        {enrolled_here / enrol_s:>7.1f} faces/s")
        enrol_rate = enrolled_here / enrol_s
        other_model = FP32 if start.model == INT8 else INT8
        other_detector = "retinaface" if start.detector == "mtcnn" else "mtcnn"
        # Under the same detector each face is cut again where it was found on its kept picture; under
        # another, that detector finds it on the kept picture first.
        targets = [
            (f"model {other_model}", gallery_pb2.EmbeddingContract(model=other_model)),
            (f"model {start.model}", gallery_pb2.EmbeddingContract(model=start.model)),
            (f"detector {other_detector}", gallery_pb2.EmbeddingContract(detector=other_detector)),
        ]
        for target, contract in targets:
            t0 = time.perf_counter()
            request = gallery_pb2.ReembedRequest(collection="bench", contract=contract)
            op = stub.Reembed(request, timeout=30)
            deadline = time.monotonic() + 300
            while not op.done and time.monotonic() < deadline:
                time.sleep(0.05)
                op = stub.GetOperation(gallery_pb2.GetOperationRequest(name=op.name), timeout=30)
            took = time.perf_counter() - t0
            if not op.done or op.HasField("error"):
                out(f"  Reembed to {target}: did not finish well: {op.error.message or 'timed out'}")
                continue
            carried = op.metadata.faces_total
            out(
                f"  Reembed to {target:<34} {carried / took:>7.1f} faces/s  ({carried / took / enrol_rate:.2f}x"
                f" enrolment; {carried} faces in {took:.1f} s, switch included)"
            )


def identify_on_milvus(work: Path, faces: int, collections: int, calls: int) -> None:
    import pymilvus.client.iterator.query_iterator  # noqa: F401 - its logger, quietened below

    import gallery.index_milvus as index_milvus
    from gallery.backend import BackendSettings, milvus_collection_for, open_backend
    from gallery.index_milvus import MilvusSettings
    from tests.support.engines import MilvusStandaloneServer

    # The reconciler's note as it fills each new collection, and pymilvus's about its iterator: not figures.
    for name in ["gallery", *(n for n in logging.root.manager.loggerDict if n.startswith("pymilvus"))]:
        logging.getLogger(name).setLevel(logging.ERROR)
    server = MilvusStandaloneServer()
    galleries: dict[str, Gallery] = {}
    try:
        milvus = MilvusSettings(server.uri, collection="bench", index_type="FLAT")
        home = str(work / "milvus" / "gallery.sqlite")
        Path(store_location(home, 2, 1)).parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(31)
        vectors: dict[str, np.ndarray] = {}
        t0 = time.perf_counter()
        nothing = _NoInference()
        for cid in range(1, collections + 1):
            vectors[f"c{cid}"] = unit(rng.standard_normal((faces, DIM)).astype(np.float32))
            location = store_location(home, cid, 1)
            fill(location, vectors[f"c{cid}"])
            # Opening creates the generation's Milvus collection and fills it from the store.
            backend = open_backend(
                BackendSettings(
                    location, MODEL, milvus=milvus, milvus_collection=milvus_collection_for(milvus, cid, 1)
                )
            )
            galleries[f"c{cid}"] = Gallery(backend, nothing, nothing, GalleryOptions(svm_max_identities=2))
        created_s = (time.perf_counter() - t0) / collections
        one, _, right_one = latencies({"c1": galleries["c1"]}, {"c1": vectors["c1"]}, calls, rng)
        many, _, right_many = latencies(galleries, vectors, calls, rng)
        index_milvus.READ_CONSISTENCY = "Strong"
        strong, _, _ = latencies({"c1": galleries["c1"]}, {"c1": vectors["c1"]}, max(20, calls // 20), rng)
        index_milvus.READ_CONSISTENCY = "Session"
    finally:
        for gallery in galleries.values():
            gallery.close()
        server.close()
    out(f"\n== (d) Identify by embedding on a Milvus standalone server, {calls:,} calls one at a time ==")
    out(f"  {'deployment':<44} {'p50 ms':>8} {'p95 ms':>8} {'top-1':>6}")
    for label, times, right in (
        (f"1 collection of {faces:,} faces (baseline)", one, right_one),
        (f"{collections} collections of {faces:,} faces each", many, right_many),
    ):
        out(f"  {label:<44} {percentile(times, 50):>8.2f} {percentile(times, 95):>8.2f} {right:>6.3f}")
    out(
        f"  {'the baseline read at Strong consistency':<44} {percentile(strong, 50):>8.2f} {percentile(strong, 95):>8.2f}"
    )
    out(
        f"  ratio {collections} collections / 1: p50 {percentile(many, 50) / percentile(one, 50):.2f}x;"
        f" Strong / Session: p50 {percentile(strong, 50) / percentile(one, 50):.1f}x;"
        f" {created_s:.1f} s to create and fill one Milvus collection of {faces:,} faces"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faces", type=int, default=1000, help="faces per collection")
    parser.add_argument("--collections", type=int, default=100)
    parser.add_argument("--calls", type=int, default=6000, help="Identify calls per deployment")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two deployments")
    parser.add_argument("--disk-faces", type=int, default=2000, help="faces enrolled for (b)")
    parser.add_argument(
        "--picture-kb", type=float, default=0.0, help="(b) with a payload of this size, not real pictures"
    )
    parser.add_argument("--skip-reembed", action="store_true", help="leave (c) out (no services started)")
    parser.add_argument("--milvus", type=int, default=0, help="(d): this many collections on a Milvus server")
    parser.add_argument("--milvus-calls", type=int, default=600, help="Identify calls per deployment in (d)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="facerec-bench-collections-") as tmp:
        work = Path(tmp)
        identify_with_collections(work, args.faces, args.collections, args.calls, args.rounds)
        bytes_per_face(work, args.disk_faces, args.picture_kb)
        if not args.skip_reembed:
            reembed_vs_enrol(work)
        if args.milvus:
            identify_on_milvus(work, args.faces, args.milvus, args.milvus_calls)


if __name__ == "__main__":
    main()

"""Detector throughput: Detect through gRPC at 1, 4 and 8 clients beside mtcnn's detect_faces in process.

    .venv/bin/python -m bench.detector            # 40 of the 5-celebrity pictures (about a minute)
    .venv/bin/python -m bench.detector --full     # all 118
    .venv/bin/python -m bench.detector --model retinaface   # the same with RetinaFace as the server's model
    .venv/bin/python -m bench.detector --cases    # both models side by side on the case sets (below)
    .venv/bin/python -m bench.detector --process  # the real detector process: CPU a picture, memory
    .venv/bin/python -m bench.detector --cpu      # in process, one model thread: CPU a picture at batch 1 and 8
    .venv/bin/python -m bench.detector --large    # 1600x1200 pictures: P-Net over strips beside whole levels

--cases makes its pictures at run time from the fetched data set (tests/support/faces.py, nothing kept):
the 118 pictures, group composites, faces cut by each edge of the frame, faces of 20-40 px and turned
faces. A face is "known" in a data-set picture when both models find it there (IoU >= 0.5; its true box
is the mean of theirs) and follows its picture through each change. Per model and case set: faces found
(IoU >= 0.4 with a known face), other detections ("false": no known face there, though a face the other
model missed counts here too), the mean IoU of the found ones, and ms per picture at batch 1 and 8.

Prints images/s and p50/p99 latency per row, the in-process baseline measured in the same run on the
same pictures, and the ratio. The server runs in this process (same cores as the clients), one picture
per request, so batching comes only from merging concurrent requests.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from detector_service.config import MODELS

DESIGN_MS_PER_IMAGE = 77.0  # design.md: MTCNN one at a time on a 2-core machine
# A detection finds a known face when their boxes overlap by this much (IoU); half-cut faces' boxes are
# compared clipped to the frame, as the detector reports them.
MIN_IOU = 0.4


def _pictures(limit: int | None) -> tuple[list[bytes], list[np.ndarray]]:
    from facerec import assets
    from facerec.images import decode_image

    fetched = assets.fetch(assets.facerec_home(os.environ))
    paths = [p for split in ("train", "val") for _, p in assets.labelled_images(fetched.split(split))]
    paths = paths[:limit] if limit else paths
    datas = [p.read_bytes() for p in paths]
    return datas, [decode_image(d) for d in datas]


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _grpc_run(address: str, datas: Sequence[bytes], clients: int) -> tuple[float, list[float], int]:
    """(seconds, per-request latencies, faces) for all pictures spread over `clients` threads."""
    from bench.clients import closed_loop
    from facerec.v1 import common_pb2, detector_pb2, detector_pb2_grpc

    def detect(stub: Any, data: bytes) -> int:
        request = detector_pb2.DetectRequest(images=[common_pb2.Image(data=data)])
        return len(stub.Detect(request, timeout=120).results[0].faces)

    seconds, latencies, faces = closed_loop(address, detector_pb2_grpc.DetectorStub, datas, clients, detect)
    return seconds, latencies, int(faces)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="all 118 pictures (default: the first 40)")
    parser.add_argument("--clients", default="1,4,8", help="comma-separated client counts")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument(
        "--pad-sizes", action="store_true", help="the Detector's padded P-Net (see config.py)"
    )
    parser.add_argument(
        "--runtime", choices=("onnxruntime", "tensorflow"), default="onnxruntime", help="the service's nets"
    )
    parser.add_argument(
        "--model", choices=MODELS, default="mtcnn", help="the server's default detector model"
    )
    parser.add_argument("--cases", action="store_true", help="both models on the case sets, side by side")
    parser.add_argument(
        "--process", action="store_true", help="the real detector process per model: CPU a picture, memory"
    )
    parser.add_argument(
        "--cpu", action="store_true", help="in process, one model thread: CPU ms a picture at batch 1 and 8"
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help="MTCNN on 1600x1200 pictures: P-Net over strips beside whole levels",
    )
    parser.add_argument("--large-child", choices=("whole", "strips"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.large_child:
        return large_child(args.large_child)
    if args.large:
        return large_figures()
    if args.cpu:
        return cpu_figures(args.model)
    if args.cases:
        return compare_models()
    if args.process:
        return process_figures()

    from facerec.tfconfig import pin_threads, quiet_tensorflow

    quiet_tensorflow()
    pin_threads(2, 1)
    from mtcnn import MTCNN

    from detector_service.batcher import BatchingDetector
    from detector_service.config import Settings
    from detector_service.detector import DetectOptions, Detector, DetectorModel
    from detector_service.service import SERVICE_NAME, build_detector_server
    from facerec.server import Health

    datas, pictures = _pictures(None if args.full else 40)
    n = len(pictures)
    mtcnn = MTCNN()
    settings = Settings(
        host="127.0.0.1",
        port=0,
        max_batch=args.max_batch,
        max_queue=64,
        runtime=args.runtime,
        pad_sizes=args.pad_sizes,
        model=args.model,
        models_dir=Settings.from_env(os.environ).models_dir,
    )
    detector = Detector.load(settings)
    detector.warm_up()
    mtcnn.detect_faces(pictures[0])

    ref_faces: list[int] = []
    ref_s = _timed(lambda: ref_faces.extend(len(mtcnn.detect_faces(p)) for p in pictures))
    ref_ips = n / ref_s

    own_faces: list[int] = []

    def batched() -> None:
        for start in range(0, n, args.max_batch):
            batch = pictures[start : start + args.max_batch]
            own_faces.extend(
                len(f) for f in detector.detect(batch, DetectOptions(model=DetectorModel(args.model)))
            )

    own_s = _timed(batched)

    batching = BatchingDetector(detector, max_batch=settings.max_batch, max_delay_ms=settings.max_delay_ms)
    health = Health([SERVICE_NAME])
    server, port = build_detector_server(settings, batching, health)
    server.start()
    address = f"127.0.0.1:{port}"
    _grpc_run(address, datas[:4], 1)

    out = sys.stdout.write
    out(
        f"{n} pictures, {args.model} (nets on {args.runtime}), 2 threads; baseline = mtcnn.MTCNN().detect_faces "
        "one picture at a time, same process\n"
    )
    out(
        f"design.md figure: ≈{DESIGN_MS_PER_IMAGE:.0f} ms/picture one at a time ({1000 / DESIGN_MS_PER_IMAGE:.1f}/s)\n\n"
    )
    out(f"{'what':<38}{'images/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'faces':>7}{'× baseline':>12}\n")
    out(
        f"{'baseline detect_faces, 1 at a time':<38}{ref_ips:>9.2f}{1000 / ref_ips:>9.0f}{'':>9}{sum(ref_faces):>7}{1.0:>12.2f}\n"
    )
    own_ips = n / own_s
    out(
        f"{f'Detector.detect, batches of {args.max_batch}':<38}{own_ips:>9.2f}{1000 / own_ips:>9.0f}{'':>9}"
        f"{sum(own_faces):>7}{own_ips / ref_ips:>12.2f}\n"
    )
    for clients in [int(c) for c in args.clients.split(",")]:
        before = batching.batcher.stats
        seconds, latencies, faces = _grpc_run(address, datas, clients)
        after = batching.batcher.stats
        ips = n / seconds
        p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
        per_call = (after.items - before.items) / max(1, after.calls - before.calls)
        label = f"gRPC Detect, {clients} client(s) ({per_call:.1f}/call)"
        out(f"{label:<38}{ips:>9.2f}{p50:>9.0f}{p99:>9.0f}{faces:>7}{ips / ref_ips:>12.2f}\n")
    server.stop(0)
    batching.close()
    return 0


def _timed_detect(stub: Any, data: bytes) -> tuple[float, int]:
    """(seconds, faces) of one Detect of one picture, crops on."""
    from facerec.v1 import common_pb2, detector_pb2

    request = detector_pb2.DetectRequest(
        images=[common_pb2.Image(data=data)], options=detector_pb2.DetectOptions(return_crops=True)
    )
    start = time.perf_counter()
    reply = stub.Detect(request, timeout=60)
    return time.perf_counter() - start, len(reply.results[0].faces)


def process_figures() -> int:
    """Each model served by a real detector process (one model thread, as on 2 shared cores): the 118
    pictures one per Detect with crops at 1 and 4 clients; the process's CPU seconds a picture (from
    /proc, so other load on the machine does not move it), p50 latency, resident memory after."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import grpc

    from facerec.v1 import detector_pb2_grpc
    from tests.support.servers import running

    datas, _ = _pictures(None)
    tick = os.sysconf("SC_CLK_TCK")

    def cpu_s(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    def rss_mib(pid: int) -> int:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) // 1024

    out = sys.stdout.write
    out(f"{len(datas)} pictures, one per Detect (crops on); detector process with 1 model thread\n\n")
    out(
        f"{'model':<12}{'clients':>8}{'CPU ms/pic':>12}{'wall ms/pic':>13}{'p50 ms':>8}{'faces':>7}{'RSS MiB':>9}\n"
    )
    for model in MODELS:
        env = {"DETECTOR_MODEL": model, "DETECTOR_INTRA_OP_THREADS": "1"}
        with (
            running("detector_service", env=env) as service,
            grpc.insecure_channel(service.address) as channel,
        ):
            detect = functools.partial(_timed_detect, detector_pb2_grpc.DetectorStub(channel))
            for data in datas[:8]:
                detect(data)
            pid = service.process.pid
            for clients in (1, 4):
                cpu0, wall0 = cpu_s(pid), time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    results = list(pool.map(detect, datas))
                wall, cpu = time.perf_counter() - wall0, cpu_s(pid) - cpu0
                p50 = float(np.percentile([r[0] for r in results], 50)) * 1000
                out(
                    f"{model:<12}{clients:>8}{cpu * 1000 / len(datas):>12.1f}{wall * 1000 / len(datas):>13.1f}"
                    f"{p50:>8.0f}{sum(r[1] for r in results):>7}{rss_mib(pid):>9}\n"
                )
    return 0


def cpu_figures(model: str, repeats: int = 3) -> int:
    """Detector.detect on the 118 pictures (crops on) with one model thread, as `facerec serve` runs it on
    2 cores: this process's CPU seconds a picture at batch 1 and 8 (CPU, not wall time: the machine's other
    load barely moves it), best and median of `repeats` passes, and the time per stage of the last pass."""
    from detector_service.config import Settings
    from detector_service.detector import DetectOptions, Detector, DetectorModel

    _, pictures = _pictures(None)
    settings = Settings.from_env({**os.environ, "DETECTOR_INTRA_OP_THREADS": "1"})
    detector = Detector.load(settings)
    detector.warm_up()
    options = DetectOptions(return_crops=True, model=DetectorModel(model))
    out = sys.stdout.write
    out(f"{len(pictures)} pictures, {model}, 1 model thread, crops on; CPU ms a picture ({repeats} passes)\n")
    for batch in (1, 8):
        passes = []
        for _ in range(repeats):
            detector.timings.clear()
            start = time.process_time()
            for first in range(0, len(pictures), batch):
                detector.detect(pictures[first : first + batch], options)
            passes.append((time.process_time() - start) * 1000 / len(pictures))
        stages = detector.timings.snapshot()
        walls = "  ".join(
            f"{key[:-2]} {stages[key] * 1000 / len(pictures):.1f}"
            for key in sorted(stages)
            if key.endswith("_s")
        )
        out(
            f"batch {batch}: best {min(passes):.1f}  median {float(np.median(passes)):.1f}  (wall ms a picture: {walls})\n"
        )
    return 0


def large_figures(rounds: int = 2) -> int:
    """MTCNN on six of the pictures enlarged to 1600x1200 (the largest a picture is searched at), one model
    thread: P-Net over strips (detector_service.strips, as served) beside P-Net on whole pyramid levels, each
    in a fresh process (peak memory is a process's), alternating; CPU ms a picture and peak resident MiB."""
    import subprocess

    out = sys.stdout.write
    out("MTCNN, 6 pictures enlarged to 1600x1200, 1 model thread: CPU ms a picture, peak RSS MiB, faces\n")
    for _ in range(rounds):
        for mode in ("whole", "strips"):
            done = subprocess.run(
                [sys.executable, "-m", "bench.detector", "--large-child", mode],
                capture_output=True,
                text=True,
                check=True,
            )
            out(done.stdout.strip().splitlines()[-1] + "\n")
    return 0


def large_child(mode: str) -> int:
    import resource

    import cv2

    from detector_service import strips
    from detector_service.config import Settings
    from detector_service.detector import DetectOptions, Detector, DetectorModel

    if mode == "whole":  # one strip as large as any level: P-Net sees each level whole
        strips.STRIP_CELLS = 10**12
    _, pictures = _pictures(6)
    sizes = [(1200, 1600) if p.shape[0] > p.shape[1] else (1600, 1200) for p in pictures]
    large = [
        np.asarray(cv2.resize(p, size, interpolation=cv2.INTER_CUBIC), np.uint8)
        for p, size in zip(pictures, sizes, strict=True)
    ]
    detector = Detector.load(Settings.from_env({**os.environ, "DETECTOR_INTRA_OP_THREADS": "1"}))
    options = DetectOptions(model=DetectorModel.MTCNN)
    detector.detect(large[:1], options)
    start = time.process_time()
    faces = [len(detector.detect([picture], options)[0]) for picture in large]
    cpu = (time.process_time() - start) * 1000 / len(large)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    sys.stdout.write(f"{mode:<7} CPU {cpu:6.0f} ms  peak RSS {peak:5d} MiB  faces {faces}\n")
    return 0


def compare_models() -> int:
    """Both models on the case sets: faces found, false detections, box agreement, ms a picture at batch 1 and 8."""
    from detector_service.config import Settings
    from detector_service.detector import DetectOptions, Detector, DetectorModel
    from tests.support.faces import corners, known_faces, make_cases, match

    _, pictures = _pictures(None)
    detector = Detector.load(Settings.from_env(os.environ))
    detector.warm_up()

    def boxes(pictures: Sequence[np.ndarray], model: DetectorModel, batch: int) -> list[np.ndarray]:
        found: list[np.ndarray] = []
        for start in range(0, len(pictures), batch):
            batch_of = pictures[start : start + batch]
            found.extend(corners(faces) for faces in detector.detect(batch_of, DetectOptions(model=model)))
        return found

    truths = known_faces(
        boxes(pictures, DetectorModel.MTCNN, 1), boxes(pictures, DetectorModel.RETINAFACE, 1)
    )
    cases = make_cases(pictures, truths)
    out = sys.stdout.write
    out(
        f"case sets made from the {len(pictures)} pictures, {sum(len(t) for t in truths)} known faces "
        f"(found by both models); found = IoU >= {MIN_IOU} with a known face\n\n"
    )
    out(f"{'set':<10}{'pictures':>9}{'faces':>7}  {'model':<11}{'found':>7}{'%':>6}{'false':>7}{'IoU':>6}")
    out(f"{'ms b1':>8}{'ms b8':>8}\n")
    for name, made in cases.items():
        shots = [c.picture for c in made]
        faces = sum(len(c.truth) for c in made)
        for model in DetectorModel:
            start = time.perf_counter()
            found = boxes(shots, model, 1)
            one = (time.perf_counter() - start) * 1000 / len(shots)
            start = time.perf_counter()
            boxes(shots, model, 8)
            eight = (time.perf_counter() - start) * 1000 / len(shots)
            pairs = [match(c.truth, f, MIN_IOU) for c, f in zip(made, found, strict=True)]
            hit = sum(len(p) for p in pairs)
            false = sum(len(f) for f in found) - hit
            mean_iou = np.mean([x for p in pairs for _, _, x in p]) if hit else 0.0
            out(
                f"{name:<10}{len(shots):>9}{faces:>7}  {model.value:<11}{hit:>7}{100 * hit / faces:>6.1f}{false:>7}"
            )
            out(f"{mean_iou:>6.2f}{one:>8.1f}{eight:>8.1f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

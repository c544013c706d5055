"""The whole gallery process killed with SIGKILL mid-write, 20 times: nothing acknowledged is lost.

Each cycle starts `python -m gallery` on the same store, checks what the previous cycle left (every
acknowledged face is there, SQLite's integrity_check passes, the index holds exactly the store's
faces), then lets four clients enroll concurrently and kills the process at a random moment. Faces
are enrolled as embeddings, so no detector or embedder is needed (their addresses are dead).
"""

from __future__ import annotations

import random
import socket
import sqlite3
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from tests.support.identity_pages import all_faces
from tests.support.servers import Running, start_service

CYCLES = 20
CLIENTS = 4
MODEL = "facenet-keras-128"


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _start(store: Path, home: Path, dead: str) -> Running:
    args = ["--store", str(store), "--detector", dead, "--embedder", dead, "--model", MODEL]
    return start_service("gallery", args, env={"FACEREC_HOME": str(home)}, timeout_s=180)


def _enroll_until_refused(
    address: str, client: int, seed: int, acknowledged: dict[int, str], lock, failures: list[str]
) -> None:
    """Enrolls two random faces per call until the server is gone; records every acknowledged face."""
    try:
        _enroll(address, client, seed, acknowledged, lock)
    except AssertionError as exc:
        failures.append(str(exc))


def _enroll(address: str, client: int, seed: int, acknowledged: dict[int, str], lock) -> None:
    rng = np.random.default_rng(seed)
    identity = f"client-{client}"
    with grpc.insecure_channel(address) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        while True:
            vectors = rng.normal(size=(2, 128))
            request = gallery_pb2.EnrollRequest(
                identity=identity, embeddings=[common_pb2.Embedding(values=list(v)) for v in vectors]
            )
            try:
                reply = stub.Enroll(request, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, (exc.code(), exc.details())
                return
            with lock:
                for result in reply.results:
                    assert result.outcome == gallery_pb2.ENROLLED, result
                    acknowledged[result.face_id] = identity


def _check(address: str, store: Path, acknowledged: dict[int, str]) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        stats = stub.Stats(gallery_pb2.StatsRequest(), timeout=10)
        assert stats.index_size == stats.faces
        present: dict[int, str] = {}
        for identity in sorted(set(acknowledged.values())):
            present |= {face.face_id: face.identity for face in all_faces(stub, identity, 10)}
        lost = {face_id for face_id, identity in acknowledged.items() if present.get(face_id) != identity}
        assert not lost, f"{len(lost)} acknowledged faces lost, e.g. {sorted(lost)[:5]}"
        assert stats.faces == len(present)  # every face belongs to one of the clients' identities
    # A second reader beside the running gallery (WAL allows it), read-only.
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    return stats.faces


def test_kill_9_during_concurrent_enrolls_loses_nothing_acknowledged(tmp_path: Path) -> None:
    store, dead = tmp_path / "gallery.sqlite", _dead_address()
    chance = random.Random(7)
    acknowledged: dict[int, str] = {}
    lock = threading.Lock()
    counts: list[int] = []
    failures: list[str] = []
    for cycle in range(CYCLES + 1):
        gallery = _start(store, tmp_path, dead)
        try:
            counts.append(_check(gallery.address, store, acknowledged))
            if cycle == CYCLES:
                break
            clients = [
                threading.Thread(
                    target=_enroll_until_refused,
                    args=(gallery.address, c, cycle * CLIENTS + c, acknowledged, lock, failures),
                    daemon=True,
                )
                for c in range(CLIENTS)
            ]
            for client in clients:
                client.start()
            time.sleep(chance.uniform(0.05, 0.6))
            gallery.process.kill()  # SIGKILL: no handler, no flush, no checkpoint
            gallery.process.wait(10)
            for client in clients:
                client.join(30)
                assert not client.is_alive()
            assert not failures, failures
        finally:
            gallery.stop()
    # The test wrote something in most cycles, and the store only grew.
    assert counts == sorted(counts) and counts[-1] >= len(acknowledged) > CYCLES

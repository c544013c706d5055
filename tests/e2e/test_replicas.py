"""Two gallery processes (replicas) on one real PostgreSQL database, each with its own FAISS index kept
current from the store's change log: what one does, the other serves.

Faces are enrolled as embeddings, so no detector or embedder is needed (their addresses are dead). A
replica's view is polled through its own RPCs until it shows the change; the bound is generous for a
loaded CI machine (the figure itself is measured by bench/gallery_scale.py --replicas).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from tests.support.identity_pages import all_faces
from tests.support.replicas import Replica, identified_as, start_replica, unit_vectors, wait_until


@pytest.fixture
def pair(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    a = Replica(start_replica(postgres_url, tmp_path))
    try:
        b = Replica(start_replica(postgres_url, tmp_path))
    except BaseException:
        a.close()
        raise
    yield a, b
    a.close()
    b.close()


def test_enrolled_through_one_identified_through_the_other_and_removed_likewise(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    v = unit_vectors(3, seed=1)
    a.enroll("alice", v[:2])
    wait_until(lambda: identified_as(b, v[0]) == "alice", "alice enrolled through A, identified through B")
    (bob,) = b.enroll("bob", v[2:])
    wait_until(lambda: identified_as(a, v[2]) == "bob", "bob enrolled through B, identified through A")

    b.stub.RemoveIdentity(gallery_pb2.RemoveIdentityRequest(identity="alice"), timeout=30)
    wait_until(lambda: identified_as(a, v[0]) == "", "alice removed through B, gone through A")
    a.stub.RemoveFace(gallery_pb2.RemoveFaceRequest(face_id=bob), timeout=30)
    wait_until(lambda: b.stats().index_size == 0, "bob's face removed through A, gone from B's index")
    assert identified_as(b, v[2]) == ""


def test_train_through_one_replica_is_served_by_the_other(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    for i, name in enumerate(["ann", "ben", "cyd"]):
        a.enroll(name, unit_vectors(4, seed=10 + i))
    wait_until(lambda: b.stats().index_size == 12, "A's enrolls in B's index")
    # B has no SVM of this version: it has fit none, and nobody trained.
    assert b.stats().classifier == "svm" and b.stats().classifier_stale
    a.stub.Train(gallery_pb2.TrainRequest(), timeout=60)
    # B adopts A's fit from the store: fresh without B ever identifying (which would fit its own).
    wait_until(lambda: not b.stats().classifier_stale, "A's trained SVM served by B")
    reply = b.identify(unit_vectors(4, seed=11)[0])
    assert reply.method == "svm" and reply.faces[0].identity == "ben"


def _enroll_until_refused(replica_address: str, client: int, acknowledged: dict[int, str], lock) -> None:
    rng = np.random.default_rng(client)
    identity = f"client-{client}"
    with grpc.insecure_channel(replica_address) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        for _ in range(400):
            request = gallery_pb2.EnrollRequest(
                identity=identity,
                embeddings=[common_pb2.Embedding(values=list(v)) for v in rng.normal(size=(2, 128))],
            )
            try:
                reply = stub.Enroll(request, timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, (exc.code(), exc.details())
                return
            with lock:
                for result in reply.results:
                    acknowledged[result.face_id] = identity


def test_kill_9_of_a_replica_during_concurrent_enrolls_loses_no_acknowledged_face(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    acknowledged: dict[int, str] = {}
    lock = threading.Lock()
    clients = [
        threading.Thread(target=_enroll_until_refused, args=(r.service.address, c, acknowledged, lock))
        for c, r in enumerate([a, b, a, b])
    ]
    for t in clients:
        t.start()
    wait_until(lambda: len(acknowledged) >= 40, "enrolls acknowledged before the kill")
    time.sleep(random.uniform(0.0, 0.3))  # kill at a random point of the stream, not a fixed one
    a.service.stop(signal.SIGKILL)
    for t in clients:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in clients)
    # Everything acknowledged by either replica is in the store and in the survivor's index.
    present: dict[int, str] = {}
    for identity in sorted(set(acknowledged.values())):
        present |= {face.face_id: face.identity for face in all_faces(b.stub, identity)}
    lost = {face_id for face_id, identity in acknowledged.items() if present.get(face_id) != identity}
    assert not lost, f"{len(lost)} acknowledged faces lost"
    wait_until(lambda: b.stats().index_size == b.stats().faces, "the survivor's index level with the store")
    assert b.stats().faces >= len(acknowledged)


def test_replicas_reconnect_by_themselves_after_postgresql_restarts(
    pair: tuple[Replica, Replica], postgres_cluster
) -> None:
    a, b = pair
    v = unit_vectors(2, seed=3)
    a.enroll("before", v[:1])
    wait_until(lambda: identified_as(b, v[0]) == "before", "enrolled before the restart, seen by B")
    postgres_cluster.stop()
    postgres_cluster.start()
    a.enroll("after", v[1:])  # A's connection died with the server: it reconnects within this call
    wait_until(lambda: identified_as(b, v[1]) == "after", "enrolled after the restart, seen by B")
    assert b.stats().faces == 2

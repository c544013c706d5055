"""Re-embedding on the real services: a collection of the 5-celebrity train set moves fp32 -> int8 -> fp32
from its kept pictures and still names every train and val picture right after each move; a gallery killed
with SIGKILL in the middle of a re-embed is restarted and finishes it, never half-switched."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import pytest

from facerec.v1 import common_pb2, gallery_pb2, gallery_pb2_grpc
from tests.support.servers import Running, start_service

FP32 = "facenet-keras-128"
INT8 = "facenet-keras-128-int8"
COLLECTION = "celebs"


def _start(store: Path, home: Path, services: tuple[Running, Running], **env: str) -> Running:
    detector, embedder = services
    args = ["--store", str(store), "--detector", detector.address, "--embedder", embedder.address]
    return start_service("gallery", args, env={"FACEREC_HOME": str(home), **env}, timeout_s=180)


def _image(path: Path) -> common_pb2.Image:
    return common_pb2.Image(data=path.read_bytes())


def _create(stub: gallery_pb2_grpc.GalleryStub) -> gallery_pb2.Collection:
    contract = gallery_pb2.EmbeddingContract(model=FP32)
    return stub.CreateCollection(
        gallery_pb2.CreateCollectionRequest(name=COLLECTION, contract=contract), timeout=30
    )


def _enroll(stub: gallery_pb2_grpc.GalleryStub, train: list[tuple[str, Path]]) -> int:
    """Enrolls each train picture's largest face; returns how many faces were stored (a picture or two of
    the set holds no face MTCNN finds, as in the demo)."""
    enrolled = 0
    for name, path in train:
        reply = stub.Enroll(
            gallery_pb2.EnrollRequest(collection=COLLECTION, identity=name, images=[_image(path)]),
            timeout=120,
        )
        outcome = reply.results[0].outcome
        assert outcome in (gallery_pb2.ENROLLED, gallery_pb2.MULTIPLE_FACES, gallery_pb2.NO_FACE), reply
        enrolled += outcome != gallery_pb2.NO_FACE
    assert enrolled >= len(train) - 3
    return enrolled


def _accuracy(stub: gallery_pb2_grpc.GalleryStub, pictures: list[tuple[str, Path]]) -> float:
    """The demo's figure: the largest face of each picture with a face named right."""
    right = found = 0
    for name, path in pictures:
        reply = stub.Identify(
            gallery_pb2.IdentifyRequest(collection=COLLECTION, image=_image(path)), timeout=120
        )
        if reply.faces:
            found += 1
            largest = max(reply.faces, key=lambda f: f.box.width * f.box.height)
            right += largest.identity == name
    assert found >= len(pictures) - 2
    return right / found


def _wait(stub: gallery_pb2_grpc.GalleryStub, name: str, timeout_s: float = 300) -> gallery_pb2.Operation:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        op = stub.GetOperation(gallery_pb2.GetOperationRequest(name=name), timeout=30)
        if op.done:
            return op
        time.sleep(0.2)
    raise AssertionError(f"{name} did not finish in {timeout_s} s")


def _reembed(stub: gallery_pb2_grpc.GalleryStub, model: str) -> gallery_pb2.Operation:
    contract = gallery_pb2.EmbeddingContract(model=model)
    started = stub.Reembed(gallery_pb2.ReembedRequest(collection=COLLECTION, contract=contract), timeout=60)
    assert started.name.startswith("operations/") and not started.done
    return _wait(stub, started.name)


@pytest.mark.timeout(900)
def test_a_collection_moves_fp32_to_int8_and_back_and_still_names_everyone(
    inference_services, train_images, val_images, tmp_path: Path
) -> None:
    gallery = _start(tmp_path / "gallery.sqlite", tmp_path, inference_services)
    try:
        with grpc.insecure_channel(gallery.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            created = _create(stub)
            assert created.contract.model == FP32 and created.state == gallery_pb2.COLLECTION_READY
            enrolled = _enroll(stub, train_images)
            before = stub.GetCollection(gallery_pb2.GetCollectionRequest(name=COLLECTION), timeout=30)
            assert before.faces == enrolled and before.faces_without_picture == 0
            assert _accuracy(stub, train_images) == 1.0 and _accuracy(stub, val_images) == 1.0
            for model in (INT8, FP32):
                op = _reembed(stub, model)
                assert not op.HasField("error") or op.error.code == 0, op.error
                assert op.response.contract.model == model and op.response.faces == before.faces
                assert op.metadata.faces_done == op.metadata.faces_total == before.faces
                assert not op.metadata.failed_faces
                stats = stub.Stats(gallery_pb2.StatsRequest(collection=COLLECTION), timeout=30)
                assert stats.model == model and stats.contract.model == model
                assert _accuracy(stub, train_images) == 1.0, model
                assert _accuracy(stub, val_images) == 1.0, model
            # The default collection was never touched.
            assert stub.Stats(gallery_pb2.StatsRequest(), timeout=30).faces == 0
    finally:
        gallery.stop()


@pytest.mark.timeout(900)
def test_a_gallery_killed_during_a_reembed_finishes_it_after_a_restart(
    inference_services, train_images, val_images, tmp_path: Path
) -> None:
    store = tmp_path / "gallery.sqlite"
    # One face per step, and a dead owner's operation taken over after 2 s: the kill lands mid-way.
    env = {"GALLERY_REEMBED_BATCH": "1", "GALLERY_REEMBED_STALE_S": "2"}
    gallery = _start(store, tmp_path, inference_services, **env)
    try:
        with grpc.insecure_channel(gallery.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            _create(stub)
            # Train and val: about 40 faces at one a step, so the kill lands well before the end.
            enrolled = _enroll(stub, train_images + val_images)
            contract = gallery_pb2.EmbeddingContract(model=INT8)
            started = stub.Reembed(
                gallery_pb2.ReembedRequest(collection=COLLECTION, contract=contract), timeout=60
            )
            deadline = time.monotonic() + 120
            while True:
                op = stub.GetOperation(gallery_pb2.GetOperationRequest(name=started.name), timeout=30)
                assert not op.done, "the re-embed ended before the kill: nothing was tested"
                if op.metadata.faces_done >= 2:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.02)
        os.kill(gallery.process.pid, signal.SIGKILL)
        gallery.process.wait(timeout=30)
        gallery.stop()
        gallery = _start(store, tmp_path, inference_services, **env)
        with grpc.insecure_channel(gallery.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            # Until it switches, the old vectors serve: fp32, every face.
            collection = stub.GetCollection(gallery_pb2.GetCollectionRequest(name=COLLECTION), timeout=30)
            if collection.state == gallery_pb2.COLLECTION_REEMBEDDING:
                assert collection.contract.model == FP32 and collection.faces == enrolled
            op = _wait(stub, started.name)
            assert op.response.contract.model == INT8 and not op.metadata.failed_faces
            collection = stub.GetCollection(gallery_pb2.GetCollectionRequest(name=COLLECTION), timeout=30)
            assert collection.faces == enrolled and collection.faces_without_picture == 0
            assert collection.state == gallery_pb2.COLLECTION_READY
            assert _accuracy(stub, val_images) == 1.0
    finally:
        gallery.stop()

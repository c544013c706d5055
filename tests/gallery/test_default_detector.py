"""Which detector a deployment's collections get, and whose thresholds they serve, through a real gallery
process: a new deployment is on RetinaFace with RetinaFace's shipped points; a gallery made before
collections (every face MTCNN's) stays on MTCNN with MTCNN's; a collection created on MTCNN gets MTCNN's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from facerec.calibration import default_calibration
from facerec.v1 import gallery_pb2, gallery_pb2_grpc
from gallery.config import DEFAULT_DETECTOR
from tests.gallery.test_store_upgrade import old_sqlite_gallery, unit_vectors
from tests.support.servers import Running, dead_address, running

MODEL = "facenet-keras-128"  # the model the old gallery holds; the fresh one is told it (--model)


@contextmanager
def serve(store: Path, *extra: str) -> Iterator[Running]:
    """A gallery on `store` whose detector and embedder are down (it needs neither to open its collections)."""
    with dead_address() as nowhere:
        args = ["--store", str(store), "--detector", nowhere, "--embedder", nowhere, "--model", MODEL, *extra]
        with running("gallery", args) as gallery:
            yield gallery


def default_collection(address: str) -> gallery_pb2.Collection:
    with grpc.insecure_channel(address) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        return stub.GetCollection(gallery_pb2.GetCollectionRequest(name="default"), timeout=10)


def assert_shipped(collection: gallery_pb2.Collection, detector: str) -> None:
    shipped = default_calibration(MODEL, detector)
    assert collection.contract.detector == detector
    assert collection.threshold == pytest.approx(shipped.threshold, abs=1e-6)
    assert collection.identification_threshold == pytest.approx(shipped.identification_threshold, abs=1e-6)
    assert collection.operating_point == "far_1e-3"


def test_a_new_deployment_is_on_retinaface_with_its_points(tmp_path: Path) -> None:
    assert DEFAULT_DETECTOR == "retinaface"
    with serve(tmp_path / "gallery.sqlite") as gallery:
        assert_shipped(default_collection(gallery.address), "retinaface")
    # RetinaFace's points are not MTCNN's: far_1e-3 sits further out on its crops.
    assert default_calibration(MODEL, "retinaface").threshold > default_calibration(MODEL, "mtcnn").threshold


def test_a_gallery_made_before_collections_stays_on_mtcnn(tmp_path: Path) -> None:
    store = tmp_path / "old.sqlite"
    old_sqlite_gallery(store, unit_vectors(4))
    with serve(store) as gallery:
        collection = default_collection(gallery.address)
        assert_shipped(collection, "mtcnn")
        assert collection.faces == 3
    # Recorded once: the next start finds the catalog and keeps it, whatever the deployment's default.
    with serve(store, "--detector-model", "retinaface") as gallery:
        assert_shipped(default_collection(gallery.address), "mtcnn")


def test_a_deployment_may_keep_mtcnn_and_then_serves_mtcnns_points(tmp_path: Path) -> None:
    with serve(tmp_path / "gallery.sqlite", "--detector-model", "mtcnn") as gallery:
        assert_shipped(default_collection(gallery.address), "mtcnn")
        with grpc.insecure_channel(gallery.address) as channel:
            stub = gallery_pb2_grpc.GalleryStub(channel)
            contract = gallery_pb2.EmbeddingContract(detector="retinaface")
            created = stub.CreateCollection(
                gallery_pb2.CreateCollectionRequest(name="crowd", contract=contract), timeout=10
            )
            assert created.contract.detector == "retinaface"
            shown = stub.GetCollection(gallery_pb2.GetCollectionRequest(name="crowd"), timeout=10)
            assert_shipped(shown, "retinaface")


def test_thresholds_are_shipped_per_detector_for_both_precisions() -> None:
    for model in ("facenet-keras-128", "facenet-keras-128-int8"):
        mtcnn, retinaface = default_calibration(model, "mtcnn"), default_calibration(model, "retinaface")
        assert default_calibration(model) == mtcnn
        assert retinaface.threshold != mtcnn.threshold
        assert {p.name for p in retinaface.points} == {p.name for p in mtcnn.points}
        assert np.all([0 < p.threshold < 1.4 for p in retinaface.points])
    # A model with no shipped points gets fp32's, on either detector.
    assert (
        default_calibration("another-model", "retinaface").points
        == default_calibration("another-model").points
    )

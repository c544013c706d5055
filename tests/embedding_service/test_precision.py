"""int8 and fp32 vectors never mix: each precision has its own model name, thresholds and gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding_service.embedder import Embedder, model_name
from embedding_service.quantize import CalibrationSet, CalibrationSetError
from facerec.calibration import CalibrationSource, save_calibration
from facerec.errors import Precondition
from facerec.v1 import embedding_pb2
from gallery.backend import open_gallery
from gallery.clients import EmbedderClient
from gallery.results import EnrollOutcome
from gallery.rows import NewFace
from gallery.store import Store
from tests.support.embedding import FakeInfer, crop_input, make_settings, serve

FP32, INT8 = model_name("fp32"), model_name("int8")


def crops(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, size=(160, 160, 3), dtype=np.uint8) for _ in range(n)]


def test_each_precision_has_its_own_name_and_thresholds(tmp_path: Path) -> None:
    assert (FP32, INT8) == ("facenet-keras-128", "facenet-keras-128-int8")
    path = tmp_path / "calibration.json"
    save_calibration(path, FP32, 0.93, identification_threshold=0.8)
    assert CalibrationSource(path, INT8).current().source == "default"
    save_calibration(path, INT8, 0.91, identification_threshold=0.79)
    assert CalibrationSource(path, INT8).current().threshold == pytest.approx(0.91)
    assert CalibrationSource(path, FP32).current().threshold == pytest.approx(0.93)


def test_model_info_and_vectors_name_the_precision(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    save_calibration(settings.calibration_path, FP32, 0.93)
    save_calibration(settings.calibration_path, INT8, 0.91)
    with serve(settings, Embedder(FakeInfer(), "fake", precision="int8")) as served:
        info = served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=10)
        reply = served.stub.Embed(embedding_pb2.EmbedRequest(faces=[crop_input(crops(1)[0])]), timeout=10)
    assert (info.name, info.precision) == (INT8, "int8")
    assert info.threshold == pytest.approx(0.91) and info.threshold_source == "calibrated"
    assert reply.model == INT8 and reply.results[0].embedding.model == INT8


def test_a_gallery_of_fp32_vectors_refuses_int8_ones(tmp_path: Path) -> None:
    """The int8 embedder's answers, over gRPC, cannot enter or query a gallery of fp32 vectors, and a
    store of fp32 vectors does not open for int8 (the gallery asks the embedder its model at start)."""
    store_path = tmp_path / "g.sqlite"
    with Store(store_path, FP32) as store:
        store.add_faces("alice", [NewFace(np.eye(128, dtype=np.float32)[0])])
    with pytest.raises(Precondition, match="facenet-keras-128-int8"):
        Store(store_path, INT8)

    with serve(make_settings(tmp_path), Embedder(FakeInfer(), "fake", precision="int8")) as served:
        client = EmbedderClient(f"127.0.0.1:{served.port}", 10)
        embedded = client.embed(crops(2))
        assert client.model_info().name == INT8
        gallery = open_gallery(store_path, FP32, detector=None, embedder=client)  # type: ignore[arg-type]
        values = [float(v) for v in embedded.vectors[0]]
        results = gallery.enroll("bob", embeddings=[(values, embedded.model)])
        assert results[0].outcome == EnrollOutcome.INVALID and isinstance(results[0].error, Precondition)
        with pytest.raises(Precondition):
            gallery.search(values, model=embedded.model)
        with pytest.raises(Precondition, match="serves model 'facenet-keras-128-int8'"):
            gallery._embed(crops(1), 10)
        assert gallery.stats().faces == 1
        gallery.close()
        client.close()


def test_calibration_set_round_trip_and_damage(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    made = CalibrationSet(
        rng.integers(0, 256, size=(4, 160, 160, 3), dtype=np.uint8),
        np.array(["a", "a", "b", "b"]),
        np.array([False, True, False, True]),
    )
    path = tmp_path / "set.npz"
    made.save(path)
    loaded = CalibrationSet.load(path)
    assert loaded.sha256() == made.sha256()
    assert np.array_equal(loaded.crops, made.crops) and list(loaded.labels) == ["a", "a", "b", "b"]
    other = CalibrationSet(made.crops[::-1].copy(), made.labels, made.held_out)
    assert other.sha256() != made.sha256()

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the crops: the member's CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(CalibrationSetError):
        CalibrationSet.load(path)
    with pytest.raises(CalibrationSetError, match="facerec fetch"):
        CalibrationSet.load(tmp_path / "missing.npz")
    with pytest.raises(CalibrationSetError):
        CalibrationSet(made.crops, made.labels, np.zeros(4, dtype=bool))


def test_the_guards_pair_accuracy_is_the_evals() -> None:
    from embedding_service.quantize import best_balanced_accuracy
    from facerec_app.evaluation import all_pairs, best_balanced_threshold, curve

    rng = np.random.default_rng(11)
    labels = np.array([f"p{i % 5}" for i in range(40)])
    centres = rng.standard_normal((5, 16))
    vectors = centres[[i % 5 for i in range(40)]] + 0.9 * rng.standard_normal((40, 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    expected = best_balanced_threshold(curve(all_pairs(vectors, list(labels))))[1]
    assert 0.6 < expected < 1.0
    assert best_balanced_accuracy(vectors, labels) == pytest.approx(expected, abs=1e-12)

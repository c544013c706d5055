"""int8 FaceNet with the real weights: quantized from the fp32 export, guarded against fp32, cached, refused when broken."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from embedding_service.config import Settings
from embedding_service.embedder import Embedder, model_name
from embedding_service.onnx_runtime import cache_path, cached_infer
from embedding_service.preprocessing import prepare_batch
from embedding_service.quantize import (
    MIN_COSINE,
    RECIPE,
    CalibrationSet,
    cache_paths,
    embed_all,
    guard,
    int8_model,
    quantize,
)
from facerec.assets import sha256_of
from facerec.integrity import checksum_path
from facerec.onnx import cpu_session

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def calibration_set(fetched_assets) -> CalibrationSet:
    """The crops `facerec fetch` builds: the detector's faces of every picture the project has, split into
    calibration and held-out ones."""
    from facerec_app.calibration_crops import build_calibration_set

    return build_calibration_set(fetched_assets)


@pytest.fixture(scope="module")
def shared_settings(fetched_assets) -> Settings:
    """fp32 settings on the shared weights; the fp32 export (the code's own cache) is made when missing."""
    settings = Settings.from_env({"FACEREC_HOME": str(fetched_assets.home)})
    settings = dataclasses.replace(settings, precision="fp32", intra_threads=1)
    if cached_infer(settings) is None:
        Embedder.load(dataclasses.replace(settings, export_at_start=True))
    return settings


def own_models(folder: Path, shared_settings: Settings, calibration_set: CalibrationSet) -> Settings:
    """A models folder of its own (the int8 cache and its record land there) sharing the weights and export."""
    models = folder / "models"
    models.mkdir()
    (models / "facenet_keras.h5").symlink_to(shared_settings.weights_path)
    (models / "facenet.onnx").symlink_to(cache_path(shared_settings.weights_path))
    # With its checksum: the embedder loads only a verified export (and never exports at start).
    (models / "facenet.onnx.sha256").symlink_to(checksum_path(cache_path(shared_settings.weights_path)))
    calibration_set.save(models / "facenet-calibration.npz")
    return dataclasses.replace(
        shared_settings, weights_path=models / "facenet_keras.h5", calibration_path=folder / "c.json"
    )


@pytest.fixture()
def home(tmp_path: Path, shared_settings: Settings, calibration_set: CalibrationSet) -> Settings:
    return own_models(tmp_path, shared_settings, calibration_set)


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_settings: Settings, calibration_set: CalibrationSet) -> Settings:
    """A models folder where the int8 model was built once by the default path (as the embedder's first
    start does): quantized with the shipped recipe, guarded, cached."""
    settings = own_models(tmp_path_factory.mktemp("built"), shared_settings, calibration_set)
    assert build(settings, None) is not None
    return settings


@pytest.fixture(scope="module")
def int8_bytes(built: Settings) -> bytes:
    return cache_paths(built.weights_path.parent)[0].read_bytes()


def build(settings: Settings, quantizer, recipe=RECIPE) -> bytes | None:
    return int8_model(
        cache_path(settings.weights_path),
        sha256_of(settings.weights_path),
        1,
        1,
        quantizer=quantizer,
        recipe=recipe,
    )


def refuse_to_quantize(fp32: bytes, calibration: np.ndarray) -> bytes:
    raise AssertionError("quantized again although the cache matches")


def damaged(model: bytes) -> bytes:
    """The int8 model with its largest int8 weight scrambled (seeded): it runs, but says other things."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(model)
    target = max(
        (t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8),
        key=lambda t: int(np.prod(t.dims)),
    )
    weights = numpy_helper.to_array(target)
    scrambled = np.random.default_rng(7).permutation(weights.reshape(-1)).reshape(weights.shape)
    target.CopyFrom(numpy_helper.from_array(scrambled, target.name))
    return proto.SerializeToString()


def test_int8_is_the_default_close_to_fp32_and_cached(
    built: Settings, calibration_set: CalibrationSet
) -> None:
    int8 = Embedder.load(dataclasses.replace(built, precision="int8"))
    fp32 = Embedder.load(dataclasses.replace(built, precision="fp32"))
    assert (
        Settings(weights_path=built.weights_path, calibration_path=built.calibration_path).precision == "int8"
    )
    assert (int8.precision, int8.name) == ("int8", "facenet-keras-128-int8")
    assert (fp32.precision, fp32.name) == ("fp32", "facenet-keras-128")
    held_out = list(calibration_set.crops[calibration_set.held_out])
    cosine = np.sum(int8.embed(held_out) * fp32.embed(held_out), axis=1)
    assert cosine.min() >= MIN_COSINE
    assert np.abs(int8.embed(held_out) - fp32.embed(held_out)).max() > 1e-4  # really another model

    int8_path, record_path, _ = cache_paths(built.weights_path.parent)
    record = json.loads(record_path.read_text())
    assert record["accepted"] and record["recipe_sha256"] == RECIPE.sha256()
    assert record["int8_sha256"] == hashlib.sha256(int8_path.read_bytes()).hexdigest()
    # The next start reads the cache: no second quantization.
    assert build(built, refuse_to_quantize) == int8_path.read_bytes()


def test_the_guard_holds_on_held_out_and_augmented_crops(
    built: Settings, calibration_set: CalibrationSet
) -> None:
    """Held out: whole pictures and a whole person that calibration never saw; augmented: those crops
    mirrored, relit, blurred, rescaled, compressed, greyed, tilted. Every cosine to fp32 ≥ 0.995, and
    pair accuracy within half a point of fp32's."""
    record = json.loads(cache_paths(built.weights_path.parent)[1].read_text())
    held_out, augmented = record["held_out"], record["augmented"]
    assert held_out["n"] == int(calibration_set.held_out.sum()) >= 40
    assert augmented["n"] == RECIPE.check_copies * held_out["n"]
    for stats in (held_out, augmented):
        assert stats["min"] >= MIN_COSINE and stats["min"] <= stats["p1"] <= stats["mean"] <= 1.0
    assert record["min_cosine"] == min(held_out["min"], augmented["min"])
    assert record["accuracy_int8"] >= record["accuracy_fp32"] - 0.005


def test_a_changed_recipe_quantizes_again(home: Settings, int8_bytes: bytes) -> None:
    calls: list[int] = []

    def counting(fp32: bytes, calibration: np.ndarray) -> bytes:
        calls.append(len(calibration))
        return int8_bytes

    assert build(home, counting) == int8_bytes
    assert build(home, refuse_to_quantize) == int8_bytes
    other = dataclasses.replace(RECIPE, copies=RECIPE.copies + 1)
    assert build(home, counting, other) == int8_bytes
    kept = int((~home_set(home).held_out).sum())
    assert calls == [kept * (1 + RECIPE.copies), kept * (2 + RECIPE.copies)]


def home_set(settings: Settings) -> CalibrationSet:
    return CalibrationSet.load(cache_paths(settings.weights_path.parent)[2])


def test_a_damaged_cache_file_is_quantized_again(home: Settings, int8_bytes: bytes) -> None:
    assert build(home, lambda fp32, calibration: int8_bytes) == int8_bytes
    int8_path, _, _ = cache_paths(home.weights_path.parent)
    data = bytearray(int8_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    int8_path.write_bytes(bytes(data))
    calls = []

    def again(fp32: bytes, calibration: np.ndarray) -> bytes:
        calls.append(len(calibration))
        return int8_bytes

    assert build(home, again) == int8_bytes
    assert len(calls) == 1 and int8_path.read_bytes() == int8_bytes


def test_the_guard_refuses_a_broken_quantization_and_fp32_is_kept(
    home: Settings, int8_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert build(home, lambda fp32, calibration: damaged(int8_bytes)) is None
    assert "refused by the guard" in caplog.text
    int8_path, record_path, _ = cache_paths(home.weights_path.parent)
    record = json.loads(record_path.read_text())
    assert not record["accepted"] and record["min_cosine"] < 0.995
    assert not int8_path.exists()
    # The embedder serves fp32 under fp32's name, and a later start keeps refusing without quantizing.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        embedder = Embedder.load(dataclasses.replace(home, precision="int8"))
    assert (embedder.precision, embedder.name) == ("fp32", model_name("fp32"))
    assert "refused when it was built" in caplog.text


def test_a_wrong_calibration_is_refused(home: Settings, calibration_set: CalibrationSet) -> None:
    """Activation ranges measured on blank grey crops clip real faces' activations."""

    def blank_calibration(fp32: bytes, calibration: np.ndarray) -> bytes:
        return quantize(fp32, np.zeros_like(calibration[:8]))

    assert build(home, blank_calibration) is None


def test_the_guard_passes_fp32_against_itself(
    shared_settings: Settings, calibration_set: CalibrationSet
) -> None:
    session = cpu_session(cache_path(shared_settings.weights_path).read_bytes(), 1, 1)

    def infer(x: np.ndarray) -> np.ndarray:
        return session.run(None, {"input": x})[0]

    verdict = guard(infer, infer, calibration_set)
    assert verdict.accepted and verdict.min_cosine == pytest.approx(1.0, abs=1e-5)
    assert verdict.accuracy_int8 == verdict.accuracy_fp32 > 0.95
    unit = embed_all(infer, prepare_batch(list(calibration_set.crops[:3])))
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)

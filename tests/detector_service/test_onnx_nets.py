"""mtcnn's networks on onnxruntime: exported once, cached, and finding the faces TensorFlow finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector_service import onnx_nets
from detector_service.detector import Detection, DetectOptions, Detector

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def nets(mtcnn_model, models_dir: Path) -> onnx_nets.Nets:
    return onnx_nets.onnx_nets(models_dir, 2, 1, models=lambda: onnx_nets.keras_models(mtcnn_model))


@pytest.fixture(scope="module")
def pictures(train_images, val_images) -> list[np.ndarray]:
    return [np.asarray(Image.open(path).convert("RGB")) for _, path in [*train_images, *val_images]]


def detect_all(detector: Detector, pictures: list[np.ndarray]) -> list[list[Detection]]:
    found: list[list[Detection]] = []
    for start in range(0, len(pictures), 8):
        found.extend(detector.detect(pictures[start : start + 8], DetectOptions()))
    return found


def test_export_is_cached_and_reused_without_keras(nets, models_dir: Path) -> None:
    paths = onnx_nets.cache_paths(models_dir)
    names = [p.name for p in paths.values()]
    assert sorted(p.name for p in models_dir.iterdir()) == sorted(names + [n + ".sha256" for n in names])

    def no_keras() -> dict:
        raise AssertionError("the cache was there: no Keras model should be built")

    again = onnx_nets.onnx_nets(models_dir, 1, 1, models=no_keras)
    x = np.random.default_rng(7).uniform(-1, 1, (2, 48, 48, 3)).astype(np.float32)
    for a, b in zip(again.onet(x), nets.onet(x), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_cache_of_another_mtcnn_version_is_exported_again(mtcnn_model, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(onnx_nets, "mtcnn_version", lambda: "0.0-other")
    for path in onnx_nets.cache_paths(tmp_path).values():
        path.write_bytes(b"not an onnx model")
    built = []

    def models() -> dict:
        built.append(True)
        return onnx_nets.keras_models(mtcnn_model)

    onnx_nets.onnx_nets(tmp_path, 1, 1, models=models)
    assert built == [True]
    assert all(p.stat().st_size > 1000 for p in onnx_nets.cache_paths(tmp_path).values())


def test_an_export_with_flipped_bits_is_exported_again(
    mtcnn_model, nets, models_dir: Path, tmp_path: Path
) -> None:
    # Ten flipped bits in O-Net's weights once gave 46 faces instead of 27, boxes 462 px off, with status OK.
    for path in onnx_nets.cache_paths(models_dir).values():
        for kept in (path, path.with_name(path.name + ".sha256")):
            (tmp_path / kept.name).write_bytes(kept.read_bytes())
    onet = onnx_nets.cache_paths(tmp_path)["onet"]
    data = bytearray(onet.read_bytes())
    for k in range(10):
        data[len(data) // 2 + 97 * k] ^= 1 << (k % 8)
    onet.write_bytes(bytes(data))
    built = []

    def models() -> dict:
        built.append(True)
        return onnx_nets.keras_models(mtcnn_model)

    again = onnx_nets.onnx_nets(tmp_path, 1, 1, models=models)
    assert built == [True]
    x = np.random.default_rng(7).uniform(-1, 1, (2, 48, 48, 3)).astype(np.float32)
    for a, b in zip(again.onet(x), nets.onet(x), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_outputs_equal_keras(nets, mtcnn_model) -> None:
    keras = onnx_nets.keras_models(mtcnn_model)
    for name, side in (("pnet", (97, 131)), ("rnet", (24, 24)), ("onet", (48, 48))):
        diff = onnx_nets.check_against_keras(getattr(nets, name), keras[name], name)
        assert diff <= onnx_nets.MAX_ABS_DIFF
        x = np.random.default_rng(3).uniform(-1, 1, (4, *side, 3)).astype(np.float32)
        for a, b in zip(getattr(nets, name)(x), keras[name](x), strict=True):
            np.testing.assert_allclose(a, np.asarray(b), atol=onnx_nets.MAX_ABS_DIFF)


def test_same_faces_as_tensorflow_on_the_118_pictures(nets, mtcnn_model, pictures) -> None:
    ours = detect_all(Detector(nets), pictures)
    theirs = detect_all(Detector(mtcnn_model), pictures)
    assert len(pictures) == 118
    assert sum(map(len, theirs)) >= 118
    for a, b in zip(ours, theirs, strict=True):
        assert len(a) == len(b)
        for fa, fb in zip(a, b, strict=True):
            box_a = np.array([fa.box.x, fa.box.y, fa.box.width, fa.box.height])
            box_b = np.array([fb.box.x, fb.box.y, fb.box.width, fb.box.height])
            assert np.abs(box_a - box_b).max() <= 1.0
            assert np.abs(fa.landmarks.as_array() - fb.landmarks.as_array()).max() <= 1.0
            assert abs(fa.confidence - fb.confidence) <= 1e-4


def test_runtime_setting_picks_the_nets(monkeypatch, models_dir: Path, nets) -> None:
    from detector_service.config import Settings

    settings = Settings.from_env({"DETECTOR_MODELS_DIR": str(models_dir)})
    assert settings.runtime == "onnxruntime"
    assert Detector.load(settings).runtime == "onnxruntime"
    with pytest.raises(Exception, match="RUNTIME"):
        Settings.from_env({"DETECTOR_RUNTIME": "cuda"})

"""The onnxruntime FaceNet: exported once, cached by the h5's sha256, equal to Keras within 1e-5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding_service import onnx_runtime
from embedding_service.embedder import Embedder
from tests.support.embedding import make_settings

pytestmark = pytest.mark.model


def test_onnx_vectors_equal_keras_and_the_export_is_cached(
    tmp_path: Path, fetched_assets, facenet_model, real_embedder: Embedder, real_crops, monkeypatch
) -> None:
    pytest.importorskip("tf2onnx")
    weights = tmp_path / "models" / "facenet_keras.h5"
    weights.parent.mkdir()
    weights.symlink_to(fetched_assets.facenet_h5)
    settings = make_settings(tmp_path, weights_path=weights, runtime="onnxruntime")

    embedder = Embedder(onnx_runtime.onnx_infer(facenet_model, settings), "onnxruntime")
    cached = onnx_runtime.cache_path(weights)
    assert cached.is_file()
    assert onnx_runtime.source_sha(cached) == onnx_runtime.sha256_of(weights)
    out = embedder.embed(real_crops)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert np.abs(out - real_embedder.embed(real_crops)).max() <= 1e-5

    # A second start reads the cache: exporting again would fail here.
    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache matches")

    monkeypatch.setattr(onnx_runtime, "export", no_export)
    again = Embedder(onnx_runtime.onnx_infer(facenet_model, settings), "onnxruntime")
    assert np.abs(again.embed(real_crops[:2]) - out[:2]).max() <= 1e-6

    # A cache made from other weights is not used.
    monkeypatch.setattr(onnx_runtime, "sha256_of", lambda path: "0" * 64)
    with pytest.raises(AssertionError, match="exported again"):
        onnx_runtime.onnx_infer(facenet_model, settings)


def test_an_export_that_fails_its_checksum_is_not_used(tmp_path: Path) -> None:
    from embedding_service.config import Settings
    from facerec.integrity import write_checked

    weights = tmp_path / "facenet_keras.h5"
    weights.write_bytes(b"weights")
    write_checked(onnx_runtime.cache_path(weights), b"an export" * 100)
    path = onnx_runtime.cache_path(weights)
    data = bytearray(path.read_bytes())
    data[10] ^= 0x04
    path.write_bytes(bytes(data))
    settings = Settings.from_env({"EMBEDDER_WEIGHTS": str(weights)})
    # None: onnx_infer then exports again from Keras instead of running a damaged model.
    assert onnx_runtime.cached_infer(settings) is None


def test_an_unreadable_cache_has_no_source(tmp_path: Path) -> None:
    path = tmp_path / "facenet.onnx"
    path.write_bytes(b"not an onnx model")
    assert onnx_runtime.source_sha(path) == ""


def test_outputs_that_differ_from_keras_are_refused(facenet_model) -> None:
    with pytest.raises(onnx_runtime.OnnxExportError):
        onnx_runtime.check_against_keras(lambda x: np.zeros((len(x), 128), dtype=np.float32), facenet_model)

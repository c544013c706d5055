"""Several models in one embedder (EMBEDDER_MODELS): each request names its model, batches never mix
models, GetModelInfo lists them all. Fake models here; test_models_real.py runs FaceNet fp32 and int8."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from numpy.typing import NDArray

from embedding_service.config import Settings
from embedding_service.embedder import Embedder
from embedding_service.preprocessing import prepare_batch
from facerec.calibration import INT8_POINTS
from facerec.settings import SettingError
from facerec.v1 import embedding_pb2
from tests.support.embedding import (
    FakeInfer,
    crop_input,
    fake_vectors,
    make_settings,
    serve,
    unit,
    vectors_of,
)

FP32, INT8 = "facenet-keras-128", "facenet-keras-128-int8"


class ReversedInfer(FakeInfer):
    """Another model: the fake's vector reversed, so its answers are told apart from the first's."""

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        return super().__call__(batch)[:, ::-1].copy()


def crops(n: int) -> list[NDArray[np.uint8]]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture
def two_models() -> tuple[Embedder, Embedder, FakeInfer, ReversedInfer]:
    int8_infer, fp32_infer = FakeInfer(), ReversedInfer()
    return (
        Embedder(int8_infer, runtime="fake", precision="int8"),
        Embedder(fp32_infer, runtime="fake", precision="fp32"),
        int8_infer,
        fp32_infer,
    )


def test_each_request_is_embedded_by_the_model_it_names(tmp_path: Path, two_models) -> None:
    int8, fp32, _, _ = two_models
    faces = [crop_input(c) for c in crops(3)]
    expected = unit(fake_vectors(prepare_batch(crops(3))))
    with serve(make_settings(tmp_path), [int8, fp32]) as served:
        default = served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces), timeout=10)
        named = served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces, model=FP32), timeout=10)
        same = served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces, model=INT8), timeout=10)
    assert (default.model, named.model, same.model) == (INT8, FP32, INT8)
    assert {r.embedding.model for r in named.results} == {FP32}
    np.testing.assert_allclose(vectors_of(default), expected, atol=1e-6)
    np.testing.assert_allclose(vectors_of(named), expected[:, ::-1], atol=1e-6)
    np.testing.assert_array_equal(vectors_of(same), vectors_of(default))


def test_an_unknown_model_is_invalid_argument_naming_the_served_ones(tmp_path: Path, two_models) -> None:
    int8, fp32, int8_infer, fp32_infer = two_models
    faces = [crop_input(c) for c in crops(1)]
    with serve(make_settings(tmp_path), [int8, fp32]) as served:
        with pytest.raises(grpc.RpcError) as caught:
            served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces, model="arcface"), timeout=10)
        with pytest.raises(grpc.RpcError) as info_caught:
            served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(model="arcface"), timeout=10)
        after = served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces, model=FP32), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        f"The embedder serves no model named 'arcface'; it serves {INT8}, {FP32}."
    )
    assert info_caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert after.model == FP32 and not after.results[0].HasField("error")
    assert (int8_infer.batch_sizes, fp32_infer.batch_sizes) == ([], [1])  # the refused call reached no model


def test_concurrent_calls_for_two_models_are_batched_per_model(tmp_path: Path, two_models) -> None:
    int8, fp32, int8_infer, fp32_infer = two_models
    # Hold both models' first call, so the calls behind them queue up and form batches of each model.
    int8_infer.gate.clear()
    fp32_infer.gate.clear()
    settings = make_settings(tmp_path, max_batch=32, max_delay_ms=50)
    requests = [
        embedding_pb2.EmbedRequest(faces=[crop_input(c)], model=INT8 if i % 2 else FP32)
        for i, c in enumerate(crops(16))
    ]
    with serve(settings, [int8, fp32]) as served, ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(served.stub.Embed, r, timeout=30) for r in requests]
        assert int8_infer.entered.wait(10) and fp32_infer.entered.wait(10)
        int8_infer.gate.set()
        fp32_infer.gate.set()
        responses = [f.result() for f in futures]
        info = served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(model=FP32), timeout=10)
    expected = unit(fake_vectors(prepare_batch(crops(16))))
    for i, response in enumerate(responses):
        want = expected[i] if i % 2 else expected[i][::-1]
        np.testing.assert_allclose(vectors_of(response)[0], want, atol=1e-6)  # its own model's vector
    # Each model embedded exactly its own 8 faces: no batch carried a face of the other model.
    assert (sum(int8_infer.batch_sizes), sum(fp32_infer.batch_sizes)) == (8, 8)
    assert info.faces_embedded == 8 and info.model_calls == len(fp32_infer.batch_sizes)


def test_model_info_describes_the_named_model_and_lists_them_all(tmp_path: Path, two_models) -> None:
    int8, fp32, _, _ = two_models
    with serve(make_settings(tmp_path), [int8, fp32]) as served:
        default = served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=10)
        named = served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(model=FP32), timeout=10)
    assert (default.name, default.precision, named.name, named.precision) == (INT8, "int8", FP32, "fp32")
    for info in (default, named):
        assert [(m.name, m.precision, m.dimension) for m in info.models] == [
            (INT8, "int8", 128),
            (FP32, "fp32", 128),
        ]
        assert all(not m.models for m in info.models)
    # Each model has its own shipped thresholds.
    int8_listed, fp32_listed = default.models
    assert int8_listed.threshold == pytest.approx(
        next(p.threshold for p in INT8_POINTS if p.name == "far_1e-3")
    )
    assert fp32_listed.threshold == pytest.approx(named.threshold)
    assert int8_listed.threshold != pytest.approx(fp32_listed.threshold)
    assert [p.name for p in int8_listed.operating_points] == [p.name for p in INT8_POINTS]


def test_the_models_setting_lists_the_default_first(tmp_path: Path) -> None:
    assert Settings.from_env({"FACEREC_HOME": str(tmp_path)}).model_names == [INT8, FP32]
    fp32_default = Settings.from_env({"FACEREC_HOME": str(tmp_path), "EMBEDDER_PRECISION": "fp32"})
    assert fp32_default.model_names == [FP32, INT8]
    only = Settings.from_env({"FACEREC_HOME": str(tmp_path), "EMBEDDER_MODELS": f" {FP32} "})
    assert only.model_names == [FP32]  # the precision's model is the default only when it is served
    with pytest.raises(SettingError, match="EMBEDDER_MODELS"):
        Settings.from_env({"EMBEDDER_MODELS": "facenet-keras-128,arcface"})
    with pytest.raises(SettingError, match="EMBEDDER_MODELS"):
        Settings.from_env({"EMBEDDER_MODELS": " , "})

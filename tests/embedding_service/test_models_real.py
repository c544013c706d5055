"""FaceNet fp32 and int8 served by one embedder (the default EMBEDDER_MODELS), with the real exported models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc
import numpy as np
import pytest

from embedding_service.embedder import Embedder
from embedding_service.models import load_embedders
from facerec.assets import Assets
from facerec.v1 import embedding_pb2
from tests.support.embedding import crop_input, make_settings, serve, vectors_of

pytestmark = pytest.mark.model

FP32, INT8 = "facenet-keras-128", "facenet-keras-128-int8"


def test_fp32_and_int8_answer_in_one_server_as_in_their_own(
    tmp_path: Path, fetched_assets: Assets, real_crops
) -> None:
    settings = make_settings(tmp_path, weights_path=fetched_assets.facenet_h5, max_delay_ms=0)
    both = load_embedders(settings)
    assert [(e.name, e.precision) for e in both] == [(INT8, "int8"), (FP32, "fp32")]
    faces = [crop_input(c) for c in real_crops[:8]]
    with serve(settings, both) as served:
        together = {
            model: served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces, model=model), timeout=120)
            for model in (FP32, INT8)
        }
        default = served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces[:1]), timeout=120)
        with pytest.raises(grpc.RpcError) as caught:
            served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces, model="facenet-512"), timeout=30)
        info = served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=10)
    alone = {}
    for precision, model in (("fp32", FP32), ("int8", INT8)):
        single = Embedder.load(dataclasses.replace(settings, precision=precision, models=model))
        with serve(settings, single) as served:
            alone[model] = served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces), timeout=120)
        assert alone[model].model == model
    for model in (FP32, INT8):
        assert together[model].model == model
        # The same model, the same batch: the same vectors as a server of that model alone.
        assert np.abs(vectors_of(together[model]) - vectors_of(alone[model])).max() <= 1e-5
    fp32, int8 = vectors_of(together[FP32]), vectors_of(together[INT8])
    cosines = np.sum(fp32 * int8, axis=1)
    assert cosines.min() >= 0.99 and np.abs(fp32 - int8).max() > 1e-4  # near, yet not the same model
    assert default.model == INT8
    assert np.abs(vectors_of(default)[0] - int8[0]).max() <= 1e-5
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"it serves {INT8}, {FP32}" in (caught.value.details() or "")
    assert [(m.name, m.precision, m.runtime) for m in info.models] == [
        (INT8, "int8", "onnxruntime"),
        (FP32, "fp32", "onnxruntime"),
    ]
    assert info.models[0].threshold != pytest.approx(info.models[1].threshold)  # each its own points

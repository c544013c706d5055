"""The Embedder over gRPC with the real FaceNet, on a server on port 0 in this process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from embedding_service.embedder import Embedder
from facerec.images import encode_png
from facerec.v1 import common_pb2, embedding_pb2
from tests.support.embedding import crop_input, make_settings, serve, vectors_of

pytestmark = pytest.mark.model

INFO = embedding_pb2.GetModelInfoRequest()


def test_vectors_through_grpc_equal_the_in_process_ones(
    tmp_path: Path, real_embedder: Embedder, real_crops
) -> None:
    expected = real_embedder.embed(real_crops)
    with serve(make_settings(tmp_path), real_embedder) as served:
        response = served.stub.Embed(
            embedding_pb2.EmbedRequest(faces=[crop_input(c) for c in real_crops]), timeout=60
        )
        info = served.stub.GetModelInfo(INFO, timeout=10)
    got = vectors_of(response)
    assert got.shape == (len(real_crops), 128)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.abs(got - expected).max() <= 1e-5
    assert (info.model_calls, info.faces_embedded, info.runtime) == (1, len(real_crops), "tensorflow")


def test_concurrent_single_face_calls_share_model_calls(
    tmp_path: Path, real_embedder: Embedder, real_crops
) -> None:
    expected = real_embedder.embed(real_crops)
    settings = make_settings(tmp_path, max_delay_ms=20)
    with serve(settings, real_embedder) as served, ThreadPoolExecutor(16) as pool:
        before = served.stub.GetModelInfo(INFO, timeout=10)
        requests = [embedding_pb2.EmbedRequest(faces=[crop_input(c)]) for c in real_crops]
        responses = list(pool.map(lambda r: served.stub.Embed(r, timeout=60), requests))
        after = served.stub.GetModelInfo(INFO, timeout=10)
    got = np.concatenate([vectors_of(r) for r in responses])
    assert np.abs(got - expected).max() <= 1e-5  # each caller got its own face's vector
    assert after.faces_embedded - before.faces_embedded == 16
    assert after.model_calls - before.model_calls < 16


def test_bad_faces_get_their_codes_and_the_server_still_answers(
    tmp_path: Path, real_embedder: Embedder, real_crops
) -> None:
    good = real_crops[0]
    faces = [
        embedding_pb2.FaceInput(crop=common_pb2.RgbImage(rgb=bytes(10), width=20, height=20)),
        embedding_pb2.FaceInput(crop=common_pb2.RgbImage(rgb=b"", width=0, height=0)),
        embedding_pb2.FaceInput(encoded=common_pb2.Image(data=b"not an image")),
        embedding_pb2.FaceInput(encoded=common_pb2.Image(data=encode_png(good))),
    ]
    with serve(make_settings(tmp_path, max_faces_per_request=8), real_embedder) as served:
        response = served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces), timeout=60)
        with pytest.raises(grpc.RpcError) as caught:
            served.stub.Embed(embedding_pb2.EmbedRequest(faces=[faces[3]] * 9), timeout=60)
        after = served.stub.Embed(embedding_pb2.EmbedRequest(faces=[crop_input(good)]), timeout=60)
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [r.error.code for r in response.results] == [invalid, invalid, invalid, 0]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    expected = real_embedder.embed([good])[0]
    # A PNG is lossless: the encoded face embeds exactly like the raw crop.
    assert np.abs(np.array(response.results[3].embedding.values) - expected).max() <= 1e-5
    assert np.abs(vectors_of(after)[0] - expected).max() <= 1e-5

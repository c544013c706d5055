"""A model that gives NaN is the server's fault: UNAVAILABLE with a sentence, never OK and never INVALID_ARGUMENT.

The embedder (a real gRPC server here) refuses to send such vectors, and the gallery (a real gRPC gallery
client) refuses them from an embedder that sends them anyway.
"""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from numpy.typing import NDArray

from embedding_service.embedder import Embedder
from facerec.errors import ModelFault
from facerec.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc
from gallery.clients import EmbedderClient
from tests.support.embedding import crop_input, make_settings, serve


def nan_model(batch: NDArray[np.float32]) -> NDArray[np.float32]:
    out = np.ones((len(batch), 128), dtype=np.float32)
    out[:, 5] = np.nan  # as flipped bits in the FaceNet export once gave
    return out


def test_an_embedder_whose_model_gives_nan_answers_unavailable_and_keeps_serving(tmp_path: Path) -> None:
    crop = np.full((160, 160, 3), 90, np.uint8)
    with serve(make_settings(tmp_path), Embedder(nan_model, runtime="fake")) as served:
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as failed:
                served.stub.Embed(embedding_pb2.EmbedRequest(faces=[crop_input(crop)]), timeout=30)
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            assert failed.value.details() == (
                "The embedding model gave non-finite values; the server's model is faulty."
            )
        assert served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=30).dimension == 128


class _NanEmbedder(embedding_pb2_grpc.EmbedderServicer):
    """An embedder of an older build that sends NaN vectors with status OK."""

    def Embed(self, request, context):  # noqa: N802 - gRPC's name
        vector = common_pb2.Embedding(values=[float("nan")] * 128, model="fake")
        return embedding_pb2.EmbedResponse(
            results=[embedding_pb2.EmbedResult(embedding=vector) for _ in request.faces], model="fake"
        )


def test_the_gallery_client_refuses_nan_vectors_as_the_embedders_fault() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(4))
    embedding_pb2_grpc.add_EmbedderServicer_to_server(_NanEmbedder(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = EmbedderClient(f"127.0.0.1:{port}", timeout_s=30)
    try:
        with pytest.raises(ModelFault, match="non-finite values; its model is faulty"):
            client.embed([np.zeros((160, 160, 3), np.uint8)])
    finally:
        client.close()
        server.stop(None)

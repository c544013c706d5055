"""The gallery's clients name the model they want: the embedder's (a real embedding server on port 0 with
two fake models) and the detector's (a recording detector on port 0)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding_service.embedder import Embedder
from embedding_service.preprocessing import prepare_batch
from facerec.errors import InvalidInput
from facerec.server import Health, Service, build_server
from facerec.settings import ServerOptions
from facerec.v1 import detector_pb2, detector_pb2_grpc
from gallery.clients import DetectorClient, EmbedderClient
from gallery.ports import DetectorOptions
from tests.support.embedding import FakeInfer, fake_vectors, make_settings, serve, unit

FP32, INT8 = "facenet-keras-128", "facenet-keras-128-int8"


class DoubledInfer(FakeInfer):
    """A second model, told apart from the first by its vectors: the fake's, each value squared."""

    def __call__(self, batch):
        return super().__call__(batch) ** 2


def test_the_embedder_client_embeds_with_the_model_it_names(tmp_path: Path) -> None:
    int8 = Embedder(FakeInfer(), runtime="fake", precision="int8")
    fp32 = Embedder(DoubledInfer(), runtime="fake", precision="fp32")
    crops = list(np.random.default_rng(7).integers(0, 256, size=(3, 50, 40, 3), dtype=np.uint8))
    prepared = prepare_batch(crops)
    with serve(make_settings(tmp_path), [int8, fp32]) as served:
        client = EmbedderClient(f"127.0.0.1:{served.port}", timeout_s=10, max_faces_per_call=2)
        try:
            default = client.embed(crops, timeout_s=10)
            named = client.embed(crops, timeout_s=10, model=FP32)
            info = client.model_info(model=FP32)
            listed = client.models()
            with pytest.raises(InvalidInput, match="serves no model named 'arcface'"):
                client.embed(crops, timeout_s=10, model="arcface")
            with pytest.raises(InvalidInput, match="serves no model named 'arcface'"):
                client.model_info(model="arcface")
            assert client.embed(crops[:1], timeout_s=10).model == INT8  # still answering
        finally:
            client.close()
    assert (default.model, named.model) == (INT8, FP32)
    np.testing.assert_allclose(np.stack(default.vectors), unit(fake_vectors(prepared)), atol=1e-6)
    np.testing.assert_allclose(np.stack(named.vectors), unit((3 * fake_vectors(prepared)) ** 2), atol=1e-5)
    assert (info.name, info.precision, info.dimension) == (FP32, "fp32", 128)
    assert [(m.name, m.precision) for m in listed] == [(INT8, "int8"), (FP32, "fp32")]
    assert listed[0].threshold != pytest.approx(listed[1].threshold)


class Recording(detector_pb2_grpc.DetectorServicer):
    def __init__(self) -> None:
        self.options: list[detector_pb2.DetectOptions] = []

    def Detect(self, request, context):
        self.options.append(request.options)
        return detector_pb2.DetectResponse(
            results=[detector_pb2.ImageResult(width=1, height=1) for _ in request.images]
        )


def test_the_detector_client_sends_the_detector_model_and_alignment() -> None:
    recording = Recording()
    service = Service(
        "facerec.v1.Detector", lambda s: detector_pb2_grpc.add_DetectorServicer_to_server(recording, s)
    )
    server, port = build_server([service], ServerOptions(host="127.0.0.1", port=0, max_workers=4), Health([]))
    server.start()
    client = DetectorClient(f"127.0.0.1:{port}", timeout_s=10)
    try:
        client.detect([b"a"], DetectorOptions(model="retinaface", alignment="similarity"))
        client.detect([b"a"], DetectorOptions())
    finally:
        client.close()
        server.stop(0).wait()
    named, default = recording.options
    assert (named.model, named.alignment) == ("retinaface", detector_pb2.ALIGNMENT_SIMILARITY)
    assert (default.model, default.alignment) == ("", detector_pb2.ALIGNMENT_UNSPECIFIED)

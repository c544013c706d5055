"""The Embedder servicer's translation, on a real server on port 0 with a fake model: codes, order, counters."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from embedding_service.embedder import Embedder
from embedding_service.preprocessing import DESCRIPTION, prepare_batch
from facerec.calibration import DEFAULT_THRESHOLD, OperatingPoint, save_calibration
from facerec.images import encode_png
from facerec.settings import SettingError
from facerec.v1 import common_pb2, embedding_pb2
from tests.support.embedding import (
    FakeInfer,
    crop_input,
    fake_vectors,
    make_settings,
    serve,
    unit,
    vectors_of,
)

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def good_crops(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, size=(40 + 10 * i, 30 + 20 * i, 3), dtype=np.uint8) for i in range(n)]


def encoded_input(data: bytes) -> embedding_pb2.FaceInput:
    return embedding_pb2.FaceInput(encoded=common_pb2.Image(data=data))


def assert_still_answers(stub) -> None:
    crop = good_crops(1)[0]
    response = stub.Embed(embedding_pb2.EmbedRequest(faces=[crop_input(crop)]), timeout=10)
    np.testing.assert_allclose(
        vectors_of(response)[0], unit(fake_vectors(prepare_batch([crop])))[0], atol=1e-6
    )


def test_crops_and_encoded_faces_get_their_vectors_in_order(tmp_path: Path, fake_embedder: Embedder) -> None:
    crops = good_crops(3)
    faces = [crop_input(crops[0]), encoded_input(encode_png(crops[1])), crop_input(crops[2])]
    with serve(make_settings(tmp_path), fake_embedder) as served:
        response = served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces), timeout=10)
    assert response.model == "facenet-keras-128"
    assert [r.embedding.model for r in response.results] == ["facenet-keras-128"] * 3
    assert not any(r.HasField("error") for r in response.results)
    np.testing.assert_allclose(vectors_of(response), fake_embedder.embed(crops), atol=1e-6)


BAD_FACES = {
    "short crop": embedding_pb2.FaceInput(
        crop=common_pb2.RgbImage(rgb=bytes(20 * 20 * 3 - 1), width=20, height=20)
    ),
    "long crop": embedding_pb2.FaceInput(
        crop=common_pb2.RgbImage(rgb=bytes(20 * 20 * 3 + 3), width=20, height=20)
    ),
    "zero width": embedding_pb2.FaceInput(crop=common_pb2.RgbImage(rgb=b"", width=0, height=20)),
    "negative size": embedding_pb2.FaceInput(crop=common_pb2.RgbImage(rgb=b"", width=-2, height=-2)),
    "undecodable": encoded_input(b"this is not an image"),
    "empty encoded": encoded_input(b""),
    "truncated png": encoded_input(encode_png(np.zeros((40, 40, 3), dtype=np.uint8))[:60]),
    "tiny image": encoded_input(encode_png(np.zeros((8, 8, 3), dtype=np.uint8))),
    "no input": embedding_pb2.FaceInput(),
}


@pytest.mark.parametrize("name", list(BAD_FACES))
def test_a_bad_face_gets_its_own_error_and_the_others_are_answered(
    tmp_path: Path, fake_embedder: Embedder, name: str
) -> None:
    crops = good_crops(2)
    faces = [crop_input(crops[0]), BAD_FACES[name], crop_input(crops[1])]
    with serve(make_settings(tmp_path), fake_embedder) as served:
        response = served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces), timeout=10)
        assert len(response.results) == 3
        bad = response.results[1]
        assert bad.error.code == INVALID and bad.error.message
        assert not bad.HasField("embedding")
        good = np.array([list(response.results[i].embedding.values) for i in (0, 2)], dtype=np.float32)
        np.testing.assert_allclose(good, fake_embedder.embed(crops), atol=1e-6)
        assert_still_answers(served.stub)


def test_an_encoded_face_over_the_pixel_limit_is_resource_exhausted_for_that_face(
    tmp_path: Path, fake_embedder: Embedder
) -> None:
    crops = good_crops(2)
    big = encoded_input(encode_png(np.zeros((120, 120, 3), dtype=np.uint8)))  # a few hundred bytes
    faces = [crop_input(crops[0]), big, crop_input(crops[1])]
    with serve(make_settings(tmp_path, max_face_pixels=100 * 100), fake_embedder) as served:
        response = served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces), timeout=10)
        assert_still_answers(served.stub)
    assert [r.error.code for r in response.results] == [0, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], 0]
    assert response.results[0].HasField("embedding") and response.results[2].HasField("embedding")


def test_a_request_of_only_bad_faces_is_answered_without_a_model_call(
    tmp_path: Path, fake_embedder: Embedder, fake_infer: FakeInfer
) -> None:
    with serve(make_settings(tmp_path), fake_embedder) as served:
        response = served.stub.Embed(embedding_pb2.EmbedRequest(faces=[BAD_FACES["undecodable"]]), timeout=10)
    assert [r.error.code for r in response.results] == [INVALID]
    assert fake_infer.batch_sizes == []


@pytest.mark.parametrize(
    ("faces", "code"),
    [
        ([], grpc.StatusCode.INVALID_ARGUMENT),
        ([crop_input(np.zeros((4, 4, 3), dtype=np.uint8))] * 5, grpc.StatusCode.INVALID_ARGUMENT),
        ([crop_input(np.zeros((40, 40, 3), dtype=np.uint8))] * 3, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ([encoded_input(bytes(6000))] * 2, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ([crop_input(np.zeros((700, 700, 3), dtype=np.uint8))], grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
    ids=["no faces", "too many faces", "too many crop bytes", "too many encoded bytes", "over message limit"],
)
def test_request_limits_are_statuses(
    tmp_path: Path, fake_embedder: Embedder, faces: list, code: grpc.StatusCode
) -> None:
    # 40x40x3 = 4800 bytes: two fit in 10 000, three do not. 700x700x3 is over the message limit too.
    settings = make_settings(tmp_path, max_faces_per_request=4, max_request_bytes=10_000)
    with serve(settings, fake_embedder) as served:
        with pytest.raises(grpc.RpcError) as caught:
            served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces), timeout=10)
        assert caught.value.code() == code
        assert_still_answers(served.stub)


def test_a_full_queue_is_resource_exhausted_then_recovers(
    tmp_path: Path, fake_embedder: Embedder, fake_infer: FakeInfer
) -> None:
    settings = make_settings(tmp_path, max_queue=2, max_batch=1, max_delay_ms=0)
    request = embedding_pb2.EmbedRequest(faces=[crop_input(good_crops(1)[0])])
    with serve(settings, fake_embedder) as served, ThreadPoolExecutor(2) as pool:
        fake_infer.gate.clear()
        held = [pool.submit(served.stub.Embed, request, timeout=20) for _ in range(2)]
        fake_infer.entered.wait(5)
        while served.batcher.queue_depth() < 1:
            threading.Event().wait(0.01)
        with pytest.raises(grpc.RpcError) as caught:
            served.stub.Embed(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        fake_infer.gate.set()
        assert all(len(f.result(10).results) == 1 for f in held)
        assert_still_answers(served.stub)


def test_a_call_whose_deadline_passes_in_the_queue_never_reaches_the_model(
    tmp_path: Path, fake_embedder: Embedder, fake_infer: FakeInfer
) -> None:
    settings = make_settings(tmp_path, max_batch=1, max_delay_ms=0)
    request = embedding_pb2.EmbedRequest(faces=[crop_input(good_crops(1)[0])])
    with serve(settings, fake_embedder) as served, ThreadPoolExecutor(1) as pool:
        fake_infer.gate.clear()
        held = pool.submit(served.stub.Embed, request, timeout=20)
        fake_infer.entered.wait(5)
        with pytest.raises(grpc.RpcError) as caught:
            served.stub.Embed(request, timeout=0.2)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        fake_infer.gate.set()
        held.result(10)
        assert_still_answers(served.stub)
        assert served.batcher.stats.dropped == 1
    assert fake_infer.batch_sizes == [1, 1]


def test_model_info_names_the_model_and_counts_calls(
    tmp_path: Path, fake_embedder: Embedder, fake_infer: FakeInfer
) -> None:
    settings = make_settings(tmp_path, max_batch=8)
    with serve(settings, fake_embedder) as served:
        before = served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=10)
        faces = [crop_input(c) for c in good_crops(3)]
        served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces), timeout=10)
        after = served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=10)
    assert (before.name, before.dimension, before.input_size) == ("facenet-keras-128", 128, 160)
    assert before.preprocessing == DESCRIPTION
    assert before.threshold == pytest.approx(DEFAULT_THRESHOLD)
    assert before.threshold_source == "default"
    assert [p.name for p in before.operating_points] == ["far_1e-2", "far_1e-3", "eer", "best_accuracy"]
    assert before.operating_point == "far_1e-3"
    assert before.operating_points[1].threshold == pytest.approx(DEFAULT_THRESHOLD)
    assert before.operating_points[1].far_upper <= 1e-3
    assert (before.model_calls, before.faces_embedded) == (0, 0)
    assert (after.model_calls, after.faces_embedded) == (1, 3)
    assert after.max_batch == 8 and after.runtime == "fake"


def test_model_info_reports_the_calibrated_threshold(tmp_path: Path, fake_embedder: Embedder) -> None:
    settings = make_settings(tmp_path)
    save_calibration(settings.calibration_path, "facenet-keras-128", 0.93)
    save_calibration(settings.calibration_path, "another-model", 0.5)
    with serve(settings, fake_embedder) as served:
        info = served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=10)
    assert info.threshold == pytest.approx(0.93)
    assert info.threshold_source == "calibrated"
    assert (len(info.operating_points), info.operating_point) == (0, "")  # saved without points


def test_model_info_lists_the_saved_operating_points(tmp_path: Path, fake_embedder: Embedder) -> None:
    settings = make_settings(tmp_path)
    points = (
        OperatingPoint("far_1e-2", 1.2, 0.008, 0.0099, 0.95, 1333, 5453),
        OperatingPoint("far_1e-3", 1.09, 0.0002, 0.00087, 0.88, 1333, 5453),
    )
    save_calibration(
        settings.calibration_path,
        "facenet-keras-128",
        1.09,
        points=points,
        operating_point="far_1e-3",
        identification=OperatingPoint("identification", 1.05, 0.0, 0.025, 0.99, 117, 117),
    )
    with serve(settings, fake_embedder) as served:
        info = served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=10)
    assert [(p.name, round(p.threshold, 4), p.impostor_pairs) for p in info.operating_points] == [
        ("far_1e-2", 1.2, 5453),
        ("far_1e-3", 1.09, 5453),
    ]
    assert (info.operating_point, round(info.threshold, 4)) == ("far_1e-3", 1.09)
    assert info.operating_points[1].far_upper == pytest.approx(0.00087)
    assert info.identification_point.tar == pytest.approx(0.99)


def test_batching_off_reports_max_batch_one(
    tmp_path: Path, fake_embedder: Embedder, fake_infer: FakeInfer
) -> None:
    settings = make_settings(tmp_path, batching=False)
    with serve(settings, fake_embedder) as served:
        served.stub.Embed(
            embedding_pb2.EmbedRequest(faces=[crop_input(c) for c in good_crops(3)]), timeout=10
        )
        info = served.stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=10)
    assert info.max_batch == 1
    assert (info.model_calls, info.faces_embedded) == (3, 3)
    assert fake_infer.batch_sizes == [1, 1, 1]


def test_encoded_faces_over_the_request_pixel_budget_are_too_large_for_the_call(
    tmp_path: Path, fake_embedder: Embedder, fake_infer: FakeInfer
) -> None:
    """Three 100x100 PNGs (30000 pixels) against a budget of 25000 per request: the call is refused before
    any is decoded, with "too large" (never "try again"), and the server goes on."""
    faces = [encoded_input(encode_png(np.full((100, 100, 3), i, dtype=np.uint8))) for i in range(3)]
    settings = make_settings(tmp_path, max_face_pixels=10_000, max_request_pixels=25_000)
    with serve(settings, fake_embedder) as served:
        with pytest.raises(grpc.RpcError) as caught:
            served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces), timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too large" in (caught.value.details() or "")
        assert "30000 pixels" in (caught.value.details() or "")
        assert fake_infer.batch_sizes == []
        assert len(served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces[:2]), timeout=10).results) == 2
        assert_still_answers(served.stub)


def test_encoded_faces_that_fit_the_in_flight_budget_one_by_one_are_all_served(
    tmp_path: Path, fake_embedder: Embedder
) -> None:
    """Each face is decoded (and shrunk) alone, so a budget of one face's pixels serves a call of eight."""
    crops = [np.random.default_rng(i).integers(0, 256, size=(90, 100, 3), dtype=np.uint8) for i in range(8)]
    faces = [encoded_input(encode_png(crop)) for crop in crops]
    settings = make_settings(tmp_path, max_face_pixels=9_000, max_pixels_in_flight=9_000)
    with serve(settings, fake_embedder) as served:
        response = served.stub.Embed(embedding_pb2.EmbedRequest(faces=faces), timeout=10)
    assert not any(r.HasField("error") for r in response.results)
    np.testing.assert_allclose(vectors_of(response), fake_embedder.embed(crops), atol=1e-6)


def test_pixel_budgets_smaller_than_one_face_are_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="EMBEDDER_MAX_PIXELS_IN_FLIGHT"):
        make_settings(tmp_path, max_face_pixels=10_000, max_pixels_in_flight=9_999)

"""Settings from EMBEDDER_* and flags, and the real `python -m embedding_service` process end to end."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from embedding_service.config import Settings
from embedding_service.embedder import model_name
from embedding_service.service import SERVICE_NAME
from facerec.assets import Assets
from facerec.settings import SettingError
from facerec.v1 import embedding_pb2, embedding_pb2_grpc
from facerec_app.health_check import check
from tests.support.embedding import crop_input, vectors_of
from tests.support.servers import running


def test_defaults_come_from_facerec_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"FACEREC_HOME": str(tmp_path)})
    assert settings.weights_path == Assets(tmp_path).facenet_h5
    assert settings.calibration_path == Assets(tmp_path).threshold_file
    assert (settings.max_batch, settings.max_faces_per_request, settings.batching) == (32, 64, True)
    assert (settings.intra_threads, settings.inter_threads, settings.runtime) == (2, 1, "onnxruntime")
    assert settings.precision == "int8"
    assert Settings.parse(["--precision", "fp32"], {"FACEREC_HOME": str(tmp_path)}).precision == "fp32"
    assert (
        Settings.from_env({"FACEREC_HOME": str(tmp_path), "EMBEDDER_PRECISION": "fp32"}).precision == "fp32"
    )


def test_environment_then_flags_override(tmp_path: Path) -> None:
    env = {
        "FACEREC_HOME": str(tmp_path),
        "EMBEDDER_MAX_BATCH": "16",
        "EMBEDDER_MAX_DELAY_MS": "7.5",
        "EMBEDDER_WEIGHTS": str(tmp_path / "w.h5"),
        "EMBEDDER_BATCHING": "false",
        "EMBEDDER_PORT": "6000",
    }
    from_env = Settings.from_env(env)
    assert (from_env.max_batch, from_env.max_delay_ms, from_env.batching, from_env.port) == (
        16,
        7.5,
        False,
        6000,
    )
    assert from_env.weights_path == tmp_path / "w.h5"
    assert from_env.effective_max_batch == 1
    flags = Settings.parse(
        ["--port", "0", "--max-batch", "8", "--batching", "--max-faces-per-request", "5"], env
    )
    assert (flags.port, flags.max_batch, flags.batching, flags.max_faces_per_request) == (0, 8, True, 5)
    assert flags.max_delay_ms == 7.5


@pytest.mark.parametrize(
    "env",
    [
        {"EMBEDDER_MAX_BATCH": "many"},
        {"EMBEDDER_MAX_BATCH": "0"},
        {"EMBEDDER_RUNTIME": "pytorch"},
        {"EMBEDDER_PRECISION": "int4"},
    ],
)
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingError):
        Settings.from_env(env)


def test_a_bad_flag_exits_with_usage() -> None:
    with pytest.raises(SystemExit) as caught:
        Settings.parse(["--max-batch", "0"], {})
    assert caught.value.code == 2


@pytest.mark.model
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_the_process_serves_after_warm_up(
    fetched_assets: Assets, real_embedder, real_crops, precision: str
) -> None:
    """int8 (the default, built from the calibration set `facerec fetch` makes) is near the Keras model;
    fp32 equals it."""
    args = ["--max-delay-ms", "5"] + (["--precision", "fp32"] if precision == "fp32" else [])
    with running("embedding_service", args) as service:
        assert check(service.address, SERVICE_NAME)[0]
        with grpc.insecure_channel(service.address) as channel:
            stub = embedding_pb2_grpc.EmbedderStub(channel)
            response = stub.Embed(
                embedding_pb2.EmbedRequest(faces=[crop_input(c) for c in real_crops[:4]]), timeout=60
            )
            info = stub.GetModelInfo(embedding_pb2.GetModelInfoRequest(), timeout=10)
        assert service.stop() == 0
    expected = real_embedder.embed(real_crops[:4])
    if precision == "fp32":
        assert np.abs(vectors_of(response) - expected).max() <= 1e-5
    else:
        assert np.sum(vectors_of(response) * expected, axis=1).min() >= 0.995
    assert (info.name, info.precision, info.max_batch, info.model_calls, info.faces_embedded) == (
        model_name(precision),
        precision,
        32,
        1,
        4,
    )
    assert info.threshold_source in ("default", "calibrated")
    # Both precisions are served (EMBEDDER_MODELS' default), the chosen one first: the default model.
    other = "fp32" if precision == "int8" else "int8"
    assert [m.name for m in info.models] == [model_name(precision), model_name(other)]

"""The services serve from the files `facerec export` wrote, never import TensorFlow, and stop at start in
one sentence when the files are missing; `facerec export` writes and verifies them."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from embedding_service.config import Settings as EmbedderSettings
from embedding_service.embedder import Embedder
from facerec.assets import Assets
from facerec.onnx import ExportMissing
from facerec.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, gallery_pb2, gallery_pb2_grpc
from facerec_app.export_command import export_models
from facerec_app.supervisor import ServiceProcess
from tests.support.embedding import crop_input, vectors_of
from tests.support.processes import tensorflow_files_mapped
from tests.support.servers import running

ARGS = ["--host", "127.0.0.1", "--port", "0"]


def failed_start(module: str, home: Path, *args: str) -> tuple[int | None, list[str]]:
    """Starts a service on an empty FACEREC_HOME and returns its exit code and its output lines."""
    service = ServiceProcess.start(module, [*ARGS, *args], env={"FACEREC_HOME": str(home)})
    service.process.wait(120)
    service.stop()
    assert service.process.stdout is not None
    service.process.stdout.close()
    return service.process.returncode, [line.rstrip("\n") for line in service.output if line.strip()]


@pytest.mark.parametrize(
    ("module", "name", "what", "setting"),
    [
        ("embedding_service", "embedder", "FaceNet", "EMBEDDER_EXPORT_AT_START"),
        ("detector_service", "detector", "mtcnn nets", "DETECTOR_EXPORT_AT_START"),
    ],
)
def test_a_service_without_its_exported_files_stops_at_start_in_one_sentence(
    tmp_path: Path, module: str, name: str, what: str, setting: str
) -> None:
    code, lines = failed_start(module, tmp_path)
    assert code == 1
    assert lines == [
        f"{name}: No exported {what} in {tmp_path / 'models'}: run `facerec export` (pip install "
        f"'facerec[export]' first) to write the files, or set {setting}=true to export at start."
    ]


def test_export_without_the_weights_says_to_fetch_first(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "facerec_app.cli", "export"],
        capture_output=True,
        text=True,
        env={**os.environ, "FACEREC_HOME": str(tmp_path)},
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"facerec: No FaceNet weights at {tmp_path / 'models' / 'facenet_keras.h5'}: run `facerec fetch` first.\n"
    )


@pytest.fixture(scope="module")
def exported(fetched_assets: Assets) -> Assets:
    """The shared cache, with every export in it (tests/conftest.py's fetched_assets makes them)."""
    return fetched_assets


def linked_home(folder: Path, source: Assets, skip: tuple[str, ...] = ()) -> Path:
    """A FACEREC_HOME whose models/ links each file of source's models/ but those named in skip."""
    models = folder / "models"
    models.mkdir(parents=True)
    for path in (source.home / "models").iterdir():
        if path.name not in skip and not path.name.startswith("."):
            (models / path.name).symlink_to(path)
    return folder


@pytest.mark.model
def test_an_embedder_without_its_int8_file_stops_unless_told_to_serve_fp32(
    tmp_path: Path, exported: Assets
) -> None:
    home = linked_home(
        tmp_path, exported, skip=("facenet-int8.onnx", "facenet-int8.onnx.sha256", "facenet-int8.json")
    )
    settings = EmbedderSettings.from_env({"FACEREC_HOME": str(home)})
    with pytest.raises(ExportMissing) as caught:
        Embedder.load(settings)
    assert str(caught.value).startswith(
        f"No exported int8 FaceNet in {home / 'models'}: run `facerec export`"
    )
    assert Embedder.load(dataclasses.replace(settings, precision="fp32")).precision == "fp32"


@pytest.mark.model
def test_a_second_export_only_verifies_the_files_and_imports_no_tensorflow(
    tmp_path: Path, exported: Assets
) -> None:
    home = linked_home(tmp_path, exported)
    code = (
        "import sys; from facerec_app.cli import main; rc = main(['export']); "
        "print('tensorflow imported:', 'tensorflow' in sys.modules); sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "FACEREC_HOME": str(home)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    listed = {Path(line.split()[-1]).name for line in done.stdout.splitlines()[:-1]}
    assert {
        "mtcnn-1.0.0-pnet.onnx",
        "mtcnn-1.0.0-rnet.onnx",
        "mtcnn-1.0.0-onet.onnx",
        "facenet.onnx",
        "facenet-int8.onnx",
        "facenet-int8.json",
        "facenet-calibration.npz",
    } == listed
    assert done.stdout.splitlines()[-1] == "tensorflow imported: False"


@pytest.mark.model
def test_serving_embedder_and_gallery_never_load_tensorflow(
    tmp_path: Path, exported: Assets, train_images
) -> None:
    from facerec.images import decode_image

    crop = decode_image(train_images[0][1].read_bytes())[40:200, 40:200].copy()
    env = {"FACEREC_HOME": str(exported.home)}
    with running("embedding_service", env=env) as embedder:
        with grpc.insecure_channel(embedder.address) as channel:
            reply = embedding_pb2_grpc.EmbedderStub(channel).Embed(
                embedding_pb2.EmbedRequest(faces=[crop_input(crop)]), timeout=60
            )
        vector = vectors_of(reply)[0]
        assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)
        assert tensorflow_files_mapped(embedder.process.pid) == []

        gallery_args = [
            *("--store", str(tmp_path / "g.sqlite")),
            *("--embedder", embedder.address, "--detector", "127.0.0.1:1"),
            *("--calibration", str(tmp_path / "none.json")),
        ]
        with running("gallery", gallery_args, env=env) as gallery:
            with grpc.insecure_channel(gallery.address) as channel:
                stub = gallery_pb2_grpc.GalleryStub(channel)
                embedding = common_pb2.Embedding(values=vector.tolist(), model=reply.model)
                enrolled = stub.Enroll(
                    gallery_pb2.EnrollRequest(identity="ada", embeddings=[embedding]), timeout=60
                )
                found = stub.Identify(gallery_pb2.IdentifyRequest(embedding=embedding), timeout=60)
            assert len(enrolled.results) == 1
            assert found.faces[0].identity == "ada"
            assert tensorflow_files_mapped(gallery.process.pid) == []


@pytest.mark.model
def test_export_writes_every_file_the_services_load_with_its_checksum(
    tmp_path: Path, fetched_assets: Assets
) -> None:
    """From the fetched weights, data and calibration crops alone (as the image's export stage has them)."""
    import json

    from facerec.integrity import read_checked

    (tmp_path / "models").mkdir()
    (tmp_path / "data").symlink_to(fetched_assets.home / "data")
    for name in ("facenet_keras.h5", "facenet-calibration.npz"):
        (tmp_path / "models" / name).symlink_to(fetched_assets.home / "models" / name)
    files = export_models(Assets(tmp_path))
    names = {path.name for path in files}
    assert {"facenet.onnx", "facenet-int8.onnx", "mtcnn-1.0.0-pnet.onnx", "mtcnn-1.0.0-onet.onnx"} <= names
    for path in files:
        if path.suffix == ".onnx":
            assert read_checked(path), path  # present, and matching the checksum written beside it
    record = json.loads((tmp_path / "models" / "facenet-int8.json").read_text())
    assert record["accepted"]
    settings = EmbedderSettings.from_env({"FACEREC_HOME": str(tmp_path)})
    assert Embedder.load(settings).precision == "int8"

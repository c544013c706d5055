"""facerec-client as a user gets it: its wheel built from clients/python, installed into a fresh venv (no
system site packages, nothing of this project's environment) where pip fetches grpcio and protobuf only,
and its one-liners (and the README's Python example) run there against a gallery over the real detector
and embedder processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from embedding_service.embedder import model_name
from facerec.server import Health
from gallery.backend import open_gallery
from gallery.clients import DetectorClient, EmbedderClient
from gallery.config import Settings
from gallery.service import SERVICE_NAME, build_server
from tests import readme

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parents[2]
# The real embedder serves its default precision, int8 (as tests/e2e/test_gallery_e2e.py).
MODEL = model_name("int8")
# What a fresh venv may hold after installing the wheel: the client, its two dependencies and theirs.
ALLOWED = {
    "facerec-client",
    "grpcio",
    "protobuf",
    "typing-extensions",
    "typing_extensions",
    "pip",
    "setuptools",
}

# Runs in the fresh venv: the README's one-liners, an array picture without numpy, and an error's class.
SCRIPT = """
import json, sys
import facerec_client

names = json.loads(sys.argv[1])


class Rgb:
    # An (h, w, 3) uint8 array as numpy describes one, without numpy.
    def __init__(self, path, height, width):
        self.__array_interface__ = {
            "shape": (height, width, 3), "typestr": "|u1", "data": open(path, "rb").read(), "version": 3
        }


out = {"modules": sorted(m.split(".")[0] for m in sys.modules)}
enrolled = facerec_client.enroll(names["who"], names["enroll"])
out["enrolled"] = [r.outcome.value for r in enrolled.results]
found = facerec_client.identify(names["probe"])
out["identified"] = [f.identity for f in found.faces]
out["array"] = [f.identity for f in facerec_client.identify(Rgb(*names["rgb"])).faces]
out["same"] = facerec_client.verify(names["probe"], names["enroll"][0]).match
out["different"] = facerec_client.verify(names["probe"], names["other"]).match
try:
    facerec_client.identify(b"not a picture")
except facerec_client.FacerecError as exc:
    out["error"] = [type(exc).__name__, exc.reason, str(exc)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def gallery_address(inference_services, tmp_path_factory) -> Iterator[str]:
    """A gallery on port 0 over the real detector and embedder processes, with an empty store."""
    detector, embedder = inference_services
    folder = tmp_path_factory.mktemp("gallery")
    settings = Settings(
        store=folder / "g.sqlite", calibration_path=folder / "none.json", host="127.0.0.1", port=0
    )
    gallery = open_gallery(
        settings.store,
        MODEL,
        DetectorClient(detector.address, timeout_s=120),
        EmbedderClient(embedder.address, timeout_s=120),
    )
    health = Health([SERVICE_NAME])
    server, port = build_server(settings, gallery, health)
    server.start()
    health.set_serving()
    yield f"127.0.0.1:{port}"
    server.stop(0)
    gallery.close()


def fresh_env(**extra: str) -> dict[str, str]:
    """This environment without what would leak this checkout into the venv (PYTHONPATH, VIRTUAL_ENV)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> Path:
    """A fresh venv holding the facerec-client wheel and what pip fetched for it."""
    work = tmp_path_factory.mktemp("client-wheel")
    source = work / "src"
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    shutil.copytree(ROOT / "clients" / "python", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + [str(source), "--wheel-dir", str(work / "dist")],
        check=True,
        timeout=300,
        env=fresh_env(),
    )
    (wheel,) = (work / "dist").glob("facerec_client-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=fresh_env())
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        timeout=600,
        env=fresh_env(),
    )
    return venv


def test_the_wheel_brings_grpcio_and_protobuf_only(client_venv: Path) -> None:
    listed = subprocess.run(
        [str(client_venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=fresh_env(),
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"facerec-client", "grpcio", "protobuf"} <= installed
    assert not installed & {
        "numpy",
        "onnxruntime",
        "tensorflow",
        "tensorflow-cpu",
        "googleapis-common-protos",
    }
    assert installed <= ALLOWED, installed - ALLOWED


def test_the_one_liners_run_in_the_fresh_venv_against_the_real_services(
    client_venv: Path, gallery_address: str, train_images, val_images, tmp_path: Path
) -> None:
    people = sorted({who for who, _ in train_images})
    who, other = people[0], people[1]
    enroll = [str(p) for name, p in train_images if name == who][:3]
    probe = next(p for name, p in val_images if name == who)
    with Image.open(probe) as picture:
        rgb = np.asarray(picture.convert("RGB"))
    (tmp_path / "probe.rgb").write_bytes(rgb.tobytes())
    names = {
        "who": who,
        "enroll": enroll,
        "probe": str(probe),
        "other": str(next(p for name, p in val_images if name == other)),
        "rgb": [str(tmp_path / "probe.rgb"), rgb.shape[0], rgb.shape[1]],
    }
    done = subprocess.run(
        [str(client_venv / "bin" / "python"), "-c", SCRIPT, json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # not the checkout: `import facerec_client` must find the installed wheel
        env=fresh_env(FACEREC_GALLERY=gallery_address),
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert not {"numpy", "facerec", "google.rpc"} & set(out["modules"])
    assert out["enrolled"] == ["ENROLLED"] * 3
    assert who in out["identified"] and who in out["array"]
    assert (out["same"], out["different"]) == (True, False)
    assert out["error"][:2] == ["InvalidArgument", "INVALID_ARGUMENT"]
    assert out["error"][2].endswith(".")
    with grpc.insecure_channel(gallery_address) as channel:  # the gallery still answers after the error
        grpc.channel_ready_future(channel).result(timeout=30)


def test_the_readme_python_example_prints_what_the_readme_shows(
    client_venv: Path, gallery_address: str, fetched_assets
) -> None:
    section = readme.section("Calling facerec from another language")
    (snippet,) = readme.blocks("python", section)
    (shown,) = readme.blocks("text", section)
    done = subprocess.run(
        [str(client_venv / "bin" / "python"), "-c", snippet],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=fetched_assets.dataset,  # as the README says: from inside the 5-celebrity data folder
        env=fresh_env(FACEREC_GALLERY=gallery_address),
    )
    assert done.returncode == 0, done.stderr
    assert readme.shape(done.stdout) == readme.shape(shown), done.stdout

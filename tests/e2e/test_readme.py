"""The README, followed as a new user would: `facerec serve`, the tour's commands run exactly as written
(from inside a copy of the data folder) with the output the README shows, the Node.js example against
the same real services, and afterwards eval of that folder still works (the tour once left its report
there and broke every later eval and `make test`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from facerec_app.folders import labelled_set
from tests import readme

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "examples" / "node" / "node_modules"


@pytest.fixture(scope="module")
def home(tmp_path_factory, fetched_assets) -> Path:
    """A FACEREC_HOME of its own (the tour saves a calibration and a store there) sharing the weights."""
    path = tmp_path_factory.mktemp("home")
    (path / "models").symlink_to(fetched_assets.home / "models")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory, fetched_assets) -> Path:
    """A copy of the 5-celebrity folder: the tour runs inside it and must leave it readable by eval."""
    target = tmp_path_factory.mktemp("data") / fetched_assets.dataset.name
    shutil.copytree(fetched_assets.dataset, target)
    return target


@pytest.fixture(scope="module")
def served(home: Path) -> Iterator[tuple[dict[str, str], list[str], list[str]]]:
    """`facerec serve` on free ports with the default store under FACEREC_HOME; yields (addresses,
    stdout lines, stderr lines)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "facerec_app.cli", "serve"]
        + ["--detector-port", "0", "--embedder-port", "0", "--gallery-port", "0", "--gateway-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "FACEREC_HOME": str(home), "PYTHONUNBUFFERED": "1"},
    )
    addresses: dict[str, str] = {}
    out: list[str] = []
    err: list[str] = []
    ready = threading.Event()

    def read_out() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            out.append(line)
            match = re.match(r"\s+(detector|embedder|gallery|gateway)\s+(\S+)", line)
            if match:
                addresses[match.group(1)] = match.group(2)
            if line.startswith("Ctrl-C to stop."):
                ready.set()
        ready.set()

    def read_err() -> None:
        assert process.stderr is not None
        err.extend(process.stderr)

    threading.Thread(target=read_out, daemon=True).start()
    threading.Thread(target=read_err, daemon=True).start()
    ready.wait(300)
    assert len(addresses) == 4, f"facerec serve did not come up: {''.join(out + err)}"
    yield addresses, out, err
    process.terminate()
    process.wait(60)


def run(line: str, cwd: Path, env: dict[str, str]) -> str:
    """A README command line through bash, `facerec` being this environment's; stdout and stderr together."""
    done = subprocess.run(
        ["bash", "-c", line],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory) -> Path:
    """A `facerec` command running this checkout's CLI with this interpreter, as the installed console
    script does (an install made before a move of the CLI would run the old one)."""
    folder = tmp_path_factory.mktemp("bin")
    script = folder / "facerec"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m facerec_app.cli "$@"\n')
    script.chmod(0o755)
    return folder


def user_env(home: Path, addresses: dict[str, str], bin_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FACEREC_HOME": str(home),
        "FACEREC_GALLERY": addresses["gallery"],
        "FACEREC_DETECTOR": addresses["detector"],
        "FACEREC_EMBEDDER": addresses["embedder"],
    }


def test_serve_prints_what_the_readme_shows_and_no_framework_chatter(served, home: Path) -> None:
    _, out, err = served
    tour = readme.console_commands(readme.section("A five-minute tour"))
    (shown,) = [c for c in tour if c.line == "facerec serve"]
    printed = "".join(out).replace(str(home), "~/.cache/facerec")
    assert readme.shape(printed) == readme.shape(shown.output)
    # The services' own log lines are echoed with their name; TensorFlow's C++ start-up lines are not.
    assert all(line.startswith(("[detector] ", "[embedder] ", "[gallery] ", "[gateway] ")) for line in err), (
        err
    )
    assert not any("oneDNN" in line or "absl::InitializeLog" in line for line in err), err


def test_the_tour_runs_as_written_and_leaves_the_data_folder_readable(
    served, home: Path, data: Path, bin_dir: Path
) -> None:
    addresses, _, _ = served
    env = user_env(home, addresses, bin_dir)
    before = labelled_set(data)
    tour = [
        c for c in readme.console_commands(readme.section("A five-minute tour")) if c.line != "facerec serve"
    ]
    assert len(tour) >= 12
    for command in tour:
        printed = run(command.line, data, env).replace(str(home), "~/.cache/facerec")
        assert readme.shape(printed) == readme.shape(command.output), f"$ {command.line}\n{printed}"
    assert (data / "madonna.png").is_file()  # --annotate wrote where the README says
    # The report went beside the data folder, and the folder reads as before: a second eval works.
    assert (data.parent / f"{data.name}-eval-report" / "report.json").is_file()
    assert labelled_set(data) == before
    again = run("facerec eval . --out ../second-report", data, env)
    assert "open-set identification" in again and "Traceback" not in again, again


def test_the_readme_node_example_runs_against_real_services(
    served, home: Path, data: Path, bin_dir: Path, tmp_path: Path
) -> None:
    addresses, _, _ = served
    assert shutil.which("node"), "`make test` installs Node.js (the README's example is tested)"
    assert NODE_MODULES.is_dir(), "run `make node-example` (part of `make test`) to install the packages"
    (snippet,) = readme.blocks("js", readme.section("Calling facerec from another language"))
    (tmp_path / "readme.js").write_text(snippet)
    (tmp_path / "protos").symlink_to(ROOT / "protos")
    shutil.copy(
        data / "val" / "madonna" / "httpcdnfuncheapcomwpcontentuploadsVOGUEjpg.jpg", tmp_path / "face.jpg"
    )
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 120, 120)).save(tmp_path / "wall.png")
    env = {**user_env(home, addresses, bin_dir), "NODE_PATH": str(NODE_MODULES)}
    enrolled = run("facerec enroll train", data, env)  # the tour may have removed some: enroll is idempotent
    assert "Traceback" not in enrolled
    named = subprocess.run(
        ["node", "readme.js"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert named.returncode == 0, named.stderr
    (line,) = named.stdout.splitlines()
    who, distance, nearest, *candidates = line.split(" ")
    assert (who, nearest) == ("madonna", "nearest:") and 0 <= float(distance) < 1.06
    assert len(" ".join(candidates).split(", ")) == 3  # top_k: 3 reached the gallery (its default is 5)
    empty = subprocess.run(
        ["node", "readme.js", "wall.png"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "no face\n", "")

"""The facerec command end to end: `facerec serve` with real services, the client commands, eval, demo, SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from PIL import Image

from facerec.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, gallery_pb2, gallery_pb2_grpc

pytestmark = pytest.mark.model


def facerec(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facerec_app.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if re.search(rf"^PPid:\s+{pid}$", status, re.M):
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return not re.search(r"^State:\s+Z", status, re.M)


@pytest.fixture(scope="module")
def home(tmp_path_factory, fetched_assets) -> Path:
    """A FACEREC_HOME of its own (so a saved threshold stays in this test) sharing the fetched weights and data."""
    path = tmp_path_factory.mktemp("home")
    (path / "models").symlink_to(fetched_assets.home / "models")
    (path / "data").symlink_to(fetched_assets.home / "data")
    return path


@pytest.fixture(scope="module")
def served(home: Path, tmp_path_factory):
    """`facerec serve` on free ports; yields (process, {name: address})."""
    store = tmp_path_factory.mktemp("store") / "gallery.sqlite"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "facerec_app.cli",
            "serve",
            "--detector-port",
            "0",
            "--embedder-port",
            "0",
            "--gallery-port",
            "0",
            "--gateway-port",
            "0",
            "--store",
            str(store),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "FACEREC_HOME": str(home), "PYTHONUNBUFFERED": "1"},
    )
    addresses: dict[str, str] = {}
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            match = re.match(r"\s+(detector|embedder|gallery|gateway)\s+(\S+)", line)
            if match:
                addresses[match.group(1)] = match.group(2)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 300
    while len(addresses) < 4 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert len(addresses) == 4, f"facerec serve did not come up: {''.join(lines)}"
    yield process, addresses
    if process.poll() is None:
        process.kill()
        process.wait(10)


def test_enroll_folder_reports_outcomes(served, fetched_assets) -> None:
    _, addresses = served
    done = facerec("enroll", str(fetched_assets.split("train")), "--gallery", addresses["gallery"], "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["images"] == 93
    assert summary.get("enrolled", 0) + summary.get("multiple_faces", 0) >= 92


def test_identify_json_names_the_person_and_annotate_writes_a_png(served, val_images, tmp_path: Path) -> None:
    _, addresses = served
    identity, path = val_images[0]
    out = tmp_path / "annotated.png"
    done = facerec("identify", str(path), "--gallery", addresses["gallery"], "--json", "--annotate", str(out))
    assert done.returncode == 0, done.stderr
    (reply,) = json.loads(done.stdout)  # a list, one entry per picture, even for one
    best = max(reply["faces"], key=lambda f: f["box"]["width"] * f["box"]["height"])
    assert best["known"] and best["identity"] == identity
    with Image.open(path) as original, Image.open(out) as drawn:
        assert drawn.format == "PNG"
        assert drawn.size == original.size


def test_the_gateway_of_facerec_serve_identifies_a_posted_picture(served, val_images) -> None:
    _, addresses = served
    identity, path = val_images[0]
    boundary = "facerec-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="face.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{addresses['gateway']}/v1/identify",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        reply = json.loads(answer.read())
    best = max(reply["faces"], key=lambda f: f["box"]["width"] * f["box"]["height"])
    assert best["known"] and best["identity"] == identity


def test_verify_two_pictures_of_one_person(served, val_images) -> None:
    _, addresses = served
    same = [p for who, p in val_images if who == "madonna"]
    # On RetinaFace's crops these two lie 1.136 apart: beyond the default far_1e-3 (int8: 1.1315), within
    # far_1e-2 (1.224).
    done = facerec("verify", str(same[0]), str(same[3]), "--gallery", addresses["gallery"])
    assert done.returncode == 3 and "(threshold 1.132 at far_1e-3)" in done.stdout, done.stderr
    done = facerec(
        "verify",
        str(same[0]),
        str(same[3]),
        "--gallery",
        addresses["gallery"],
        "--operating-point",
        "far_1e-2",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("same person") and "(threshold 1.224 at far_1e-2)" in done.stdout


def test_eval_writes_report_and_plot_and_saved_threshold_is_used(
    served, fetched_assets, home, tmp_path, val_images
) -> None:
    _, addresses = served
    out = tmp_path / "report"
    done = facerec(
        "eval",
        str(fetched_assets.dataset),
        "--detector",
        addresses["detector"],
        "--embedder",
        addresses["embedder"],
        "--out",
        str(out),
        "--save-threshold",
        env={"FACEREC_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert set(report["modes"]) == {"box", "similarity"} and report["chosen_mode"] in report["modes"]
    chosen = report["modes"][report["chosen_mode"]]
    points = {p["name"]: p for p in chosen["points"]}
    # 5453 different-person pairs support FAR 1e-2 and 1e-3 by their upper bound, not 1e-4.
    assert report["operating_point"] == "far_1e-3" and points["far_1e-3"]["far_upper"] <= 1e-3
    assert set(points) == {"far_1e-2", "far_1e-3", "eer", "best_accuracy"}
    assert [u["name"] for u in chosen["unsupported"]] == ["far_1e-4"]
    assert "far_1e-4       too few different-person pairs" in done.stdout
    default = points["far_1e-3"]["threshold"]
    assert 0 < default < points["far_1e-2"]["threshold"] < 2
    with Image.open(out / "roc.png") as plot:
        assert plot.format == "PNG"
    saved = json.loads((home / "calibration.json").read_text())["models"][report["model"]]
    assert saved["threshold"] == pytest.approx(default) and saved["operating_point"] == "far_1e-3"
    assert [p["name"] for p in saved["points"]] == [p["name"] for p in chosen["points"]]
    with grpc.insecure_channel(addresses["embedder"]) as channel:
        info = embedding_pb2_grpc.EmbedderStub(channel).GetModelInfo(
            embedding_pb2.GetModelInfoRequest(), timeout=30
        )
    assert info.threshold == pytest.approx(default, abs=1e-6)
    assert (info.threshold_source, info.operating_point) == ("calibrated", "far_1e-3")
    a, b = (p.read_bytes() for _, p in val_images[:2])
    with grpc.insecure_channel(addresses["gallery"]) as channel:
        stub = gallery_pb2_grpc.GalleryStub(channel)
        pair = {"image_a": common_pb2.Image(data=a), "image_b": common_pb2.Image(data=b)}
        reply = stub.Verify(gallery_pb2.VerifyRequest(**pair), timeout=60)
        loose = stub.Verify(gallery_pb2.VerifyRequest(**pair, operating_point="far_1e-2"), timeout=60)
    assert (reply.threshold, reply.operating_point) == (pytest.approx(default, abs=1e-6), "far_1e-3")
    assert loose.threshold == pytest.approx(points["far_1e-2"]["threshold"], abs=1e-6)
    assert loose.distance == pytest.approx(reply.distance)


@pytest.fixture()
def calibration_kept(home: Path) -> Iterator[Path]:
    """The module's calibration file, put back after the test (the demo test reads it later)."""
    path = home / "calibration.json"
    before = path.read_bytes() if path.exists() else None
    yield path
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(before)


def test_eval_calibrates_on_the_enrolled_faces_of_a_running_gallery(
    served, home, tmp_path, calibration_kept: Path
) -> None:
    _, addresses = served
    with grpc.insecure_channel(addresses["gallery"]) as channel:
        stats = gallery_pb2_grpc.GalleryStub(channel).Stats(gallery_pb2.StatsRequest(), timeout=30)
    out = tmp_path / "report"
    file_before = calibration_kept.read_bytes() if calibration_kept.exists() else None
    done = facerec(
        "eval",
        "--gallery",
        addresses["gallery"],
        "--out",
        str(out),
        "--save-threshold",
        env={"FACEREC_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    mode = report["modes"]["gallery"]
    assert (mode["faces"], mode["identities"]) == (stats.faces, stats.identities)
    assert mode["same_pairs"] + mode["different_pairs"] == stats.faces * (stats.faces - 1) // 2
    named = {p["name"] for p in mode["points"]} | {u["name"] for u in mode["unsupported"]}
    assert {"far_1e-2", "far_1e-3", "far_1e-4", "eer", "best_accuracy"} <= named
    # Saved in the gallery's store (SetOperatingPoints), for every replica; no file of this process.
    assert f"to collection default of {addresses['gallery']}" in done.stdout
    assert (calibration_kept.read_bytes() if calibration_kept.exists() else None) == file_before
    with grpc.insecure_channel(addresses["gallery"]) as channel:
        now = gallery_pb2_grpc.GalleryStub(channel).Stats(gallery_pb2.StatsRequest(), timeout=30)
    assert now.operating_point == report["operating_point"]
    assert now.threshold == pytest.approx(report["recommended_threshold"], abs=1e-6)
    sampled = facerec("eval", "--gallery", addresses["gallery"], "--out", str(out), "--max-faces", "40")
    assert sampled.returncode == 0, sampled.stderr
    assert f"calibrating on 40 of {stats.faces} enrolled faces" in sampled.stderr
    assert json.loads((out / "report.json").read_text())["modes"]["gallery"]["faces"] == 40


def test_verify_names_an_operating_point_and_an_unknown_one_is_one_sentence(served, val_images) -> None:
    _, addresses = served
    same = [p for who, p in val_images if who == "madonna"]
    done = facerec(
        "verify",
        str(same[0]),
        str(same[1]),
        "--gallery",
        addresses["gallery"],
        "--operating-point",
        "eer",
        "--json",
    )
    assert done.returncode in (0, 3), done.stderr
    assert json.loads(done.stdout)["operating_point"] == "eer"
    done = facerec(
        "verify",
        str(same[0]),
        str(same[1]),
        "--gallery",
        addresses["gallery"],
        "--operating-point",
        "far_1e-9",
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "facerec: The gallery answered INVALID_ARGUMENT: Unknown operating point 'far_1e-9'"
    )
    assert len(done.stderr.strip().splitlines()) == 1


def test_list_and_remove(served) -> None:
    _, addresses = served
    listed = json.loads(facerec("list", "--gallery", addresses["gallery"], "--json").stdout)
    assert {row["identity"] for row in listed} == {
        "ben_afflek",
        "elton_john",
        "jerry_seinfeld",
        "madonna",
        "mindy_kaling",
    }
    done = facerec("remove", "elton_john", "--gallery", addresses["gallery"])
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"removed elton_john \(\d+ faces\)\n", done.stdout)
    listed = json.loads(facerec("list", "--gallery", addresses["gallery"], "--json").stdout)
    assert "elton_john" not in {row["identity"] for row in listed}
    # One face, by the id `list --faces` shows.
    faces = {
        row["identity"]: row
        for row in json.loads(facerec("list", "--faces", "--json", "--gallery", addresses["gallery"]).stdout)
    }
    madonna = faces["madonna"]
    assert len(madonna["face_ids"]) == madonna["faces"] > 1
    done = facerec("remove-face", str(madonna["face_ids"][0]), "--gallery", addresses["gallery"])
    assert (done.returncode, done.stdout) == (0, f"removed face {madonna['face_ids'][0]} of madonna\n")
    faces = {
        row["identity"]: row
        for row in json.loads(facerec("list", "--faces", "--json", "--gallery", addresses["gallery"]).stdout)
    }
    assert faces["madonna"]["face_ids"] == madonna["face_ids"][1:]


def test_bad_use_is_one_sentence_and_nonzero(served, tmp_path: Path) -> None:
    _, addresses = served
    unreadable = tmp_path / "missing.jpg"
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    cases = [
        ("nope",),
        ("enroll", str(tmp_path / "no-such-folder"), "--gallery", addresses["gallery"]),
        ("identify", str(unreadable), "--gallery", addresses["gallery"]),
        ("identify", str(text), "--gallery", addresses["gallery"]),
        ("list", "--gallery", "127.0.0.1:9"),
        ("remove", "nobody", "--gallery", addresses["gallery"]),
    ]
    for args in cases:
        done = facerec(*args)
        assert done.returncode != 0, args
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("facerec"), (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_a_bad_picture_is_named_and_the_others_answered_and_nothing_enrolled_is_exit_1(
    served, val_images, tmp_path: Path
) -> None:
    _, addresses = served
    bad = tmp_path / "people" / "ann" / "scan.jpg"
    bad.parent.mkdir(parents=True)
    bad.write_text("not a picture")
    good = val_images[0][1]
    done = facerec("identify", str(bad), str(good), "--gallery", addresses["gallery"], "--json")
    assert done.returncode == 1
    assert done.stderr.startswith(f"facerec: {bad}: The gallery answered INVALID_ARGUMENT:"), done.stderr
    first, second = json.loads(done.stdout)
    assert first["image"] == str(bad) and "error" in first
    assert second["faces"] and second["faces"][0]["known"]
    # A FIFO (which would block a read forever) and a dangling link beside it: listed, skipped, no hang.
    os.mkfifo(bad.parent / "pipe.jpg")
    (bad.parent / "gone.jpg").symlink_to(bad.parent / "deleted.jpg")
    enrolled = facerec("enroll", str(tmp_path / "people"), "--gallery", addresses["gallery"], timeout=120)
    assert enrolled.returncode == 1
    assert enrolled.stdout == "1 picture of 1 identity: 0 enrolled, 3 failed\n"
    listed = enrolled.stderr.splitlines()[-4:-1]
    assert listed[:2] == [
        f"facerec: {bad.parent / 'gone.jpg'}: a symlink to nothing (its target is missing)",
        f"facerec: {bad.parent / 'pipe.jpg'}: not a regular file (a FIFO)",
    ]
    assert listed[2].startswith(f"facerec: {bad}: ") and "decode" in listed[2], listed
    assert enrolled.stderr.splitlines()[-1] == "facerec: nothing was enrolled (see the reasons above)."


def test_a_second_collection_keeps_its_people_apart_and_moves_to_int8_with_its_progress(
    served, fetched_assets
) -> None:
    """`facerec collections` and `--collection` against the real services: created on fp32, enrolled and
    identified in, invisible from default, re-embedded to int8 from its kept pictures (progress as plain
    lines, stderr not being a terminal), still right after, then deleted."""
    _, addresses = served
    gallery = ["--gallery", addresses["gallery"]]
    train, val = fetched_assets.split("train"), fetched_assets.split("val")
    made = facerec("collections", "create", "archive", "--model", "facenet-keras-128", "--json", *gallery)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["model"] == "facenet-keras-128"
    default_before = facerec("list", "--json", *gallery)
    pictures = sorted((train / "madonna").iterdir())[:3]
    enrolled = facerec(
        "enroll", "--collection", "archive", "--identity", "madonna", *map(str, pictures), *gallery
    )
    assert enrolled.returncode == 0, enrolled.stderr
    madonna = str(sorted((val / "madonna").iterdir())[0])
    jerry = str(sorted((val / "jerry_seinfeld").iterdir())[0])
    found = facerec("identify", "--collection", "archive", madonna, jerry, "--json", *gallery)
    assert found.returncode == 0, found.stderr
    names = [[f["identity"] for f in item["faces"] if f["known"]] for item in json.loads(found.stdout)]
    assert names[0] == ["madonna"] and "jerry_seinfeld" not in names[1]
    listed = facerec("list", "--json", *gallery, env={"FACEREC_COLLECTION": "archive"})
    assert [p["identity"] for p in json.loads(listed.stdout)] == ["madonna"]
    assert facerec("list", "--json", *gallery).stdout == default_before.stdout  # default untouched

    moved = facerec("collections", "reembed", "archive", "--model", "facenet-keras-128-int8", *gallery)
    assert moved.returncode == 0, moved.stderr
    progress = [line for line in moved.stderr.splitlines() if line.startswith("reembed archive: ")]
    assert progress and progress[-1].startswith("reembed archive: 3/3 faces"), moved.stderr
    assert moved.stdout.startswith("re-embedded archive: 3 faces to facenet-keras-128-int8"), moved.stdout
    again = facerec("identify", "--collection", "archive", madonna, "--json", *gallery)
    assert [f["identity"] for f in json.loads(again.stdout)[0]["faces"] if f["known"]] == ["madonna"]
    shown = json.loads(facerec("collections", "list", "--json", *gallery).stdout)
    assert {c["name"]: c["model"] for c in shown}["archive"] == "facenet-keras-128-int8"

    deleted = facerec("collections", "delete", "archive", *gallery)
    assert deleted.returncode == 0 and deleted.stdout == "deleted archive (1 identity, 3 faces)\n"
    gone = facerec("identify", "--collection", "archive", madonna, *gallery)
    assert gone.returncode == 1 and "archive" in gone.stderr and len(gone.stderr.splitlines()) == 1


def test_serve_stops_every_child_on_sigterm(served) -> None:
    process, _ = served
    children = children_of(process.pid)
    assert len(children) == 4
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in children)


def test_demo_prints_val_accuracy_of_100_percent(home) -> None:
    done = facerec("demo", env={"FACEREC_HOME": str(home)}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "val accuracy: 100.0%" in done.stdout, done.stdout
    assert re.search(
        r"verification on \d+ val pairs at far_1e-3 \(threshold 1\.\d+; on its \d+ calibration different-person "
        r"pairs FAR \d+\.\d+%, <= \d+\.\d+% at 95%, and TAR \d+\.\d+% of \d+ same-person pairs\)",
        done.stdout,
    ), done.stdout

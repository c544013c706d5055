"""`facerec collections …` and `--collection` against a stand-in gallery that records what it is sent:
every gallery command works on --collection (else FACEREC_COLLECTION, else default), the collections'
verbs print what they did, reembed follows its operation to the end with progress on stderr and lists the
faces it could not carry, and eval --gallery --save-threshold stores the points in the collection."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facerec.calibration_proto import point_proto
from facerec_app import evaluation
from facerec_app.cli import main
from facerec_app.evaluate_command import save_to_collection
from tests.support.recorded_gallery import Recorded, recorded_gallery


@pytest.fixture
def gallery() -> Iterator[tuple[Recorded, str]]:
    with recorded_gallery() as served:
        yield served


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("command", "rpc"),
    [
        (["identify", "{picture}"], "Identify"),
        (["verify", "{picture}", "{picture}"], "Verify"),
        (["enroll", "--identity", "ann", "{picture}"], "Enroll"),
        (["list", "--faces"], "GetIdentity"),
        (["remove-face", "3"], "RemoveFace"),
    ],
)
def test_every_gallery_command_works_on_its_collection_else_the_environments_else_default(
    gallery, tmp_path: Path, capsys, monkeypatch, command: list[str], rpc: str
) -> None:
    servicer, address = gallery
    picture = tmp_path / "a.jpg"
    picture.write_bytes(b"face")
    argv = [part.format(picture=picture) for part in command] + ["--gallery", address]
    servicer.identities = ["ann"]
    monkeypatch.delenv("FACEREC_COLLECTION", raising=False)
    run(capsys, *argv)
    run(capsys, *argv, "--collection", "archive")
    monkeypatch.setenv("FACEREC_COLLECTION", "door")
    run(capsys, *argv)
    run(capsys, *argv, "--collection", "default")
    sent = [request.collection for method, request in servicer.sent if method == rpc]
    assert sent == ["", "archive", "door", "default"]


def test_collections_list_create_and_delete(gallery, capsys) -> None:
    servicer, address = gallery
    code, out, _ = run(capsys, "collections", "list", "--gallery", address)
    assert code == 0
    assert out.splitlines() == [
        "archive\t2 identities, 5 faces\tfacenet-keras-128, mtcnn, similarity",
        "default\t2 identities, 5 faces\tfacenet-keras-128, mtcnn, similarity",
        "2 collections",
    ]
    code, out, _ = run(
        capsys,
        *("collections", "create", "door", "--gallery", address, "--model", "facenet-keras-128-int8"),
        *("--detector", "retinaface", "--alignment", "box", "--keep-source-pictures"),
    )
    assert code == 0 and out == "created door: facenet-keras-128-int8, mtcnn, similarity\n"
    sent = servicer.sent[-1][1]
    assert (sent.name, sent.contract.model, sent.contract.detector, sent.contract.alignment) == (
        "door",
        "facenet-keras-128-int8",
        "retinaface",
        "box",
    )
    assert sent.keep_source_pictures
    code, out, err = run(capsys, "collections", "create", "taken", "--gallery", address)
    assert code == 1 and err == (
        "facerec: The gallery answered ALREADY_EXISTS: A collection named 'taken' exists already.\n"
    )
    code, out, _ = run(capsys, "collections", "delete", "door", "--gallery", address, "--json")
    assert code == 0 and json.loads(out) == {"name": "door", "identities_removed": 2, "faces_removed": 5}
    with pytest.raises(SystemExit) as refused:
        main(["collections", "create", "x", "--gallery", address, "--detector", "haar"])
    assert refused.value.code == 2 and "invalid choice: 'haar'" in capsys.readouterr().err


def test_reembed_follows_the_operation_with_plain_progress_lines_and_lists_the_failed_faces(
    gallery, capsys
) -> None:
    servicer, address = gallery
    code, out, err = run(
        capsys,
        *("collections", "reembed", "archive", "--gallery", address, "--model", "facenet-keras-128-int8"),
        *("--drop-failed", "--poll-s", "0.001"),
    )
    assert code == 0
    sent = servicer.sent[0][1]
    assert (sent.collection, sent.contract.model, sent.drop_failed) == (
        "archive",
        "facenet-keras-128-int8",
        True,
    )
    assert err.splitlines() == [
        "started operations/9",
        "reembed archive: 2/5 faces (embedding)",
        "reembed archive: 4/5 faces (embedding)",
        "reembed archive: 5/5 faces (done)",
        "facerec: face 4 of ann: No kept picture.",
    ]
    assert out == (
        "re-embedded archive: 5 faces to facenet-keras-128-int8, mtcnn, similarity; "
        "1 face left out (listed above)\n"
    )


def test_a_reembed_that_fails_exits_1_with_its_sentence(gallery, capsys) -> None:
    servicer, address = gallery
    servicer.fail_operation = True
    code, out, err = run(
        capsys, "collections", "reembed", "archive", "--gallery", address, "--poll-s", "0.001"
    )
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == (
        "facerec: archive was not re-embedded (FAILED_PRECONDITION): 1 face cannot be re-embedded; "
        "give --drop-failed to leave it out."
    )


def test_eval_on_a_gallery_saves_its_points_in_the_collection(gallery) -> None:
    servicer, address = gallery
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 16))
    vectors = np.concatenate([c + 0.05 * rng.normal(size=(6, 16)) for c in centres]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = [name for name in "abcd" for _ in range(6)]
    report, _ = evaluation.report(vectors, labels, images=len(labels))
    args = argparse.Namespace(gallery=address, token="", tls_ca="", collection="archive")
    said = save_to_collection(args, "facenet-keras-128", report)
    method, sent = servicer.sent[-1]
    assert (
        method == "SetOperatingPoints" and sent.collection == "archive" and sent.model == "facenet-keras-128"
    )
    assert sent.operating_point == report.operating_point
    # Every field of every point arrives as fitted.
    assert list(sent.operating_points) == [point_proto(p) for p in report.points]
    assert sent.identification_point == point_proto(report.identification.point)
    assert said.startswith(f"saved thresholds for facenet-keras-128 to collection archive of {address}")


def test_on_a_terminal_reembed_draws_one_progress_bar_to_its_end(gallery, monkeypatch, capsys) -> None:
    _, address = gallery

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = main(["collections", "reembed", "archive", "--gallery", address, "--poll-s", "0.001"])
    assert code == 0
    drawn = terminal.getvalue()
    assert "reembed archive" in drawn and "5/5" in drawn and "\r" in drawn  # one bar, redrawn in place
    assert "reembed archive: 2/5 faces" not in drawn  # not the plain lines

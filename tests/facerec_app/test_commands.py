"""The client commands against a stand-in gallery: what they print, name and refuse, and their exit codes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facerec_app.cli import NEWCOMER_ORDER, build_parser, main
from facerec_app.enrolment import count
from tests.support.fake_gallery import FakeGallery, fake_gallery


@pytest.fixture
def gallery() -> tuple[FakeGallery, str]:
    with fake_gallery() as served:
        yield served


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def people(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_count_says_one_face_and_two_faces() -> None:
    assert [count(1, "face"), count(2, "face"), count(0, "face")] == ["1 face", "2 faces", "0 faces"]
    assert [count(1, "identity"), count(5, "identity"), count(2, "picture")] == [
        "1 identity",
        "5 identities",
        "2 pictures",
    ]


@pytest.mark.timeout(120)
def test_enroll_skips_a_fifo_and_links_out_and_prints_the_summary_with_every_failure(
    gallery, tmp_path: Path, capsys
) -> None:
    servicer, address = gallery
    folder = people(
        tmp_path / "people",
        {"ann/1.jpg": b"face 1", "ann/2.jpg": b"no face", "bob/1.jpg": b"face 2", "bob/bad.jpg": b"junk"},
    )
    (tmp_path / "passwd.jpg").write_bytes(b"face of a system file")
    os.mkfifo(folder / "ann" / "pipe.jpg")
    (folder / "bob" / "gone.jpg").symlink_to(folder / "bob" / "deleted.jpg")
    (folder / "bob" / "outside.jpg").symlink_to(tmp_path / "passwd.jpg")
    code, out, err = run(capsys, "enroll", str(folder), "--gallery", address)
    assert code == 1
    assert out == "4 pictures of 2 identities: 2 enrolled, 1 no face, 4 failed\n"
    failed = [line for line in err.splitlines() if line.startswith("facerec: ")]
    assert failed == [
        f"facerec: {folder}/ann/pipe.jpg: not a regular file (a FIFO)",
        f"facerec: {folder}/bob/bad.jpg: The image could not be decoded.",
        f"facerec: {folder}/bob/gone.jpg: a symlink to nothing (its target is missing)",
        f"facerec: {folder}/bob/outside.jpg: a symlink to {tmp_path}/passwd.jpg, outside {folder} "
        "(--follow-symlinks reads it)",
        "facerec: 4 pictures failed (listed above).",
    ]
    assert sorted(data for _, data in servicer.faces.values()) == [b"face 1", b"face 2"]
    code, out, _ = run(capsys, "enroll", str(folder), "--gallery", address, "--follow-symlinks")
    assert code == 1 and "3 enrolled" in out and "3 failed" in out
    assert b"face of a system file" in [data for _, data in servicer.faces.values()]


def test_enroll_goes_through_facerec_client_which_resends_a_picture_the_gallery_was_too_busy_for(
    gallery, tmp_path: Path, capsys
) -> None:
    servicer, address = gallery
    picture = tmp_path / "ann.jpg"
    picture.write_bytes(b"busy face of ann")
    code, out, err = run(capsys, "enroll", "--identity", "ann", str(picture), "--gallery", address)
    assert (code, out, err) == (0, "1 picture of ann: 1 enrolled\n", "")
    assert servicer.enroll_calls == 2  # BUSY means none of the work was done: safe to send again
    assert list(servicer.faces.values()) == [("ann", b"face of ann")]


@pytest.mark.timeout(120)
def test_a_picture_over_a_budget_mid_folder_fails_alone_and_the_summary_still_comes(
    gallery, tmp_path: Path, capsys
) -> None:
    servicer, address = gallery
    folder = people(
        tmp_path,
        {"ann/1.jpg": b"face 1", "ann/2.jpg": b"too large", "ann/3.jpg": b"face 3", "bob/1.jpg": b"face 4"},
    )
    code, out, err = run(capsys, "enroll", str(folder), "--gallery", address, "--json")
    assert code == 1
    assert '"stored": 3' in out and '"not_sent": 0' in out
    assert f"facerec: {folder}/ann/2.jpg: The gallery answered RESOURCE_EXHAUSTED: " in err
    assert len(servicer.faces) == 3


@pytest.mark.timeout(120)
def test_a_gallery_that_goes_away_mid_folder_stops_the_run_with_a_summary(
    gallery, tmp_path: Path, capsys
) -> None:
    _, address = gallery
    files = {f"ann/{i:02d}.jpg": b"face" for i in range(20)} | {"ann/00-gone.jpg": b"gone"}
    code, out, err = run(capsys, "enroll", str(people(tmp_path, files)), "--gallery", address)
    assert code == 1
    assert out.startswith("21 pictures of 1 identity: ") and " not sent" in out
    assert err.splitlines()[-1].endswith("pictures not sent.") or err.splitlines()[-1].endswith(
        "picture not sent."
    )


def test_enroll_of_pictures_names_them_as_typed_and_says_one_picture(
    gallery, tmp_path: Path, capsys, monkeypatch
) -> None:
    _, address = gallery
    people(tmp_path, {"a.jpg": b"face", "b.jpg": b"junk"})
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "enroll", "--identity", "ann", "a.jpg", "b.jpg", "--gallery", address)
    assert code == 1
    assert out == "2 pictures of ann: 1 enrolled, 1 failed\n"
    assert "facerec: b.jpg: The image could not be decoded." in err.splitlines()
    code, out, _ = run(capsys, "enroll", "--identity", "bob", "a.jpg", "--gallery", address)
    assert (code, out) == (0, "1 picture of bob: 1 enrolled\n")


@pytest.mark.parametrize(
    "args",
    [
        ("enroll", "--identity", "", "a.jpg"),
        ("enroll", "--identity", "  ", "a.jpg"),
        ("verify", "a.jpg", "--identity", ""),
        ("verify", "a.jpg", "--identity", "\t"),
        ("remove", ""),
        ("remove", " "),
    ],
)
def test_empty_or_blank_names_are_refused_in_every_command(
    gallery, tmp_path: Path, capsys, monkeypatch, args
) -> None:
    servicer, address = gallery
    people(tmp_path, {"a.jpg": b"face"})
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *args, "--gallery", address)
    assert (code, out) == (1, "")
    assert err.endswith("needs a name that is not empty or blank.\n") and len(err.splitlines()) == 1
    assert servicer.faces == {}


def test_verify_names_the_pictures_as_typed(gallery, tmp_path: Path, capsys, monkeypatch) -> None:
    _, address = gallery
    people(tmp_path, {"me.jpg": b"face", "blank.jpg": b"no face", "group.jpg": b"face"})
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "verify", "me.jpg", "blank.jpg", "--gallery", address)
    assert code == 1 and "No face was found on blank.jpg." in err and "image_" not in err
    code, _, err = run(capsys, "verify", "blank.jpg", "me.jpg", "--gallery", address)
    assert code == 1 and "No face was found on blank.jpg." in err
    code, out, err = run(capsys, "verify", "me.jpg", "group.jpg", "--gallery", address)
    assert code == 0 and out.startswith("same person")
    assert err == "note: group.jpg holds 2 faces; its largest was compared.\n"


def test_list_faces_shows_face_ids_and_remove_face_removes_one(gallery, tmp_path: Path, capsys) -> None:
    servicer, address = gallery
    people(tmp_path, {"ann/1.jpg": b"face a", "ann/2.jpg": b"face b", "bob/1.jpg": b"face c"})
    assert run(capsys, "enroll", str(tmp_path), "--gallery", address)[0] == 0
    ids = {who: sorted(i for i, (w, _) in servicer.faces.items() if w == who) for who in ("ann", "bob")}
    code, out, _ = run(capsys, "list", "--faces", "--gallery", address)
    assert code == 0
    assert out.splitlines() == [
        f"ann\t2 faces\tface ids {ids['ann'][0]} {ids['ann'][1]}",
        f"bob\t1 face\tface ids {ids['bob'][0]}",
        "2 identities",
    ]
    code, out, _ = run(capsys, "remove-face", str(ids["ann"][0]), "--gallery", address)
    assert (code, out) == (0, f"removed face {ids['ann'][0]} of ann\n")
    assert ids["ann"][0] not in servicer.faces and len(servicer.faces) == 2
    code, out, _ = run(capsys, "list", "--gallery", address)
    assert out.splitlines() == ["ann\t1 face", "bob\t1 face", "2 identities"]
    code, out, _ = run(capsys, "remove", "bob", "--gallery", address)
    assert (code, out) == (0, "removed bob (1 face)\n")
    code, _, err = run(capsys, "remove-face", str(ids["ann"][0]), "--gallery", address)
    assert code == 1 and f"No face {ids['ann'][0]} is enrolled." in err
    with pytest.raises(SystemExit) as refused:
        main(["remove-face", "ann", "--gallery", address])
    assert refused.value.code == 2
    assert "is not a face id" in capsys.readouterr().err


def test_help_lists_commands_in_the_order_a_newcomer_uses_them(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out.split("  COMMAND\n", 1)[1]
    listed = [line.split()[0] for line in shown.splitlines() if line.startswith("    ") and line.split()]
    listed = [name for name in listed if name in NEWCOMER_ORDER]
    assert listed == list(NEWCOMER_ORDER)
    assert listed[:4] == ["fetch", "export", "serve", "demo"]
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(commands.choices) == set(NEWCOMER_ORDER)


@pytest.mark.timeout(120)
def test_identify_names_a_fifo_given_as_a_picture_and_answers_the_others(
    gallery, tmp_path: Path, capsys, monkeypatch
) -> None:
    _, address = gallery
    people(tmp_path, {"me.jpg": b"face"})
    os.mkfifo(tmp_path / "pipe.jpg")  # opened for reading, it would wait for a writer forever
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "identify", "pipe.jpg", "me.jpg", "--gallery", address)
    assert code == 1
    assert err == "facerec: pipe.jpg is not a regular file.\n"
    assert out == "me.jpg: no face\n"

"""Which folders eval reads as identities, and where it writes its report by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from facerec_app.evaluate_command import default_out
from facerec_app.folders import labelled_set, walk
from facerec_app.rpc import ClientError


def pictures(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (16, 16)).save(folder / name)


def identities(pairs: list[tuple[str, Path]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for who, _ in pairs:
        counts[who] = counts.get(who, 0) + 1
    return counts


def test_sets_are_merged_by_name_and_a_report_folder_beside_them_is_ignored(tmp_path: Path) -> None:
    pictures(tmp_path / "train" / "ann", "1.jpg", "2.png")
    pictures(tmp_path / "train" / "bob", "1.jpg")
    pictures(tmp_path / "val" / "ann", "3.jpg")
    pictures(tmp_path / "val" / "bob", "2.jpg")
    # What the README's tour left behind when eval wrote its report into the data folder.
    pictures(tmp_path / "eval-report", "roc.png")
    (tmp_path / "eval-report" / "report.json").write_text("{}")
    pictures(tmp_path / "notes")  # empty: neither a set nor an identity
    assert identities(labelled_set(tmp_path)) == {"ann": 3, "bob": 2}


def test_identity_folders_skip_reports_hidden_and_empty_folders_and_the_out_folder(tmp_path: Path) -> None:
    pictures(tmp_path / "ann", "1.jpg")
    (tmp_path / "ann" / "notes.txt").write_text("not a picture")
    pictures(tmp_path / "bob", "1.webp")
    pictures(tmp_path / "old-report", "roc.png")
    (tmp_path / "old-report" / "report.json").write_text("{}")
    pictures(tmp_path / ".thumbnails", "1.jpg")
    pictures(tmp_path / "empty")
    pictures(tmp_path / "my-out", "roc.png")  # --out inside the data folder, before report.json exists
    pairs = labelled_set(tmp_path, skip=tmp_path / "my-out")
    assert identities(pairs) == {"ann": 1, "bob": 1}
    assert all(p.suffix != ".txt" for _, p in pairs)


def test_a_folder_without_identity_folders_is_one_sentence(tmp_path: Path) -> None:
    pictures(tmp_path / "docs")
    with pytest.raises(ClientError, match="holds no pictures in identity subfolders"):
        labelled_set(tmp_path)
    with pytest.raises(ClientError, match="is not a folder"):
        labelled_set(tmp_path / "missing")


def test_the_default_report_folder_is_never_inside_the_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "faces"
    (data / "train").mkdir(parents=True)
    assert default_out(data, tmp_path) == tmp_path.resolve() / "eval-report"
    assert default_out(data, data) == tmp_path.resolve() / "faces-eval-report"
    assert default_out(data, data / "train") == tmp_path.resolve() / "faces-eval-report"


def test_a_fifo_a_dangling_link_and_a_link_outside_are_listed_and_skipped_not_read(tmp_path: Path) -> None:
    folder, outside = tmp_path / "people", tmp_path / "elsewhere"
    pictures(folder / "ann", "1.jpg", "2.jpg")
    pictures(outside, "secret.jpg")
    os.mkfifo(folder / "ann" / "pipe.jpg")  # read, it would block until a writer came: forever
    (folder / "ann" / "gone.jpg").symlink_to(folder / "ann" / "deleted.jpg")
    (folder / "ann" / "system.jpg").symlink_to(outside / "secret.jpg")
    (folder / "ann" / "same.jpg").symlink_to(folder / "ann" / "1.jpg")  # inside the folder: followed
    (folder / "bob").symlink_to(outside, target_is_directory=True)  # a folder outside: skipped too
    found = walk(folder)
    assert [p.name for _, p in found.pairs] == ["1.jpg", "2.jpg", "same.jpg"]
    reasons = {s.path.name: s.reason for s in found.skipped}
    assert set(reasons) == {"pipe.jpg", "gone.jpg", "system.jpg", "bob"}
    assert reasons["pipe.jpg"] == "not a regular file (a FIFO)"
    assert reasons["gone.jpg"].startswith("a symlink to nothing")
    assert "outside" in reasons["system.jpg"] and "--follow-symlinks" in reasons["system.jpg"]


def test_follow_symlinks_reads_links_that_leave_the_folder_but_never_a_fifo(tmp_path: Path) -> None:
    folder, outside = tmp_path / "people", tmp_path / "elsewhere"
    pictures(folder / "ann", "1.jpg")
    pictures(outside / "bob", "1.jpg")
    (folder / "ann" / "other.jpg").symlink_to(outside / "bob" / "1.jpg")
    (folder / "bob").symlink_to(outside / "bob", target_is_directory=True)
    os.mkfifo(outside / "bob" / "pipe.png")
    found = walk(folder, follow_symlinks=True)
    assert identities(found.pairs) == {"ann": 2, "bob": 1}
    assert [(s.path.name, s.reason) for s in found.skipped] == [("pipe.png", "not a regular file (a FIFO)")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: nothing is unreadable")
def test_an_unreadable_picture_and_folder_are_listed_and_skipped(tmp_path: Path) -> None:
    pictures(tmp_path / "ann", "1.jpg", "2.jpg")
    pictures(tmp_path / "bob", "1.jpg")
    (tmp_path / "ann" / "2.jpg").chmod(0)
    (tmp_path / "bob").chmod(0)
    try:
        found = walk(tmp_path)
    finally:
        (tmp_path / "bob").chmod(0o755)
    assert identities(found.pairs) == {"ann": 1}
    assert {s.path.name: s.reason for s in found.skipped} == {
        "2.jpg": "cannot be read (Permission denied)",
        "bob": "cannot be read (Permission denied)",
    }

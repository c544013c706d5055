"""Checksummed derived files: a damaged one is refused, a failed write leaves nothing behind."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from facerec.files import atomic_write
from facerec.integrity import DamagedFile, checksum_path, read_checked, write_checked


def test_a_written_file_reads_back_and_a_flipped_bit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    write_checked(path, b"0123456789" * 100)
    assert read_checked(path) == b"0123456789" * 100
    data = bytearray(path.read_bytes())
    data[500] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFile, match="does not match its checksum"):
        read_checked(path)


def test_a_file_without_its_checksum_is_refused_and_an_absent_one_is_none(tmp_path: Path) -> None:
    path = tmp_path / "index.faiss"
    assert read_checked(path) is None
    write_checked(path, b"abc")
    checksum_path(path).unlink()
    with pytest.raises(DamagedFile, match="no readable checksum"):
        read_checked(path)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (the tests run as root, as CI does)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_raises_enospc_and_leaves_no_temporary_file(tiny_disk: Path) -> None:
    write_checked(tiny_disk / "small", b"x" * 1000)
    with pytest.raises(OSError) as full:
        atomic_write(tiny_disk / "large", lambda f: f.write(b"x" * 200_000))
    assert full.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["small", "small.sha256"]
    assert read_checked(tiny_disk / "small") == b"x" * 1000

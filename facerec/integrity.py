"""Derived files written with a checksum and verified when read, so a damaged one is rebuilt, never used.

A saved index, a classifier or a model export that is silently wrong gives wrong answers with status OK
(garbled index bytes named strangers at distance 0; flipped bits in an export gave NaN embeddings). Each
is written atomically (facerec.files: the temporary file is removed on any failure, a full disk
included) beside `<name>.sha256`, and read back only when its bytes match that checksum.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from facerec.files import atomic_write

log = logging.getLogger(__name__)


class DamagedFile(ValueError):
    """A derived file whose bytes do not match the checksum written with it (or that has none)."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks (an index of a million faces is half a gigabyte)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_checked(path: Path, data: bytes) -> None:
    """Writes data and its checksum file. The checksum goes last: a crash between the two leaves a file
    that fails its check and is rebuilt, never one that passes with the wrong bytes."""
    path = Path(path)
    checksum_path(path).unlink(missing_ok=True)
    # Readable by all: other replicas' users read the model cache too.
    atomic_write(path, lambda f: f.write(data), mode=0o644)
    line = f"{sha256_bytes(data)}  {path.name}\n".encode()
    atomic_write(checksum_path(path), lambda f: f.write(line), mode=0o644)


def read_checked(path: Path) -> bytes | None:
    """The file's bytes when they match its checksum file; None when the file is absent.

    Raises DamagedFile when the checksum file is missing, unreadable or does not match.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        expected = checksum_path(path).read_text().split()[0]
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise DamagedFile(f"{path} has no readable checksum file ({exc.__class__.__name__}).") from None
    if sha256_bytes(data) != expected:
        raise DamagedFile(f"{path} does not match its checksum: the file is damaged.")
    return data

"""What a running process has loaded, read from /proc (Linux): for tests that a serving process stays lean."""

from __future__ import annotations

from pathlib import Path


def tensorflow_files_mapped(pid: int) -> list[str]:
    """The files of TensorFlow's (its package or shared libraries) that process pid has mapped: importing
    tensorflow, or anything that does (keras on its TensorFlow backend, tf2onnx, mtcnn's models), maps them."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    files = {line.split()[-1] for line in maps if len(line.split()) >= 6}
    return sorted(f for f in files if "tensorflow" in f.lower())

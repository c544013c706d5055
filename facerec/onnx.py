"""onnxruntime plumbing shared by the inference services: CPU sessions and the atomic model cache."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from facerec.integrity import DamagedFile, read_checked, write_checked

log = logging.getLogger(__name__)

# An exported network must match its Keras original within this, or it is not used.
MAX_ABS_DIFF = 1e-5


class OnnxExportError(RuntimeError):
    """A network could not be exported, or its export does not match Keras; nothing is cached."""


class ExportMissing(FileNotFoundError):
    """A service's exported model is not in the cache. The services only load exports (`facerec export`
    makes them, with the `export` extra's TensorFlow); the message is the one sentence a failed start prints."""

    def __init__(self, what: str, where: Path, setting: str) -> None:
        super().__init__(
            f"No exported {what} in {where}: run `facerec export` (pip install 'facerec[export]' first) "
            f"to write the files, or set {setting}=true to export at start."
        )


def require_models(paths: list[Path], what: str, setting: str) -> None:
    """Raises ExportMissing unless every path is a model that matches its checksum."""
    for path in paths:
        if read_model(path) is None:
            raise ExportMissing(what, path.parent, setting)


def cpu_session(
    data: bytes, intra_threads: int, inter_threads: int, arena: bool = True
) -> Any:  # onnxruntime.InferenceSession
    """A CPU session on a serialized model, sequential, fully optimized, with sleeping (not spinning) pools.

    arena=False: every run's buffers go back to the allocator when it ends, instead of onnxruntime's arena
    keeping the largest run's memory for good (for inputs whose size varies per call, such as P-Net's).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = arena
    options.intra_op_num_threads = intra_threads
    options.inter_op_num_threads = inter_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads sleep instead of spinning: the services share a few cores, and a spinning pool
    # takes a core away from the other service's model.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def save_model(path: Path, data: bytes) -> None:
    """Caches an exported model atomically with its checksum (facerec.integrity), so replicas exporting at
    once never read half a file and a damaged one is exported again. A failure only logs: the model is
    exported again at the next start."""
    try:
        write_checked(path, data)
    except OSError as exc:
        log.warning("could not cache %s (%s); it will be exported again next start", path, exc)


def read_model(path: Path) -> bytes | None:
    """The cached export at path when it matches its checksum; None (logged) when absent or damaged."""
    try:
        return read_checked(path)
    except DamagedFile as exc:
        log.warning("%s It will be exported again.", exc)
        return None
    except OSError as exc:
        log.warning("cannot read the cached model %s (%s); it will be exported again.", path, exc)
        return None

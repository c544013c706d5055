"""`facerec export`: writes the ONNX files the services load (MTCNN's nets, FaceNet fp32 and int8) into the cache.

The services never export: they load these files and stop at start, in one sentence, when one is
missing. Exporting needs TensorFlow and tf2onnx (the `export` extra); `make`, the image's build stage
and a Kubernetes init step run it once. Files already there and matching their checksums are kept,
so a second run only verifies (and imports no TensorFlow).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from facerec import assets
from facerec.integrity import checksum_path, sha256_file

# The modules that only the export needs: their absence is the export extra's, said in one sentence.
EXPORT_MODULES = ("tensorflow", "keras", "keras_facenet", "tf2onnx", "h5py")


class ExportFailed(Exception):
    """The export cannot run here (no weights, or the export extra missing); the message is one sentence."""


def export_models(fetched: assets.Assets) -> list[Path]:
    """Exports (or verifies) every model file the services load, under fetched.facenet_h5's folder, and
    returns their paths: mtcnn's three nets, the int8 calibration crops, FaceNet fp32 and int8 (the int8
    file only when the guard accepts it; its record says why not otherwise)."""
    from detector_service import onnx_nets
    from embedding_service.config import Settings
    from embedding_service.embedder import Embedder
    from embedding_service.onnx_runtime import cache_path
    from embedding_service.quantize import cache_paths
    from facerec_app.calibration_crops import ensure_calibration_set

    if not fetched.facenet_h5.is_file():
        raise ExportFailed(f"No FaceNet weights at {fetched.facenet_h5}: run `facerec fetch` first.")
    models_dir = fetched.facenet_h5.parent
    try:
        # mtcnn's nets first: the calibration crops are cut by the detector running them.
        onnx_nets.onnx_nets(models_dir, 1, 1)
        calibration = ensure_calibration_set(fetched)
        settings = Settings.from_env({"FACEREC_HOME": str(fetched.home)})
        settings = dataclasses.replace(settings, precision="int8", export_at_start=True)
        Embedder.load(settings)
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise ExportFailed(
            f"`facerec export` needs the export extra (missing {missing}): pip install 'facerec[export]'."
        ) from None
    int8, record, _ = cache_paths(models_dir)
    files = [*onnx_nets.cache_paths(models_dir).values(), cache_path(settings.weights_path)]
    return [*files, *([int8] if int8.is_file() else []), record, calibration]


def cmd_export(args: argparse.Namespace) -> int:
    from facerec.onnx import OnnxExportError

    fetched = assets.Assets(assets.facerec_home(os.environ))
    try:
        files = export_models(fetched)
    except (ExportFailed, OnnxExportError) as exc:
        sys.stderr.write(f"facerec: {exc}\n")
        return 1
    for path in files:
        checksum = checksum_path(path)
        digest = checksum.read_text().split()[0] if checksum.is_file() else sha256_file(path)
        sys.stdout.write(f"{digest[:16]}  {path}\n")
    return 0


def add_export_command(sub: argparse._SubParsersAction[Any]) -> None:
    export = sub.add_parser(
        "export",
        help="write the ONNX files the services load (needs the export extra; after `facerec fetch`)",
    )
    export.set_defaults(run=cmd_export)

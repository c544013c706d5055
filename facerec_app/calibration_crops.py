"""The int8 calibration set: face crops cut by the detector from every picture the project has, built once.

The pictures are the 5-celebrity train and val pictures and the portraits that installed packages ship
(matplotlib's sample of Grace Hopper). Every face of a picture is cut as the gallery cuts it (the
detector's box alignment, 160x160); the largest carries the picture's identity, the others (when
clear and big enough) are strangers (label ""). The split (`held_out`) keeps out of calibration whole pictures and one whole
person, so the quantized FaceNet is checked on faces and people its activation ranges never saw
(embedding_service.quantize). About 120 crops: the detector takes a few seconds, the file is ~10 MB.
"""

from __future__ import annotations

import logging
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedding_service.quantize import CALIBRATION_SET_NAME, CalibrationSet, CalibrationSetError
from facerec.assets import IMAGE_SUFFIXES, Assets, labelled_images
from facerec.images import decode_image

log = logging.getLogger(__name__)

CALIBRATION_SPLIT, HELD_OUT_SPLIT, PACKAGE_SPLIT = "train", "val", "package"
# One person held out whole (train and val pictures): int8's users enrol people it was never calibrated
# on, and the guard must see such a person. The last one in sorted order, so the choice is stable.
HELD_OUT_PEOPLE = 1
# Pictures that installed packages ship, found by name under site-packages: a sample portrait is
# there for demos, so its place is stable across versions. Missing ones are skipped.
PACKAGE_PICTURES = ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",)
STRANGER = ""
# Other faces of a picture join the set when the detector is sure of them and they are big enough to
# enrol: MTCNN also reports 17-pixel faces in crowds and, now and then, an ear or a hand, which no one
# enrols and whose cosine says nothing about int8's faithfulness on faces.
MIN_STRANGER_CONFIDENCE = 0.95
MIN_STRANGER_SIDE_PX = 40


@dataclass(frozen=True)
class Picture:
    """One picture of the set: its path, the identity of its main face ("" when unknown), its split."""

    path: Path
    identity: str
    split: str


def calibration_set_path(assets: Assets) -> Path:
    """Beside the weights, where the embedder looks for it."""
    return assets.facenet_h5.parent / CALIBRATION_SET_NAME


def pictures(assets: Assets, site_packages: Sequence[Path] | None = None) -> list[Picture]:
    """The 5-celebrity train and val pictures, then the packages' sample portraits that are installed."""
    found = [
        Picture(path, identity, split)
        for split in (CALIBRATION_SPLIT, HELD_OUT_SPLIT)
        for identity, path in labelled_images(assets.split(split))
    ]
    roots = site_packages if site_packages is not None else _site_packages()
    for name in PACKAGE_PICTURES:
        for root in roots:
            path = root / name
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                found.append(Picture(path, STRANGER, PACKAGE_SPLIT))
                break
    return found


def held_out(pictures: Sequence[Picture]) -> list[bool]:
    """Per picture, True when it is kept out of calibration: every val and package picture, and every
    picture of the last HELD_OUT_PEOPLE people (sorted) among those with train pictures."""
    people = sorted({p.identity for p in pictures if p.split == CALIBRATION_SPLIT and p.identity})
    unseen = set(people[-HELD_OUT_PEOPLE:]) if len(people) > HELD_OUT_PEOPLE else set()
    return [p.split != CALIBRATION_SPLIT or p.identity in unseen for p in pictures]


def build_calibration_set(assets: Assets, site_packages: Sequence[Path] | None = None) -> CalibrationSet:
    """Runs the detector (onnxruntime nets, one thread) over every picture; every clear face becomes a crop."""
    from detector_service.detector import DetectOptions, Detector
    from detector_service.onnx_nets import onnx_nets

    detector = Detector(onnx_nets(assets.facenet_h5.parent, 1, 1))
    found = pictures(assets, site_packages)
    crops, labels, kept_out = [], [], []
    for picture, out in zip(found, held_out(found), strict=True):
        faces = detector.detect([decode_image(picture.path.read_bytes())], DetectOptions(return_crops=True))[
            0
        ]
        largest = max(faces, key=lambda d: d.box.width * d.box.height, default=None)
        for face in faces:
            if face is not largest and not _enrollable(face.confidence, face.box.width, face.box.height):
                continue
            if face.crop is None:  # asked for above; a detector without crops is not this one
                raise RuntimeError("the detector returned a face without its crop")
            crops.append(face.crop)
            labels.append(picture.identity if face is largest else STRANGER)
            kept_out.append(out)
    return CalibrationSet(np.stack(crops), np.array(labels), np.array(kept_out))


def ensure_calibration_set(assets: Assets) -> Path:
    """The calibration set's path, built and saved first when it is missing, unreadable or outdated."""
    path = calibration_set_path(assets)
    try:
        CalibrationSet.load(path)
        return path
    except CalibrationSetError as exc:
        log.info("building the int8 calibration set: %s", exc)
    build_calibration_set(assets).save(path)
    return path


def _enrollable(confidence: float, width_px: float, height_px: float) -> bool:
    return confidence >= MIN_STRANGER_CONFIDENCE and min(width_px, height_px) >= MIN_STRANGER_SIDE_PX


def _site_packages() -> list[Path]:
    return [Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")]

"""The int8 calibration set: face crops cut by the detector from the 5-celebrity pictures, built once.

The train pictures calibrate the quantization's activation ranges; the val pictures are held out to
check the quantized FaceNet against fp32 (embedding_service.quantize). A crop is the largest face of a
picture, cut as the gallery cuts it (the detector's box alignment, 160x160), so the int8 model is
calibrated on what it will see. About 120 crops: the detector takes a few seconds, the file is ~9 MB.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from embedding_service.quantize import CALIBRATION_SET_NAME, CalibrationSet, CalibrationSetError
from facerec.assets import Assets, labelled_images
from facerec.images import decode_image

log = logging.getLogger(__name__)

CALIBRATION_SPLIT, HELD_OUT_SPLIT = "train", "val"


def calibration_set_path(assets: Assets) -> Path:
    """Beside the weights, where the embedder looks for it."""
    return assets.facenet_h5.parent / CALIBRATION_SET_NAME


def build_calibration_set(assets: Assets) -> CalibrationSet:
    """Runs the detector (onnxruntime nets, one thread) over the train and val pictures."""
    from detector_service.detector import DetectOptions, Detector
    from detector_service.onnx_nets import onnx_nets

    detector = Detector(onnx_nets(assets.facenet_h5.parent, 1, 1))
    crops, labels, held_out = [], [], []
    for split in (CALIBRATION_SPLIT, HELD_OUT_SPLIT):
        for identity, path in labelled_images(assets.split(split)):
            faces = detector.detect([decode_image(path.read_bytes())], DetectOptions(return_crops=True))[0]
            if not faces:
                continue
            largest = max(faces, key=lambda d: d.box.width * d.box.height)
            if largest.crop is None:  # asked for above; a detector without crops is not this one
                raise RuntimeError("the detector returned a face without its crop")
            crops.append(largest.crop)
            labels.append(identity)
            held_out.append(split == HELD_OUT_SPLIT)
    return CalibrationSet(np.stack(crops), np.array(labels), np.array(held_out))


def ensure_calibration_set(assets: Assets) -> Path:
    """The calibration set's path, built and saved first when it is missing or unreadable."""
    path = calibration_set_path(assets)
    try:
        CalibrationSet.load(path)
        return path
    except CalibrationSetError as exc:
        log.info("building the int8 calibration set: %s", exc)
    build_calibration_set(assets).save(path)
    return path

"""The service's detector (onnxruntime nets, numpy pyramid) finds the faces mtcnn's own detect_faces finds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from detector_service.config import Settings
from detector_service.detector import Detection, DetectOptions, Detector
from tests.support.faces import group

pytestmark = pytest.mark.model

# "The same faces": the same number per picture, boxes and landmarks within this many pixels.
MAX_SHIFT_PX = 2.0


@pytest.fixture(scope="module")
def detector(fetched_assets) -> Detector:
    """As the service loads it by default (its cached ONNX nets under FACEREC_HOME/models)."""
    return Detector.load(Settings.from_env({"FACEREC_HOME": str(fetched_assets.home)}))


@pytest.fixture(scope="module")
def pictures(train_images, val_images) -> list[np.ndarray]:
    return [np.asarray(Image.open(path).convert("RGB")) for _, path in [*train_images, *val_images]]


def assert_same(ours: list[Detection], mtcnn: list[dict]) -> None:
    assert len(ours) == len(mtcnn)
    theirs = sorted(mtcnn, key=lambda r: -r["confidence"])
    for face, ref in zip(ours, theirs, strict=True):
        box = np.array([face.box.x, face.box.y, face.box.width, face.box.height])
        assert np.abs(box - np.array(ref["box"], dtype=float)).max() <= MAX_SHIFT_PX
        points = np.array(
            [ref["keypoints"][k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")]
        )
        assert np.abs(face.landmarks.as_array() - points).max() <= MAX_SHIFT_PX
        # A box a pixel off (and mtcnn's own pyramid, one level shorter at times) gives O-Net a slightly
        # different patch: its score moves by up to ~0.01 on these pictures.
        assert abs(face.confidence - ref["confidence"]) <= 0.05


def test_same_faces_as_mtcnn_on_the_118_pictures(detector: Detector, mtcnn_model, pictures) -> None:
    assert len(pictures) == 118
    found = 0
    for start in range(0, len(pictures), 8):
        batch = pictures[start : start + 8]
        for ours, pixels in zip(detector.detect(batch, DetectOptions()), batch, strict=True):
            assert_same(ours, mtcnn_model.detect_faces(pixels))
            found += len(ours)
    assert found >= 118


@pytest.mark.parametrize(("start", "n"), [(0, 2), (3, 4), (40, 5)])
def test_same_faces_as_mtcnn_on_group_pictures(detector: Detector, mtcnn_model, pictures, start, n) -> None:
    both = group(pictures, start, n)
    ours = detector.detect([both], DetectOptions())[0]
    assert len(ours) >= n
    assert_same(ours, mtcnn_model.detect_faces(both))

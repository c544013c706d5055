"""The in-process Detector on the real MTCNN weights and the 5-celebrity pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector_service.batcher import BatchingDetector
from detector_service.detector import Alignment, Detection, DetectOptions, Detector
from facerec.alignment import TEMPLATE_160
from facerec.images import decode_image
from tests.support.images import encode

pytestmark = pytest.mark.model


def load(path: Path) -> np.ndarray:
    # The tutorial's loading: PIL, converted to RGB.
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def detector(mtcnn_model) -> Detector:
    return Detector(mtcnn_model)


@pytest.fixture(scope="module")
def pictures(train_images, val_images) -> list[np.ndarray]:
    return [load(path) for _, path in [*train_images, *val_images]]


@pytest.fixture(scope="module")
def found(detector: Detector, pictures) -> list[list[Detection]]:
    options = DetectOptions(return_crops=True)
    result: list[list[Detection]] = []
    for start in range(0, len(pictures), 8):
        result.extend(detector.detect(pictures[start : start + 8], options))
    return result


def test_a_face_on_nearly_every_dataset_picture(pictures, found) -> None:
    assert len(pictures) == 118
    assert sum(1 for faces in found if faces) >= 117


def test_landmarks_inside_boxes_crops_160_and_sorted(found) -> None:
    for faces in found:
        assert [f.confidence for f in faces] == sorted((f.confidence for f in faces), reverse=True)
        for face in faces:
            b = face.box
            points = face.landmarks.as_array()
            assert (points[:, 0] >= b.x - 4).all() and (points[:, 0] <= b.x + b.width + 4).all()
            assert (points[:, 1] >= b.y - 4).all() and (points[:, 1] <= b.y + b.height + 4).all()
            assert face.landmarks.left_eye[0] < face.landmarks.right_eye[0]
            assert face.crop is not None and face.crop.shape == (160, 160, 3) and face.crop.dtype == np.uint8


def test_box_and_crop_equal_the_tutorial(detector: Detector, mtcnn_model, pictures) -> None:
    for pixels in pictures[::20]:
        # The tutorial, verbatim: first mtcnn result, abs() of the corner, slice, PIL resize.
        results = mtcnn_model.detect_faces(pixels)
        x1, y1, width, height = results[0]["box"]
        x1, y1 = abs(x1), abs(y1)
        face = pixels[y1 : y1 + height, x1 : x1 + width]
        expected = np.asarray(Image.fromarray(face).resize((160, 160)))
        ours = detector.detect([pixels], DetectOptions(return_crops=True))[0][0]
        assert (ours.box.x, ours.box.y, ours.box.width, ours.box.height) == (x1, y1, width, height)
        assert ours.confidence == pytest.approx(results[0]["confidence"], abs=1e-5)
        assert np.array_equal(ours.crop, expected)


def test_batches_of_mixed_sizes_find_what_single_calls_find(detector: Detector, pictures) -> None:
    few = pictures[:6]
    batched = detector.detect(few)
    for pixels, faces in zip(few, batched, strict=True):
        alone = detector.detect([pixels])[0]
        assert len(alone) == len(faces)
        for a, b in zip(alone, faces, strict=True):
            assert abs(a.box.x - b.box.x) <= 3 and abs(a.box.width - b.box.width) <= 4


def test_padded_batches_find_the_same_faces(mtcnn_model, pictures, found) -> None:
    padded = Detector(mtcnn_model, pad_sizes=True)
    few = pictures[:24]
    result = []
    for start in range(0, len(few), 8):
        result.extend(padded.detect(few[start : start + 8]))
    assert sum(1 for f in result if f) == sum(1 for f in found[:24] if f)
    for ours, theirs in zip(result, found[:24], strict=True):
        if ours and theirs:
            a, b = ours[0].box, theirs[0].box
            assert abs(a.x - b.x) <= 8 and abs(a.y - b.y) <= 8 and abs(a.width - b.width) <= 10


def pair(pictures, found) -> np.ndarray:
    """Two dataset pictures with one face each, same height, side by side."""
    chosen = [p for p, f in zip(pictures, found, strict=True) if len(f) == 1][:2]
    h = min(p.shape[0] for p in chosen)
    resized = [np.asarray(Image.fromarray(p).resize((p.shape[1] * h // p.shape[0], h))) for p in chosen]
    return np.ascontiguousarray(np.concatenate(resized, axis=1)), resized[0].shape[1]


def test_two_pasted_faces(detector: Detector, pictures, found) -> None:
    both, split = pair(pictures, found)
    faces = detector.detect([both])[0]
    assert len(faces) == 2
    left, right = sorted(faces, key=lambda f: f.box.x)
    assert left.box.x + left.box.width <= split + 2 and right.box.x >= split - 2
    largest = max(faces, key=lambda f: f.box.width * f.box.height)
    assert detector.detect([both], DetectOptions(max_faces=1))[0][0].box == largest.box
    top = detector.detect([both], DetectOptions(min_confidence=max(f.confidence for f in faces)))[0]
    assert len(top) == 1


def test_exif_rotated_picture_gives_upright_coordinates(detector: Detector, pictures) -> None:
    upright = pictures[3]
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned a quarter clockwise; viewers turn it back
    stored = np.ascontiguousarray(np.rot90(upright, k=-1))
    decoded = decode_image(encode(stored, "PNG", exif=exif))
    assert decoded.shape == upright.shape
    a, b = detector.detect([upright])[0][0], detector.detect([decoded])[0][0]
    assert (a.box.x, a.box.y, a.box.width, a.box.height) == (b.box.x, b.box.y, b.box.width, b.box.height)


def test_min_face_size_40_still_finds_the_dataset_faces(detector: Detector, pictures, found) -> None:
    sample = pictures[::6]
    expected = sum(1 for faces in found[::6] if faces)
    at_40 = detector.detect(sample, DetectOptions(min_face_size_px=40))
    assert sum(1 for faces in at_40 if faces) >= expected - 1


def test_large_min_face_size_drops_small_faces(detector: Detector, pictures, found) -> None:
    index = next(i for i, f in enumerate(found) if len(f) == 1)
    picture = pictures[index]
    box = found[index][0].box
    # Shrink the picture so the face is about 40 px wide, on a larger grey canvas.
    factor = 40.0 / box.width
    small = np.asarray(
        Image.fromarray(picture).resize((int(picture.shape[1] * factor), int(picture.shape[0] * factor)))
    )
    canvas = np.full((300, 300, 3), 128, np.uint8)
    canvas[50 : 50 + small.shape[0], 60 : 60 + small.shape[1]] = small[:250, :240]
    assert len(detector.detect([canvas], DetectOptions(min_face_size_px=20))[0]) == 1
    assert detector.detect([canvas], DetectOptions(min_face_size_px=100))[0] == []


def test_similarity_crop_puts_the_eyes_on_the_template(detector: Detector, pictures) -> None:
    face = detector.detect([pictures[10]], DetectOptions(return_crops=True, alignment=Alignment.SIMILARITY))[
        0
    ][0]
    again = detector.detect([face.crop])[0][0].landmarks.as_array()
    assert np.abs(again[:2] - TEMPLATE_160[:2]).max() < 6


def test_noise_has_no_face_and_warm_up_runs(detector: Detector) -> None:
    detector.warm_up()
    picture = np.random.default_rng(7).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    assert detector.detect([picture]) == [[]]


def test_batching_detector_answers_through_its_worker(detector: Detector, pictures) -> None:
    batching = BatchingDetector(detector, max_batch=4)
    try:
        batching.warm_up()
        outcomes = batching.detect(pictures[:5], DetectOptions())
        assert [len(o) >= 1 for o in outcomes] == [True] * 5
        assert batching.batcher.stats.largest_batch == 4
    finally:
        batching.close()

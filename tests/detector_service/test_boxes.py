"""The service's MTCNN box arithmetic and patch sampling give mtcnn 1.0.0's own answers, value for value."""

from __future__ import annotations

import numpy as np
import pytest

from detector_service import boxes

pytestmark = pytest.mark.model  # mtcnn's helpers import TensorFlow

RNG_SEED = 7


class Eager:
    """A numpy array seen as an eager tensor: mtcnn's helpers call .numpy() on network outputs."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def numpy(self) -> np.ndarray:
        return self._array


@pytest.fixture(scope="module")
def mtcnn_bboxes():
    from mtcnn.utils import bboxes

    return bboxes


@pytest.fixture
def pnet_rows(mtcnn_bboxes) -> tuple[np.ndarray, np.ndarray]:
    """Ours and mtcnn's P-Net boxes from the same seeded P-Net outputs of two pictures at scale 0.3."""
    rng = np.random.default_rng(RNG_SEED)
    regression = rng.uniform(-0.3, 0.3, (2, 30, 40, 4)).astype(np.float32)
    probability = rng.uniform(0, 1, (2, 30, 40, 2)).astype(np.float32)
    ours = boxes.pnet_boxes(regression, probability, 0.6, 0.3)
    theirs = mtcnn_bboxes.generate_bounding_box(Eager(regression), Eager(probability), 0.6)
    return ours, mtcnn_bboxes.upscale_bboxes(theirs, np.full(2, 0.3))


def test_pnet_cells_become_mtcnns_boxes_in_mtcnns_order(pnet_rows) -> None:
    ours, theirs = pnet_rows
    assert len(ours) > 100
    np.testing.assert_array_equal(ours, theirs)


def test_square_refine_landmarks_threshold_and_clip_as_mtcnn(mtcnn_bboxes, pnet_rows) -> None:
    from mtcnn.utils.landmarks import adjust_landmarks

    rows, _ = pnet_rows
    rng = np.random.default_rng(RNG_SEED)
    np.testing.assert_array_equal(boxes.to_square(rows), mtcnn_bboxes.resize_to_square(rows))
    offsets = rng.uniform(-0.2, 0.2, (len(rows), 4)).astype(np.float32)
    scores = rng.uniform(0, 1, (len(rows), 2)).astype(np.float32)
    refined = boxes.refine(rows, offsets, scores)
    theirs = mtcnn_bboxes.adjust_bboxes(mtcnn_bboxes.replace_confidence(rows.copy(), scores), offsets)
    np.testing.assert_array_equal(refined, theirs)
    landmarks = rng.uniform(0, 1, (len(rows), 10)).astype(np.float32)
    np.testing.assert_array_equal(
        boxes.place_landmarks(landmarks, rows), adjust_landmarks(Eager(landmarks), rows)
    )
    full = np.concatenate([refined, boxes.place_landmarks(landmarks, rows)], axis=1)
    np.testing.assert_array_equal(
        boxes.above(full, 0.7), mtcnn_bboxes.pick_matches(full, scores_column=5, score_threshold=0.7)
    )
    shapes = np.array([[50, 60, 3], [70, 20, 3]])
    np.testing.assert_array_equal(
        boxes.clip_to_pictures(full, shapes),
        mtcnn_bboxes.limit_bboxes(full, images_shapes=shapes, limit_landmarks=False),
    )


@pytest.mark.parametrize("size", [24, 48])
def test_patches_are_tf_crop_and_resize_as_mtcnn_calls_it(size: int) -> None:
    from mtcnn.utils.images import extract_patches

    rng = np.random.default_rng(RNG_SEED)
    picture = rng.uniform(-1, 1, (50, 70, 3)).astype(np.float32)
    rows = np.zeros((6, 6))
    # Boxes inside, across each edge, and one larger than the picture (samples outside become 0).
    rows[:, 1] = [-3.5, 10.2, 5.0, 60.7, 0.0, -20.0]
    rows[:, 2] = [2.0, -5.3, 10.0, 40.1, 0.0, -20.0]
    rows[:, 3] = rows[:, 1] + [20.0, 30.4, 12.0, 25.0, 69.0, 110.0]
    rows[:, 4] = rows[:, 2] + [20.0, 30.4, 12.0, 25.0, 49.0, 90.0]
    ours = boxes.crop_and_resize(picture, rows, size)
    theirs = extract_patches(picture[None], rows, expected_size=(size, size)).numpy()
    assert ours.shape == (6, size, size, 3)
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)

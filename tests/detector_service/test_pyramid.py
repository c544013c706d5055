"""The detector's own image pyramid against mtcnn 1.0.0's, and the similarity transform against known ones."""

from __future__ import annotations

import numpy as np
import pytest

from detector_service.pyramid import PNET_CELL_PX, build_scales, mtcnn_scales
from facerec.alignment import TEMPLATE_160, similarity_crop, similarity_transform, tutorial_box


@pytest.mark.parametrize("side", [12, 47, 160, 250, 301, 640, 1999])
@pytest.mark.parametrize("min_face", [12, 20, 40, 80])
def test_every_level_holds_a_pnet_window_and_the_next_would_not(side: int, min_face: int) -> None:
    scales = build_scales(side, side + 37, min_face)
    assert (side * scales >= PNET_CELL_PX - 1e-9).all()
    if len(scales):
        assert scales[0] == pytest.approx(PNET_CELL_PX / min_face)
        assert side * scales[-1] * 0.709 < PNET_CELL_PX
    else:
        assert side * PNET_CELL_PX / min_face < PNET_CELL_PX


def test_mtcnn_pyramid_breaks_at_min_face_40_and_ours_does_not() -> None:
    assert (250 * mtcnn_scales(250, 300, 40) < PNET_CELL_PX).any()  # the bug worked around
    assert (250 * build_scales(250, 300, 40) >= PNET_CELL_PX).all()


def test_default_min_face_matches_mtcnn_where_mtcnn_is_valid() -> None:
    agree = 0
    for side in range(24, 1000):
        ours, theirs = build_scales(side, side, 20), mtcnn_scales(side, side, 20)
        # mtcnn's rounding sometimes stops one level early; every level it has, we have.
        assert np.allclose(ours[: len(theirs)], theirs)
        assert len(ours) - len(theirs) in (0, 1)
        agree += len(ours) == len(theirs)
    assert agree > 950


def test_similarity_transform_recovers_a_known_one() -> None:
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.random.default_rng(7).uniform(0, 100, size=(5, 2))
    dst = scale * src @ rotation.T + shift
    assert np.allclose(similarity_transform(src, dst), np.hstack([scale * rotation, shift[:, None]]))


def test_similarity_crop_puts_landmarks_on_the_template() -> None:
    # A picture with a dot at each landmark: after the warp the dots sit on the template's points.
    picture = np.zeros((300, 400, 3), np.uint8)
    points = TEMPLATE_160 * 1.4 + np.array([90.0, 40.0])
    for x, y in points:
        picture[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3] = 255
    crop = similarity_crop(picture, points)
    assert crop.shape == (160, 160, 3)
    for x, y in TEMPLATE_160:
        assert crop[int(round(y)), int(round(x))].min() > 200


def test_tutorial_box_rounds_like_mtcnn() -> None:
    # mtcnn rounds the width (x2 - x1), not x2.
    assert tutorial_box(10.4, 20.6, 30.9, 40.0) == (10, 21, 20, 19)

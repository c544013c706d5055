"""The pyramid's numpy area resize against TensorFlow's (what mtcnn calls), on seeded and real pictures."""

from __future__ import annotations

import numpy as np
import pytest

from detector_service.pyramid import build_scales
from detector_service.resize import area_resize, scaled_shape


@pytest.mark.parametrize("shape", [(300, 300), (320, 240), (354, 236), (97, 131), (641, 480), (13, 900)])
def test_area_resize_equals_tensorflow_at_every_level(shape: tuple[int, int]) -> None:
    from mtcnn.utils.images import scale_images

    height, width = shape
    image = np.random.default_rng(height * width).uniform(-1, 1, (height, width, 3)).astype(np.float32)
    scales = build_scales(width, height, 12)
    assert len(scales) >= 1
    for scale in scales:
        ours = area_resize(image, scale)
        theirs = np.asarray(scale_images(image[None], scale))[0]
        assert ours.shape == theirs.shape == (*scaled_shape(height, width, scale), 3)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_a_constant_picture_stays_constant() -> None:
    image = np.full((50, 70, 3), 0.25, np.float32)
    np.testing.assert_allclose(area_resize(image, 0.37), 0.25, atol=1e-6)

"""Fixtures for the embedding service tests: a fake FaceNet and real face crops."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from embedding_service.embedder import Embedder
from facerec.images import decode_image
from tests.support.embedding import FakeInfer


@pytest.fixture
def fake_infer() -> FakeInfer:
    return FakeInfer()


@pytest.fixture
def fake_embedder(fake_infer: FakeInfer) -> Embedder:
    return Embedder(fake_infer, runtime="fake")


@pytest.fixture(scope="session")
def real_crops(train_images) -> list[NDArray[np.uint8]]:
    """16 face-sized crops of different sizes: the central part of 16 training pictures (faces sit there)."""
    crops = []
    for _, path in train_images[::5][:16]:
        image = decode_image(path.read_bytes())
        h, w, _ = image.shape
        side = int(min(h, w) * 0.7)
        top, left = (h - side) // 2, (w - side) // 2
        crops.append(np.ascontiguousarray(image[top : top + side, left : left + side]))
    return crops


@pytest.fixture(scope="session")
def real_embedder(facenet_model) -> Embedder:
    """The real FaceNet (the session's model) behind the embedder's tf.function."""
    return Embedder.from_keras(facenet_model)

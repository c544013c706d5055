"""The embedder: crop bytes checked, any size resized, unit float32 vectors equal to FaceNet's own."""

from __future__ import annotations

import numpy as np
import pytest

from embedding_service.embedder import Embedder, rgb_crop, unit_rows
from embedding_service.preprocessing import prepare_batch
from facerec.errors import InvalidInput
from tests.support.embedding import FakeInfer, fake_vectors, unit


def test_rgb_crop_reshapes_row_major_bytes() -> None:
    pixels = np.random.default_rng(7).integers(0, 256, size=(3, 5, 3), dtype=np.uint8)
    assert np.array_equal(rgb_crop(pixels.tobytes(), width=5, height=3), pixels)


@pytest.mark.parametrize(
    ("size", "width", "height"),
    [(5 * 3 * 3 - 1, 5, 3), (5 * 3 * 3 + 3, 5, 3), (0, 0, 3), (0, 5, 0), (3, -1, -1)],
)
def test_rgb_crop_refuses_wrong_length_or_size(size: int, width: int, height: int) -> None:
    with pytest.raises(InvalidInput):
        rgb_crop(bytes(size), width=width, height=height)


def test_unit_rows_are_unit_float32() -> None:
    v = np.random.default_rng(7).normal(size=(10, 128)).astype(np.float64) * 5
    out = unit_rows(v)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out, v / np.linalg.norm(v, axis=1, keepdims=True), atol=1e-6)


def test_embed_prepares_any_size_and_normalizes(fake_embedder: Embedder, fake_infer: FakeInfer) -> None:
    rng = np.random.default_rng(7)
    crops = [
        rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(160, 160, 3), (40, 90, 3), (300, 200, 3)]
    ]
    out = fake_embedder.embed(crops)
    assert out.shape == (3, 128) and out.dtype == np.float32
    np.testing.assert_allclose(out, unit(fake_vectors(prepare_batch(crops))), atol=1e-6)
    assert fake_infer.batch_sizes == [3]


def test_embed_of_nothing_is_empty_without_a_model_call(
    fake_embedder: Embedder, fake_infer: FakeInfer
) -> None:
    assert fake_embedder.embed([]).shape == (0, 128)
    assert fake_infer.batch_sizes == []


def test_prepare_refuses_a_crop_without_three_channels(fake_embedder: Embedder) -> None:
    with pytest.raises(InvalidInput):
        fake_embedder.prepare([np.zeros((20, 20), dtype=np.uint8)])


def test_a_model_with_the_wrong_output_shape_is_an_error() -> None:
    embedder = Embedder(lambda x: np.ones((len(x), 64), dtype=np.float32), runtime="fake")
    with pytest.raises(RuntimeError):
        embedder.embed([np.zeros((160, 160, 3), dtype=np.uint8)])


@pytest.mark.model
def test_real_vectors_equal_facenet_predict_on_the_same_input(
    real_embedder: Embedder, facenet_model, real_crops
) -> None:
    x = prepare_batch(real_crops)
    expected = facenet_model.predict(x, verbose=0)
    out = real_embedder.embed(real_crops)
    assert out.shape == (len(real_crops), 128) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert np.abs(out - expected).max() <= 1e-5
    # Batch size does not change a face's vector.
    one = real_embedder.embed(real_crops[3:4])
    assert np.abs(one[0] - out[3]).max() <= 1e-5


@pytest.mark.model
def test_real_vectors_tell_people_apart(real_embedder: Embedder, train_images) -> None:
    """Sanity of the whole chain: a picture is nearer a resized copy of itself than another person's."""
    from facerec.images import decode_image

    picks = [path for i, (_, path) in enumerate(train_images) if i in (0, 30)]
    a, b = (decode_image(p.read_bytes()) for p in picks)
    v = real_embedder.embed([a, a[::2, ::2].copy(), b])
    assert np.linalg.norm(v[0] - v[1]) < np.linalg.norm(v[0] - v[2])

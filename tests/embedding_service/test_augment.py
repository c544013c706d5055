"""The augmentations int8 FaceNet is calibrated and checked on: seeded, shape-keeping, each doing what it says."""

from __future__ import annotations

import numpy as np
import pytest

from embedding_service.augment import Augmentation, apply, augment, augmented


def face_like(seed: int = 7) -> np.ndarray:
    """A (160, 160, 3) uint8 crop with structure (a bright oval on a gradient, noise), not symmetric."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:160, 0:160]
    oval = ((xx - 70) / 45.0) ** 2 + ((yy - 80) / 60.0) ** 2 < 1.0
    base = np.stack([xx * 0.8, yy * 0.5 + 40, 255 - xx * 0.6], axis=2) + 90.0 * oval[:, :, None]
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def test_the_same_seed_gives_the_same_crops_and_another_seed_others() -> None:
    crops = np.stack([face_like(1), face_like(2), face_like(3)])
    before = crops.copy()
    first, again, other = augmented(crops, 4, 28), augmented(crops, 4, 28), augmented(crops, 4, 29)
    assert first.shape == (12, 160, 160, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.array_equal(crops, before)  # the inputs are not changed
    # Every copy differs from its original, and copies of one crop differ from each other.
    for i in range(3):
        copies = first[4 * i : 4 * i + 4]
        assert all(not np.array_equal(c, crops[i]) for c in copies)
        assert len({c.tobytes() for c in copies}) == 4


def test_no_copies_is_an_empty_array_of_crops() -> None:
    assert augmented(np.stack([face_like()]), 0, 1).shape == (0, 160, 160, 3)


def test_augment_applies_at_least_one_kind_and_over_many_draws_every_kind() -> None:
    rng = np.random.default_rng(5)
    crop = face_like()
    seen: set[Augmentation] = set()
    for _ in range(40):
        out, kinds = augment(crop, rng)
        assert kinds and out.shape == crop.shape and out.dtype == np.uint8
        seen.update(kinds)
    assert seen == set(Augmentation)


@pytest.mark.parametrize("kind", list(Augmentation))
def test_each_augmentation_keeps_the_shape_and_changes_the_crop_by_a_bounded_amount(
    kind: Augmentation,
) -> None:
    crop = face_like()
    out = apply(crop, kind, np.random.default_rng(11))
    assert out.shape == crop.shape and out.dtype == np.uint8
    difference = np.abs(out.astype(np.int16) - crop.astype(np.int16))
    assert difference.max() > 0
    # Still a picture of the same thing: the mean moves by less than the brightness range allows.
    assert abs(float(out.mean()) - float(crop.mean())) <= 45.0


def test_what_each_augmentation_does() -> None:
    crop, rng = face_like(), np.random.default_rng(3)
    assert np.array_equal(apply(crop, Augmentation.MIRROR, rng), crop[:, ::-1])
    grey = apply(crop, Augmentation.GRAYSCALE, rng)
    assert np.array_equal(grey[:, :, 0], grey[:, :, 1]) and np.array_equal(grey[:, :, 1], grey[:, :, 2])
    # Blur and rescale take detail away: the image's high-frequency energy drops.
    for kind in (Augmentation.BLUR, Augmentation.RESCALE, Augmentation.JPEG):
        out = apply(crop, kind, rng).astype(np.float32)
        assert np.abs(np.diff(out, axis=1)).mean() < np.abs(np.diff(crop.astype(np.float32), axis=1)).mean()
    # A small rotation about the centre leaves the centre where it was.
    rotated = apply(crop, Augmentation.ROTATION, rng).astype(np.int16)
    centre = np.s_[76:84, 76:84]
    assert np.abs(rotated[centre] - crop.astype(np.int16)[centre]).mean() < 25

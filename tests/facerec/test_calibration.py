"""The threshold file: default when absent, calibrated when saved, picked up by running services."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facerec.calibration import (
    DEFAULT_OPERATING_POINT,
    DEFAULT_POINTS,
    DEFAULT_THRESHOLD,
    MAX_THRESHOLD,
    CalibrationFileError,
    CalibrationSource,
    OperatingPoint,
    default_calibration,
    load_calibration,
    save_calibration,
)


def test_default_until_saved_then_calibrated(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    assert load_calibration(path, "m").threshold == DEFAULT_THRESHOLD
    source = CalibrationSource(path, "m")
    assert source.current().source == "default"
    save_calibration(path, "m", 1.1, {"note": "x"})
    assert source.current().threshold == pytest.approx(1.1)
    assert source.current().source == "calibrated"
    assert load_calibration(path, "other-model").source == "default"


def test_invalid_thresholds_are_refused_on_save(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    for bad in (2.5, 2.0, MAX_THRESHOLD, 0.0, float("nan")):
        with pytest.raises(ValueError):
            save_calibration(path, "m", bad)
    assert not path.exists()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        "null",
        '{"models": []}',
        '{"models": {"m": []}}',
        '{"models": {"m": {"threshold": 2.0}}}',
        '{"models": {"m": {"threshold": "1.1"}}}',
        '{"models": {"m": {"threshold": true}}}',
        '{"models": {"m": {"threshold": 1.1, "identification_threshold": 1.5}}}',
    ],
)
def test_an_unusable_file_is_refused_with_one_sentence_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(content)
    with pytest.raises(CalibrationFileError) as refused:
        load_calibration(path, "m")
    message = str(refused.value)
    assert str(path) in message and message.endswith(".") and "\n" not in message
    with pytest.raises(CalibrationFileError):
        CalibrationSource(path, "m").current()


def test_another_models_entry_leaves_this_model_on_the_default(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text('{"models": {"other": {"threshold": 1.1}}}')
    assert load_calibration(path, "m").source == "default"


def test_a_file_damaged_while_running_keeps_the_last_good_calibration(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    save_calibration(path, "m", 1.1, identification_threshold=1.02)
    source = CalibrationSource(path, "m")
    assert source.current().threshold == pytest.approx(1.1)
    path.write_text("[]")
    kept = source.current()
    assert (kept.threshold, kept.identification_threshold, kept.source) == (
        pytest.approx(1.1),
        pytest.approx(1.02),
        "calibrated",
    )
    save_calibration(path, "m", 1.05)
    assert source.current().threshold == pytest.approx(1.05)


def test_identification_threshold_is_saved_beside_the_pair_threshold(tmp_path: Path) -> None:
    from facerec.calibration import DEFAULT_IDENTIFICATION_THRESHOLD

    path = tmp_path / "calibration.json"
    assert load_calibration(path, "m").identification_threshold == DEFAULT_IDENTIFICATION_THRESHOLD
    save_calibration(path, "m", 1.2, identification_threshold=1.05)
    current = load_calibration(path, "m")
    assert (current.threshold, current.identification_threshold) == (pytest.approx(1.2), pytest.approx(1.05))
    with pytest.raises(ValueError):
        save_calibration(path, "m", 1.2, identification_threshold=0.0)


def test_every_point_round_trips_and_the_named_one_is_the_threshold(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    points = (
        OperatingPoint("far_1e-2", 1.21, 0.008, 0.0099, 0.95, 1333, 5453),
        OperatingPoint("far_1e-3", 1.09, 0.0002, 0.00087, 0.88, 1333, 5453),
        OperatingPoint("eer", 1.26, 0.03, 0.034, 0.97, 1333, 5453),
    )
    opener = OperatingPoint("identification", 1.05, 0.0, 0.025, 0.99, 117, 117)
    save_calibration(
        path,
        "m",
        1.09,
        {"source": "test"},
        identification_threshold=1.05,
        points=points,
        operating_point="far_1e-3",
        identification=opener,
    )
    save_calibration(path, "other-model", 0.7)
    loaded = load_calibration(path, "m")
    assert loaded.points == points and loaded.identification == opener
    assert (loaded.threshold, loaded.operating_point, loaded.source) == (1.09, "far_1e-3", "calibrated")
    assert loaded.point("eer") == points[2] and loaded.point("far_1e-4") is None
    entry = json.loads(path.read_text())["models"]["m"]
    assert entry["points"][0] == {
        "name": "far_1e-2",
        "threshold": 1.21,
        "far": 0.008,
        "far_upper": 0.0099,
        "tar": 0.95,
        "genuine_pairs": 1333,
        "impostor_pairs": 5453,
    }
    assert load_calibration(path, "other-model").points == ()
    with pytest.raises(ValueError):
        save_calibration(path, "m", 1.0, points=points, operating_point="far_1e-9")


def test_a_calibration_file_from_before_operating_points_still_loads(tmp_path: Path) -> None:
    # What `facerec eval --save-threshold` wrote before points existed.
    path = tmp_path / "calibration.json"
    path.write_text(
        json.dumps(
            {
                "models": {
                    "facenet-keras-128": {
                        "balanced_accuracy": 0.975,
                        "identification_threshold": 1.056,
                        "source": "/data/5-celebrity-faces",
                        "threshold": 1.204,
                    }
                }
            }
        )
    )
    old = load_calibration(path, "facenet-keras-128")
    assert (old.threshold, old.identification_threshold, old.source) == (1.204, 1.056, "calibrated")
    assert old.points == () and old.operating_point == "" and old.identification is None


def test_malformed_points_are_skipped_and_a_missing_named_point_falls_back_to_the_threshold(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calibration.json"
    good = {"name": "far_1e-2", "threshold": 1.2, "far": 0.01, "far_upper": 0.01, "tar": 0.9}
    entry = {
        "threshold": 1.1,
        "operating_point": "far_1e-3",
        "points": [good, {"name": "far_1e-3", "threshold": 3.0}, {"threshold": 1.0}, "junk"],
    }
    path.write_text(json.dumps({"models": {"m": entry}}))
    loaded = load_calibration(path, "m")
    assert [p.name for p in loaded.points] == ["far_1e-2"]
    assert (loaded.threshold, loaded.operating_point) == (1.1, "")


def test_the_shipped_default_is_the_far_1e_3_point() -> None:
    default = default_calibration("m")
    point = default.point(DEFAULT_OPERATING_POINT)
    assert DEFAULT_OPERATING_POINT == "far_1e-3" and point is not None
    assert default.threshold == point.threshold == DEFAULT_THRESHOLD
    assert point.far_upper <= 1e-3
    assert {p.name for p in DEFAULT_POINTS} == {"far_1e-2", "far_1e-3", "eer", "best_accuracy"}


def test_saving_over_an_unusable_file_repairs_it(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text("[]")
    save_calibration(path, "m", 1.1)
    assert load_calibration(path, "m").threshold == pytest.approx(1.1)


def test_int8_ships_its_own_points_and_an_unknown_model_gets_fp32s() -> None:
    int8 = default_calibration("facenet-keras-128-int8")
    fp32 = default_calibration("facenet-keras-128")
    assert int8.threshold == pytest.approx(1.0756) and int8.operating_point == "far_1e-3"
    assert int8.identification_threshold == pytest.approx(1.0596)
    assert fp32.threshold == DEFAULT_THRESHOLD == default_calibration("another-model").threshold
    assert [p.name for p in int8.points] == [p.name for p in fp32.points]
    far = int8.point("far_1e-3")
    assert far is not None and far.far_upper <= 1e-3

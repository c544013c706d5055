"""How `facerec eval` picks the alignment mode from held-out identities, and how it states a mode's report."""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from facerec_app import evaluation
from facerec_app.evaluate_command import choose_alignment, describe


def sixty_faces() -> tuple[NDArray[np.float32], list[str]]:
    """10 people x 6 seeded faces: 1620 different-person pairs, enough for FAR 1e-2, not 1e-3."""
    rng = np.random.default_rng(7)
    x = np.repeat(rng.normal(size=(10, 128)), 6, axis=0) + rng.normal(scale=1.2, size=(60, 128))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), [
        f"p{i // 6}" for i in range(60)
    ]


def with_held_out(report: evaluation.Report, tar: float, far: float, genuine: int = 100) -> evaluation.Report:
    held = evaluation.HeldOut(1e-3, tar, far, genuine, 5000, [])
    return dataclasses.replace(report, held_out_at_far=held)


def test_the_alignment_is_the_best_held_out_tar_among_modes_that_keep_the_far() -> None:
    x, labels = sixty_faces()
    base, _ = evaluation.report(x, labels, images=len(labels))
    # similarity's higher TAR comes with 3x the target FAR held out: box is chosen (the 5-celebrity case).
    assert (
        choose_alignment(
            {"box": with_held_out(base, 0.865, 0.0002), "similarity": with_held_out(base, 0.881, 0.0029)}
        )
        == "box"
    )
    assert (
        choose_alignment(
            {"box": with_held_out(base, 0.865, 0.0002), "similarity": with_held_out(base, 0.90, 0.0009)}
        )
        == "similarity"
    )
    # Neither keeps the target: the lower held-out FAR; a tie goes to box.
    assert (
        choose_alignment(
            {"box": with_held_out(base, 0.95, 0.004), "similarity": with_held_out(base, 0.8, 0.002)}
        )
        == "similarity"
    )
    assert (
        choose_alignment({"similarity": with_held_out(base, 0.9, 0.0), "box": with_held_out(base, 0.9, 0.0)})
        == "box"
    )
    # No held-out fit at all (too few pairs without any one person) never counts as keeping the FAR.
    assert (
        choose_alignment(
            {"box": with_held_out(base, 0.0, 0.0, genuine=0), "similarity": with_held_out(base, 0.5, 0.0005)}
        )
        == "similarity"
    )


def test_a_report_states_its_points_bounds_and_the_targets_it_cannot_support() -> None:
    x, labels = sixty_faces()
    report, _ = evaluation.report(x, labels, images=len(labels))
    text = describe("box", report)
    assert "1620 different pairs" in text
    assert "far_1e-2       threshold" in text and "<- default" in text
    assert "far_1e-3       too few different-person pairs: 1620, 2995 needed" in text
    assert "note: too few different-person pairs for far_1e-3; the default is far_1e-2" in text

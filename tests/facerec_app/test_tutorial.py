"""The tutorial reproduced in one process on the real weights and data: train 100%, val 100%."""

from __future__ import annotations

import pytest

from facerec_app import tutorial


@pytest.mark.model
def test_tutorial_recipe_reaches_100_percent(mtcnn_model, facenet_model, train_images, val_images) -> None:
    result = tutorial.run(mtcnn_model, facenet_model, train_images, val_images)
    assert result.train_images == 93 and result.val_images == 25
    assert result.train_faces >= 92
    assert result.val_faces == 25
    assert result.train_accuracy == 1.0
    assert result.val_accuracy == 1.0
    assert set(result.per_person) == {"ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"}

"""Shared fixtures: the fetched assets (real weights and data) and the real models, loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facerec import assets as assets_mod
from facerec.tfconfig import quiet_tensorflow

quiet_tensorflow()


@pytest.fixture(scope="session")
def fetched_assets() -> assets_mod.Assets:
    """The real weights and 5-celebrity data (fetched by `make test` before pytest; fetched here otherwise)."""
    return assets_mod.fetch(assets_mod.facerec_home(os.environ))


@pytest.fixture(scope="session")
def train_images(fetched_assets: assets_mod.Assets) -> list[tuple[str, Path]]:
    return assets_mod.labelled_images(fetched_assets.split("train"))


@pytest.fixture(scope="session")
def val_images(fetched_assets: assets_mod.Assets) -> list[tuple[str, Path]]:
    return assets_mod.labelled_images(fetched_assets.split("val"))


@pytest.fixture(scope="session")
def facenet_model(fetched_assets: assets_mod.Assets):
    """The real Keras FaceNet, loaded once (several seconds)."""
    from embedding_service.facenet import build_facenet
    from facerec.tfconfig import pin_threads

    pin_threads(2, 1)
    return build_facenet(fetched_assets.facenet_h5)


@pytest.fixture(scope="session")
def mtcnn_model():
    """mtcnn.MTCNN with its packaged weights, loaded once."""
    from mtcnn import MTCNN

    from facerec.tfconfig import pin_threads

    pin_threads(2, 1)
    return MTCNN()

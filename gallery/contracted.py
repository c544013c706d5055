"""A collection's embedding contract applied to the service ports: every detection the gallery asks for uses
the contract's detector and alignment, every embedding its model, whatever the caller's options say. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from gallery.ports import (
    Contract,
    DetectedImage,
    DetectorOptions,
    Embedded,
    FaceDetector,
    FaceEmbedder,
    ModelInfo,
)


class ContractDetector:
    """gallery.ports.FaceDetector that asks for the contract's detector and alignment; the request's other
    options (smallest face, confidence, how many) pass through."""

    def __init__(self, detector: FaceDetector, contract: Contract) -> None:
        self._detector = detector
        self._contract = contract

    def detect(
        self, images: Sequence[bytes], options: DetectorOptions, timeout_s: float | None = None
    ) -> list[DetectedImage]:
        pinned = replace(options, model=self._contract.detector, alignment=self._contract.alignment)
        return self._detector.detect(images, pinned, timeout_s)


class ContractEmbedder:
    """gallery.ports.FaceEmbedder that embeds with the contract's model, never the embedder's default."""

    def __init__(self, embedder: FaceEmbedder, contract: Contract) -> None:
        self._embedder = embedder
        self._contract = contract

    def embed(
        self, crops: Sequence[NDArray[np.uint8]], timeout_s: float | None = None, model: str = ""
    ) -> Embedded:
        return self._embedder.embed(crops, timeout_s, self._contract.model)

    def model_info(self, timeout_s: float | None = None, model: str = "") -> ModelInfo:
        return self._embedder.model_info(timeout_s, self._contract.model)

    def models(self, timeout_s: float | None = None) -> list[ModelInfo]:
        return self._embedder.models(timeout_s)


def under_contract(
    detector: FaceDetector, embedder: FaceEmbedder, contract: Contract | None
) -> tuple[FaceDetector, FaceEmbedder]:
    """The ports as the gallery of this contract uses them; unchanged without one (the services' defaults)."""
    if contract is None:
        return detector, embedder
    return ContractDetector(detector, contract), ContractEmbedder(embedder, contract)

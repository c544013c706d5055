"""The tutorial's recipe in one process, one image at a time: the baseline that facerec is measured against.

First MTCNN face → crop the box (abs of negative corners) → PIL resize to 160×160 → per-image
standardization → FaceNet → L2-normalize → linear SVM. On the 5-celebrity set it reaches
train 100% and val 100%.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from embedding_service.preprocessing import standardize


class FaceFinder(Protocol):
    """What the tutorial asks of its detector: mtcnn.MTCNN."""

    def detect_faces(self, image: NDArray[np.uint8]) -> list[dict[str, Any]]: ...


class KerasModel(Protocol):
    """What the tutorial asks of FaceNet: a Keras model."""

    def predict(self, x: NDArray[np.float32], verbose: int = ...) -> Any: ...


def extract_face(detector: FaceFinder, path: Path, size: int = 160) -> NDArray[np.uint8] | None:
    """The first face MTCNN reports, cropped as the tutorial does; None when there is no face."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    results = detector.detect_faces(pixels)
    if not results:
        return None
    x1, y1, width, height = results[0]["box"]
    x1, y1 = abs(int(x1)), abs(int(y1))
    face = pixels[y1 : y1 + int(height), x1 : x1 + int(width)]
    return np.asarray(Image.fromarray(face).resize((size, size)))


def embed(model: KerasModel, faces: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
    """(n, 160, 160, 3) uint8 faces → (n, 128) unit vectors."""
    batch = np.stack([standardize(face) for face in faces])
    vectors = np.asarray(model.predict(batch, verbose=0), dtype=np.float32)
    unit: NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


@dataclass(frozen=True)
class TutorialResult:
    train_faces: int
    train_images: int
    val_faces: int
    val_images: int
    train_accuracy: float
    val_accuracy: float
    per_person: dict[str, tuple[float, float]]  # identity → (train accuracy, val accuracy)


def run(
    detector: FaceFinder, model: KerasModel, train: list[tuple[str, Path]], val: list[tuple[str, Path]]
) -> TutorialResult:
    """Runs the whole recipe: extract, embed, fit a linear SVM on train, score train and val."""
    from sklearn.svm import SVC

    def load(pairs: list[tuple[str, Path]]) -> tuple[list[str], NDArray[np.float32]]:
        labels, faces = [], []
        for identity, path in pairs:
            face = extract_face(detector, path)
            if face is not None:
                labels.append(identity)
                faces.append(face)
        return labels, embed(model, faces)

    train_labels, train_x = load(train)
    val_labels, val_x = load(val)
    svm = SVC(kernel="linear").fit(train_x, train_labels)
    train_pred = svm.predict(train_x)
    val_pred = svm.predict(val_x)

    def accuracy(labels: list[str], predicted: NDArray[np.str_], who: str | None = None) -> float:
        pairs = [(a, b) for a, b in zip(labels, predicted, strict=True) if who is None or a == who]
        return sum(a == b for a, b in pairs) / len(pairs) if pairs else 0.0

    people = sorted(set(train_labels))
    return TutorialResult(
        train_faces=len(train_labels),
        train_images=len(train),
        val_faces=len(val_labels),
        val_images=len(val),
        train_accuracy=accuracy(train_labels, train_pred),
        val_accuracy=accuracy(val_labels, val_pred),
        per_person={
            p: (accuracy(train_labels, train_pred, p), accuracy(val_labels, val_pred, p)) for p in people
        },
    )

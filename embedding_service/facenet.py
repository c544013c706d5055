"""Loads the tutorial's Keras FaceNet (facenet_keras.h5, a Keras 2.1 file) into keras-facenet's architecture.

keras.models.load_model cannot read the file (its Lambda layers), so the weights are copied layer by
layer, matched by name against the file's `model_weights` group, with every shape checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

MODEL_NAME = "facenet-keras-128"
DIMENSION = 128


# A model call: (n, 160, 160, 3) float32 standardized faces → (n, 128) float32 embeddings.
InferFn = Callable[[NDArray[np.float32]], NDArray[np.float32]]


class KerasModel(Protocol):
    """The part of a keras.Model this service uses (keras ships no type information)."""

    @property
    def layers(self) -> Sequence[Any]: ...

    def __call__(self, x: Any, training: bool = ...) -> Any: ...


class WeightsMismatch(Exception):
    """The h5 file does not fit the architecture: a layer is missing or a shape differs."""


def build_facenet(weights_path: Path) -> KerasModel:
    """InceptionResNetV1(classes=128) with the h5's weights. Raises WeightsMismatch if anything does not fit."""
    from keras_facenet.inception_resnet_v1 import InceptionResNetV1

    model: KerasModel = InceptionResNetV1(input_shape=(160, 160, 3), classes=DIMENSION)
    copied = load_weights_by_name(model, weights_path)
    log.info("loaded %d layers of FaceNet weights from %s", copied, weights_path)
    return model


def load_weights_by_name(model: KerasModel, weights_path: Path) -> int:
    """Copies weights from the h5's model_weights/<layer> into each model layer of that name.

    Returns the number of layers copied. Every model layer with weights must be present in the
    file with the same number of arrays of the same shapes, else WeightsMismatch.
    """
    import h5py  # the export extra's: a serving embedder loads ONNX files and never reads the h5

    with h5py.File(weights_path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        copied = 0
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in group:
                raise WeightsMismatch(f"layer {layer.name} has weights but is missing from {weights_path}")
            arrays = _layer_arrays(group[layer.name])
            expected = [tuple(w.shape) for w in layer.weights]
            found = [a.shape for a in arrays]
            if expected != found:
                raise WeightsMismatch(f"layer {layer.name}: model wants shapes {expected}, file has {found}")
            layer.set_weights(arrays)
            copied += 1
    return copied


def _layer_arrays(layer_group: Any) -> list[NDArray[np.float32]]:
    names = [n.decode() if isinstance(n, bytes) else n for n in layer_group.attrs.get("weight_names", [])]
    return [np.asarray(layer_group[name]) for name in names]

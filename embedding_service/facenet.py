"""Loads the tutorial's Keras FaceNet (facenet_keras.h5, a Keras 2.1 file) into keras-facenet's architecture.

keras.models.load_model cannot read the file (its Lambda layers), so the weights are copied layer by
layer, matched by name against the file's `model_weights` group, with every shape checked.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

log = logging.getLogger(__name__)

MODEL_NAME = "facenet-keras-128"
DIMENSION = 128


class WeightsMismatch(Exception):
    """The h5 file does not fit the architecture: a layer is missing or a shape differs."""


def build_facenet(weights_path: Path):  # -> keras.Model
    """InceptionResNetV1(classes=128) with the h5's weights. Raises WeightsMismatch if anything does not fit."""
    from keras_facenet.inception_resnet_v1 import InceptionResNetV1

    model = InceptionResNetV1(input_shape=(160, 160, 3), classes=DIMENSION)
    copied = load_weights_by_name(model, weights_path)
    log.info("loaded %d layers of FaceNet weights from %s", copied, weights_path)
    return model


def load_weights_by_name(model, weights_path: Path) -> int:
    """Copies weights from the h5's model_weights/<layer> into each model layer of that name.

    Returns the number of layers copied. Every model layer with weights must be present in the
    file with the same number of arrays of the same shapes, else WeightsMismatch.
    """
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


def _layer_arrays(layer_group: h5py.Group) -> list[np.ndarray]:
    names = [n.decode() if isinstance(n, bytes) else n for n in layer_group.attrs.get("weight_names", [])]
    return [np.asarray(layer_group[name]) for name in names]

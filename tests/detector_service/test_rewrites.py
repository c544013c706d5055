"""The load-time rewrites (detector_service.rewrites): the intended graph changes, and bit-identical outputs
on the real nets."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import pytest

from detector_service import onnx_nets
from detector_service.config import Settings
from detector_service.rewrites import blocked_prelu, faster, last_axis_softmax
from facerec.onnx import cpu_session, read_model

pytestmark = pytest.mark.model

INPUTS = {"pnet": (2, 61, 47, 3), "rnet": (5, 24, 24, 3), "onet": (5, 48, 48, 3)}
PRELUS = {"pnet": 3, "rnet": 4, "onet": 5}


@pytest.fixture(scope="module")
def exports(fetched_assets) -> dict[str, bytes]:
    """The cached exports the service loads (FACEREC_HOME/models), as written by `facerec export`."""
    models_dir = Path(Settings.from_env({"FACEREC_HOME": str(fetched_assets.home)}).models_dir)
    found = {name: read_model(path) for name, path in onnx_nets.cache_paths(models_dir).items()}
    if any(data is None for data in found.values()):
        pytest.skip("no cached mtcnn export under FACEREC_HOME/models (run `facerec export`)")
    return {name: data for name, data in found.items() if data is not None}


@pytest.mark.parametrize("name", onnx_nets.NET_NAMES)
def test_every_prelu_becomes_two_scalings(exports: dict[str, bytes], name: str) -> None:
    before = collections.Counter(node.op_type for node in onnx.load_from_string(exports[name]).graph.node)
    after = collections.Counter(
        node.op_type for node in onnx.load_from_string(blocked_prelu(exports[name])).graph.node
    )
    assert before["Neg"] == before["Mul"] == PRELUS[name]
    assert after["Neg"] == after["Mul"] == 0
    assert after["BatchNormalization"] == 2 * PRELUS[name]
    # No constant left unused (onnxruntime warns about each one when it loads the model).
    graph = onnx.load_from_string(blocked_prelu(exports[name])).graph
    used = {input_name for node in graph.node for input_name in node.input}
    assert {init.name for init in graph.initializer} <= used


@pytest.mark.parametrize("name", onnx_nets.NET_NAMES)
def test_rewritten_net_gives_the_same_bits(exports: dict[str, bytes], name: str) -> None:
    x = np.random.default_rng(3).uniform(-1.0, 1.0, size=INPUTS[name]).astype(np.float32)
    plain, blocked = (cpu_session(data, 1, 1) for data in (exports[name], faster(exports[name])))
    for a, b in zip(plain.run(None, {"input": x}), blocked.run(None, {"input": x}), strict=True):
        np.testing.assert_array_equal(a, b)


def test_pnet_takes_its_softmax_after_the_transpose(exports: dict[str, bytes]) -> None:
    graph = onnx.load_from_string(last_axis_softmax(exports["pnet"])).graph
    producer = {out: node for node in graph.node for out in node.output}
    (softmax,) = [node for node in graph.node if node.op_type == "Softmax"]
    assert producer[softmax.input[0]].op_type == "Transpose"
    assert softmax.output[0] in {output.name for output in graph.output}
    # R-Net's and O-Net's softmax is already over the last axis of (n, 2): left as it is.
    for name in ("rnet", "onet"):
        assert last_axis_softmax(exports[name]) == onnx.load_from_string(exports[name]).SerializeToString()


def test_a_model_without_the_pattern_is_left_alone() -> None:
    x = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["input"], ["y"])], "g", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    again = onnx.load_from_string(faster(model.SerializeToString()))
    assert [node.op_type for node in again.graph.node] == ["Relu"]

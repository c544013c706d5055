"""mtcnn's exported networks rewritten at load so onnxruntime runs them faster, with bit-identical outputs.

PReLU. tf2onnx exports each Keras PReLU as Relu(x) + Mul(Relu(Neg(x)), -alpha). onnxruntime's NCHWc
layout transformer (graph optimization level ALL) has no blocked Neg nor a blocked Mul by a per-channel
constant, so after every convolution it converts the activations back to plain NCHW (ReorderOutput)
and runs four elementwise passes there: a fifth of R-Net's time and a quarter of O-Net's. Here Neg
becomes a BatchNormalization of scale -1 and the Mul one of scale -alpha (mean 0, variance 1, epsilon 0,
bias 0: x * scale exactly), which that transformer turns into blocked per-channel ops, so the layout
stays blocked from the first convolution to the last: the same multiplications by the same constants.
One thread's CPU a call falls by ~10-20% for P-Net, 25% for R-Net and 40% for O-Net.

Softmax. P-Net's face probability is Softmax over the channel axis of an NCHW map, then a Transpose to
NHWC; onnxruntime computes a softmax over a non-last axis by transposing to the last axis and back.
Transposing first and taking the softmax over the last axis runs the same kernel on the same rows
without the two extra transposes (~5% of P-Net).

tests/detector_service/test_rewrites.py holds the outputs to the exported model's, bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def faster(data: bytes) -> bytes:
    """Both rewrites (what the service loads)."""
    return last_axis_softmax(blocked_prelu(data))


def blocked_prelu(data: bytes) -> bytes:
    """The serialized model with every Relu(x) + Mul(Relu(Neg(x)), c) PReLU's Neg and Mul as scalings
    by BatchNormalization; a model without that pattern comes back unchanged in meaning."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(data))
    graph = model.graph
    ranks = {info.name: len(info.type.tensor_type.shape.dim) for info in graph.value_info}
    constants = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    replaced: dict[int, Any] = {}
    dropped: set[str] = set()

    def scaling(node: Any, source: str, scale: np.ndarray[Any, Any]) -> Any:
        channels = len(scale)
        arrays = {
            "scale": scale.astype(np.float32),
            "bias": np.zeros(channels, np.float32),
            "mean": np.zeros(channels, np.float32),
            "var": np.ones(channels, np.float32),
        }
        names = []
        for key, array in arrays.items():
            names.append(f"{node.name}/bn_{key}")
            graph.initializer.append(numpy_helper.from_array(array, names[-1]))
        # epsilon 0 and variance 1: the op's scale / sqrt(var + eps) is the scale itself, exactly.
        return helper.make_node(
            "BatchNormalization", [source, *names], list(node.output), name=f"{node.name}/bn", epsilon=0.0
        )

    for add in graph.node:
        if add.op_type != "Add":
            continue
        inputs = [producer.get(name) for name in add.input]
        mul = next((n for n in inputs if n is not None and n.op_type == "Mul"), None)
        if mul is None:
            continue
        constant = next((name for name in mul.input if name in constants), None)
        relu = next((producer.get(name) for name in mul.input if name not in constants), None)
        if constant is None or relu is None or relu.op_type != "Relu":
            continue
        neg = producer.get(relu.input[0])
        if neg is None or neg.op_type != "Neg":
            continue
        slope = numpy_helper.to_array(constants[constant])
        if not _per_channel(slope.shape, ranks.get(neg.input[0], 0)):
            continue
        slope = slope.reshape(-1)
        replaced[id(neg)] = scaling(neg, neg.input[0], -np.ones_like(slope))
        replaced[id(mul)] = scaling(mul, relu.output[0], slope)
        dropped.add(constant)
    nodes = [replaced.get(id(node), node) for node in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    # The -alpha constants the Muls read are now unused: onnxruntime would warn about each at every start.
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used or init.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    out: bytes = model.SerializeToString()
    return out


def _per_channel(shape: tuple[int, ...], rank: int) -> bool:
    """Whether a constant of this shape, broadcast against a tensor of this rank, scales each channel
    (axis 1) by its own factor, as BatchNormalization does: (1, C, 1, 1) on NCHW, or (C,) on (N, C)."""
    if rank == 4:
        return len(shape) == 4 and shape[0] == shape[2] == shape[3] == 1
    return rank == 2 and len(shape) == 1


def last_axis_softmax(data: bytes) -> bytes:
    """The serialized model with each Softmax(axis=1) whose only use is a Transpose to NHWC (perm 0, 2, 3, 1)
    turned into that Transpose followed by a Softmax over the last axis; other models unchanged in meaning."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(data)
    graph = model.graph
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    order = list(graph.node)
    for softmax in list(order):
        axis = next((helper.get_attribute_value(a) for a in softmax.attribute if a.name == "axis"), None)
        if softmax.op_type != "Softmax" or axis != 1 or len(users.get(softmax.output[0], [])) != 1:
            continue
        transpose = users[softmax.output[0]][0]
        perm = next((helper.get_attribute_value(a) for a in transpose.attribute if a.name == "perm"), None)
        if transpose.op_type != "Transpose" or list(perm or []) != [0, 2, 3, 1]:
            continue
        logits, probabilities = softmax.input[0], transpose.output[0]
        moved = helper.make_node(
            "Transpose", [logits], [f"{logits}/nhwc"], name=f"{transpose.name}/first", perm=perm
        )
        last = helper.make_node(
            "Softmax", [f"{logits}/nhwc"], [probabilities], name=f"{softmax.name}/last", axis=-1
        )
        at = order.index(softmax)
        order[at : at + 1] = [moved, last]
        order.remove(transpose)
    del graph.node[:]
    graph.node.extend(order)
    out: bytes = model.SerializeToString()
    return out

"""ONNX graph surgery on an exported fanzha text model: expose the pooled sentence vector, swap the head.

Every export carries FEATURES ([logits | mean-pooled vector] per window) next to `logits`: `fanzha adapt`
fits a new head on it and the conversation model reads context with it, without a second copy of the encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fanzha.models.errors import MissingExtra, ModelError
from fanzha.models.text import FEATURES


def add_features_output(path: str | Path) -> None:
    """Give the ONNX file at `path` the FEATURES output in place (metadata kept)."""
    onnx = load_onnx()
    onnx.save(with_features_output(onnx.load(str(path))), str(path))


def set_metadata(path: str | Path, metadata: dict[str, str]) -> None:
    """Replace the fanzha metadata of the ONNX file at `path` (the graph is unchanged)."""
    onnx = load_onnx()
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def load_onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise MissingExtra(
            "editing ONNX graphs needs the `onnx` package: pip install 'fanzha[adapt]'"
        ) from None
    return onnx


def pooled_tensor(model) -> str:
    """The name of the mean-pooled sentence vector that feeds the head: the pooling division nearest the logits."""
    producer = {out: node for node in model.graph.node for out in node.output}
    seen, frontier = set(), ["logits"]
    while frontier:
        nxt = []
        for tensor in frontier:
            node = producer.get(tensor)
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type == "Div" and any(
                producer.get(i) is not None and producer[i].op_type == "ReduceSum" for i in node.input
            ):
                return node.output[0]
            nxt += list(node.input)
        frontier = nxt
    raise ModelError("cannot find the mean-pooling output in the model graph (is it a fanzha export?)")


def with_features_output(model):
    """A copy of the graph with one more output, FEATURES: [logits | pooled vector] per window (unchanged when the
    graph has it already: every export since the conversation model carries it)."""
    onnx = load_onnx()
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if any(o.name == FEATURES for o in m.graph.output):
        return m
    m.graph.node.append(
        onnx.helper.make_node(
            "Concat", ["logits", pooled_tensor(model)], [FEATURES], axis=1, name="fanzha_features_concat"
        )
    )
    m.graph.output.append(
        onnx.helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT, ["batch", "features"])
    )
    return m


def with_new_head(model, weight: np.ndarray, bias: np.ndarray, metadata: dict[str, str]):
    """The same encoder with a new fp32 linear head producing `logits`; the old head's nodes are pruned."""
    onnx = load_onnx()
    from onnx import numpy_helper

    pooled = pooled_tensor(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    had_features = _drop_output(g, FEATURES)  # re-made below from the NEW logits
    for node in g.node:  # the old head's output becomes a dangling name, pruned below
        node.output[:] = ["fanzha_old_logits" if o == "logits" else o for o in node.output]
    g.initializer.extend(
        [
            numpy_helper.from_array(weight.astype(np.float32), "fanzha.adapted_head.weight"),
            numpy_helper.from_array(bias.astype(np.float32), "fanzha.adapted_head.bias"),
        ]
    )
    g.node.extend(
        [
            onnx.helper.make_node(
                "MatMul",
                [pooled, "fanzha.adapted_head.weight"],
                ["fanzha_adapted_matmul"],
                name="fanzha_adapted_head_matmul",
            ),
            onnx.helper.make_node(
                "Add",
                ["fanzha_adapted_matmul", "fanzha.adapted_head.bias"],
                ["logits"],
                name="fanzha_adapted_head_add",
            ),
        ]
    )
    _prune(g)
    if had_features:
        m = with_features_output(m)
    del m.metadata_props[:]
    for k, v in metadata.items():
        m.metadata_props.add(key=k, value=v)
    return m


def _drop_output(graph, name: str) -> bool:
    """Remove a graph output and the node that produces it; whether it was there."""
    outputs = [o for o in graph.output if o.name != name]
    if len(outputs) == len(graph.output):
        return False
    del graph.output[:]
    graph.output.extend(outputs)
    nodes = [n for n in graph.node if name not in n.output]
    del graph.node[:]
    graph.node.extend(nodes)
    return True


def _prune(graph) -> None:
    """Drop nodes and initializers that no graph output depends on."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    needed, stack, keep = set(), [o.name for o in graph.output], set()
    while stack:
        t = stack.pop()
        if t in needed:
            continue
        needed.add(t)
        if t in producer:
            keep.add(producer[t])
            stack += list(graph.node[producer[t]].input)
    nodes = [n for i, n in enumerate(graph.node) if i in keep]
    del graph.node[:]
    graph.node.extend(nodes)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)

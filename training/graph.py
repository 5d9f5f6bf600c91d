"""ONNX graph surgery on an exported fanzha text model: expose the pooled sentence vector, swap the head.

Every export carries FEATURES ([logits | mean-pooled vector] per window) next to `logits`: `fanzha adapt`
fits a new head on it and the conversation model reads context with it, without a second copy of the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fanzha.models.errors import MissingExtra, ModelError
from fanzha.models.text import FEATURES


@dataclass
class Head:
    """A head on a feature vector (adapt's text head, the conversation head): the linear map, plus (when it has
    `hidden` units) one ReLU layer added to it: logits = x·W + b + relu(x·A + c)·B. fit_residual_head starts
    the layer at zero, so a fit starts as the linear head; head_nodes writes it into a graph."""

    weight: np.ndarray  # (d, k)
    bias: np.ndarray  # (k,)
    a: np.ndarray | None = None  # (d, h)
    c: np.ndarray | None = None  # (h,)
    b: np.ndarray | None = None  # (h, k)

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.weight + self.bias
        if self.a is not None:
            z = z + np.maximum(x @ self.a + self.c, 0.0) @ self.b
        return z


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


def head_nodes(head: Head, x: str, out: str, prefix: str) -> tuple[list, list]:
    """ONNX nodes and initialisers that compute `out` = head.logits(`x`) (names prefixed by `prefix`): the
    adapted text head and the conversation head are written by this one function."""
    onnx = load_onnx()
    from onnx import numpy_helper

    params = {"weight": head.weight, "bias": head.bias}
    if head.a is not None:
        params.update(hidden_weight=head.a, hidden_bias=head.c, hidden_out=head.b)
    initializers = [
        numpy_helper.from_array(np.asarray(v, dtype=np.float32), f"{prefix}.{k}") for k, v in params.items()
    ]

    def node(op: str, inputs: list[str], output: str):
        return onnx.helper.make_node(op, inputs, [output], name=f"{output}_{op.lower()}")

    linear_out = out if head.a is None else f"{prefix}_linear"
    nodes = [
        node("MatMul", [x, f"{prefix}.weight"], f"{prefix}_matmul"),
        node("Add", [f"{prefix}_matmul", f"{prefix}.bias"], linear_out),
    ]
    if head.a is not None:
        nodes += [
            node("MatMul", [x, f"{prefix}.hidden_weight"], f"{prefix}_hidden_mm"),
            node("Add", [f"{prefix}_hidden_mm", f"{prefix}.hidden_bias"], f"{prefix}_pre"),
            node("Relu", [f"{prefix}_pre"], f"{prefix}_hidden"),
            node("MatMul", [f"{prefix}_hidden", f"{prefix}.hidden_out"], f"{prefix}_residual"),
            node("Add", [linear_out, f"{prefix}_residual"], out),
        ]
    return nodes, initializers


def with_new_head(model, head: Head, metadata: dict[str, str]):
    """The same encoder with a new fp32 head producing `logits` (linear, plus its ReLU layer when it has one);
    the old head's nodes are pruned."""
    onnx = load_onnx()
    pooled = pooled_tensor(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    had_features = _drop_output(g, FEATURES)  # re-made below from the NEW logits
    for node in g.node:  # the old head's output becomes a dangling name, pruned below
        node.output[:] = ["fanzha_old_logits" if o == "logits" else o for o in node.output]
    nodes, initializers = head_nodes(head, pooled, "logits", "fanzha.adapted_head")
    g.initializer.extend(initializers)
    g.node.extend(nodes)
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
